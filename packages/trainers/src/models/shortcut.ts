/**
 * Option-A shortcut of He et al. (2016) for CIFAR ResNets: the identity, subsampled by the stride
 * and zero-padded to the wider channel count (no parameters). A custom tfjs-layers Layer,
 * registered with tf.serialization so models containing it save and load.
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, type SymbolicTensor } from '@tensorflow/tfjs-layers';

type Shape = Array<number | null>;

export interface ShortcutAConfig {
  /** Spatial subsampling factor (1 or 2 in CIFAR ResNets). */
  stride: number;
  /** Channels of the output (>= input channels); the extra ones are zeros split evenly on both sides. */
  outChannels: number;
  /**
   * First sampled row and column: the centre of the strided conv's first window (1 for TF 'same'
   * on even sizes, 0 on odd ones). One number applies to both axes.
   */
  offset?: number | [number, number];
  name?: string;
  trainable?: boolean;
}

export class ShortcutA extends layers.Layer {
  static readonly className = 'FlatrankShortcutA';
  readonly stride: number;
  readonly outChannels: number;
  /** [row, column] offsets. */
  readonly offset: [number, number];

  constructor(config: ShortcutAConfig) {
    super({ name: config.name, trainable: false });
    this.stride = config.stride;
    this.outChannels = config.outChannels;
    const o = config.offset ?? 0;
    this.offset = Array.isArray(o) ? [o[0], o[1]] : [o, o];
    if (!Number.isInteger(this.stride) || this.stride < 1)
      throw new Error(`ShortcutA: stride must be a positive integer, got ${this.stride}`);
    if (this.offset.some((v) => !Number.isInteger(v) || v < 0 || v >= this.stride))
      throw new Error(`ShortcutA: offsets must be integers in [0, stride), got ${this.offset.join(', ')}`);
  }

  private outSize(n: number | null, axis: 0 | 1): number | null {
    return n === null ? null : Math.ceil((n - this.offset[axis]) / this.stride);
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    if (s.length !== 4) throw new Error(`ShortcutA expects NHWC input, got shape [${s.join(', ')}]`);
    if (s[3] !== null && s[3]! > this.outChannels)
      throw new Error(`ShortcutA: input has ${s[3]} channels, more than outChannels ${this.outChannels}`);
    return [s[0]!, this.outSize(s[1]!, 0), this.outSize(s[2]!, 1), this.outChannels];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
      const [n, h, w, c] = x.shape;
      const s = this.stride;
      const [oh, ow] = this.offset;
      let y: tf.Tensor4D = x;
      if (s > 1 || oh > 0 || ow > 0) {
        const ho = Math.ceil((h - oh) / s);
        const wo = Math.ceil((w - ow) / s);
        const needH = oh + ho * s;
        const needW = ow + wo * s;
        if (needH > h || needW > w)
          y = tf.pad(y, [
            [0, 0],
            [0, Math.max(0, needH - h)],
            [0, Math.max(0, needW - w)],
            [0, 0],
          ]);
        y = tf.slice(y, [0, oh, ow, 0], [n, ho * s, wo * s, c]);
        // [n, ho, s, wo, s, c] viewed as 4-D [n*ho, s, wo, s*c]: keep phase 0 of both strides with
        // one 4-D slice (plain Slice / Reshape ops, which have gradients; StridedSlice has none).
        y = tf.reshape(tf.slice(tf.reshape(y, [n * ho, s, wo, s * c]), [0, 0, 0, 0], [n * ho, 1, wo, c]), [
          n,
          ho,
          wo,
          c,
        ]);
      }
      const extra = this.outChannels - c;
      if (extra > 0) {
        const lo = Math.floor(extra / 2);
        y = tf.pad(y, [
          [0, 0],
          [0, 0],
          [0, 0],
          [lo, extra - lo],
        ]);
      }
      return y === x ? tf.clone(x) : y;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      stride: this.stride,
      outChannels: this.outChannels,
      offset: [...this.offset],
    };
  }

  /** Convenience for the functional API. */
  static applyTo(x: SymbolicTensor, config: ShortcutAConfig): SymbolicTensor {
    return new ShortcutA(config).apply(x) as SymbolicTensor;
  }
}

tf.serialization.registerClass(ShortcutA);

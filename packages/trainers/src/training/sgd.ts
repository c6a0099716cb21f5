/**
 * SGD with momentum and decoupled-from-the-loss L2 weight decay, PyTorch's convention:
 *   g = grad + wd * w            (wd only on conv / dense kernels)
 *   buf = momentum * buf + g
 *   w = w - lr * (nesterov ? g + momentum * buf : buf)
 * Written by hand (not tf.train.momentum) so that the momentum buffers can be read and zeroed:
 * the distortion method optionally resets them after every distortion.
 */
import * as tf from '@tensorflow/tfjs-core';
import { SGD_MOMENTUM_KERNEL, ShapeError, ValidationError } from '@flatrank/protocol';
import {
  OPTIMIZER_STATE_KIND,
  optimizerStateMismatch,
  type MomentumTarget,
  type NamedShape,
  type OptimizerState,
} from './optimizer-state.js';

export interface SgdOptions {
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
}

export interface TrainableVariable {
  /** The tf.Variable that the gradients are taken with respect to. */
  variable: tf.Variable;
  /** Whether L2 weight decay applies (conv / dense kernels only; not biases or batch-norm). */
  decay: boolean;
  /**
   * Process-independent name keying the saved momentum buffer (LayerVariable.originalName, e.g.
   * 'conv2/kernel'); defaults to variable.name, which carries per-process suffixes.
   */
  name?: string;
}

export class MomentumSgd implements MomentumTarget {
  private readonly buffers = new Map<string, tf.Variable>();
  readonly options: SgdOptions;

  constructor(
    readonly variables: readonly TrainableVariable[],
    options: SgdOptions,
  ) {
    if (!(options.momentum >= 0 && options.momentum <= 1))
      throw new ValidationError(
        'training.optimizer.momentum',
        `training.optimizer.momentum: must be in [0, 1], got ${options.momentum}`,
      );
    if (!(options.weightDecay >= 0))
      throw new ValidationError(
        'training.weightDecay',
        `training.weightDecay: must be >= 0, got ${options.weightDecay}`,
      );
    this.options = { ...options };
    for (const v of variables)
      // tidy disposes the zeros once the variable holds them (variables survive tidy).
      this.buffers.set(
        v.variable.name,
        tf.tidy(() => tf.variable(tf.zerosLike(v.variable), false)),
      );
  }

  /** One update with gradients keyed by variable name (as returned by tf.variableGrads). */
  step(grads: tf.NamedTensorMap, lr: number): void {
    const { momentum, nesterov, weightDecay } = this.options;
    // A backend with the fused kernel (native) runs one kernel per variable instead of about six
    // TF.js ops: most of the optimizer's cost for small nets (LeNet-5).
    const fused = tf.getKernel(SGD_MOMENTUM_KERNEL, tf.getBackend()) !== undefined;
    tf.tidy(() => {
      for (const { variable, decay } of this.variables) {
        const grad = grads[variable.name];
        if (grad === undefined) continue; // not on the loss path (e.g. a frozen layer)
        if (fused && variable.dtype === 'float32' && grad.dtype === 'float32') {
          const buf = this.buffers.get(variable.name)!;
          const [w, b] = tf
            .engine()
            .runKernel(
              SGD_MOMENTUM_KERNEL,
              { variable, buffer: buf, grad },
              { lr, momentum, weightDecay: decay ? weightDecay : 0, nesterov },
            ) as tf.Tensor[];
          if (momentum > 0) buf.assign(b!);
          variable.assign(w!);
          continue;
        }
        const g = decay && weightDecay > 0 ? tf.add(grad, tf.mul(variable, weightDecay)) : grad;
        let update = g;
        if (momentum > 0) {
          const buf = this.buffers.get(variable.name)!;
          const next = tf.add(tf.mul(buf, momentum), g);
          buf.assign(next);
          update = nesterov ? tf.add(g, tf.mul(next, momentum)) : next;
        }
        variable.assign(tf.sub(variable, tf.mul(update, lr)));
      }
    });
  }

  /** Zeroes every momentum buffer (used after a low-rank distortion when resetMomentum is set). */
  resetMomentum(): void {
    tf.tidy(() => {
      for (const buf of this.buffers.values()) buf.assign(tf.zerosLike(buf));
    });
  }

  /** Stable name and shape of every buffer, in variable order (what a saved state must match). */
  slotShapes(): NamedShape[] {
    return this.variables.map((v) => ({ name: v.name ?? v.variable.name, shape: v.variable.shape }));
  }

  /**
   * Reads the momentum buffers back to the CPU asynchronously, so that exportState's synchronous
   * reads work on backends that cannot read a GPU tensor synchronously (webgpu in Node).
   */
  async readBack(): Promise<void> {
    await Promise.all([...this.buffers.values()].map((b) => b.data()));
  }

  /** A copy of the momentum buffers (plain arrays: survives this optimizer's disposal). */
  exportState(): OptimizerState {
    return {
      kind: OPTIMIZER_STATE_KIND,
      momentum: this.options.momentum,
      nesterov: this.options.nesterov,
      weightDecay: this.options.weightDecay,
      slots: this.variables.map((v) => ({
        name: v.name ?? v.variable.name,
        shape: [...v.variable.shape],
        values: Float32Array.from(this.buffers.get(v.variable.name)!.dataSync()),
      })),
    };
  }

  /**
   * Overwrites the momentum buffers with a saved state matched by name and shape. Whether a state
   * should be imported at all is restoreMomentum's decision (optimizer-state.ts).
   */
  importState(state: OptimizerState): void {
    const mismatch = optimizerStateMismatch(state, this.slotShapes());
    if (mismatch !== null)
      throw new ShapeError('optimizerState', `optimizer state does not fit the variables: ${mismatch}`);
    const byName = new Map(state.slots.map((s) => [s.name, s]));
    tf.tidy(() => {
      for (const v of this.variables) {
        const slot = byName.get(v.name ?? v.variable.name)!;
        this.buffers.get(v.variable.name)!.assign(tf.tensor(slot.values, slot.shape, 'float32'));
      }
    });
  }

  /** Sum of squares of all momentum buffers (for tests and diagnostics). */
  momentumSquaredNorm(): number {
    return tf.tidy(() => {
      let total = 0;
      for (const buf of this.buffers.values()) total += tf.sum(tf.square(buf)).dataSync()[0]!;
      return total;
    });
  }

  dispose(): void {
    for (const buf of this.buffers.values()) buf.dispose();
    this.buffers.clear();
  }
}

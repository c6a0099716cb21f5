/**
 * Batch normalisation whose training step can run as one fused kernel.
 *
 * tfjs-layers trains BatchNormalization as tf.moments() followed by tf.batchNorm(): mean, sub,
 * square, mean and the normalisation, each a full pass over the activations, and the gradient runs
 * back through every one of them (about ten full-size passes and allocations per layer and step;
 * a third of a ResNet-20 step on the native backend). When the active backend registers
 * BATCH_NORM_TRAINING_KERNEL and its gradient kernel (the native backend does), this layer computes the
 * batch statistics and the normalised output in one kernel and its gradient in another. Everywhere
 * else, and in inference, it is tfjs-layers' BatchNormalization unchanged.
 *
 * The class keeps the name 'BatchNormalization' and replaces tfjs-layers' entry in the
 * serialization registry, so saved models stay plain Keras/TF.js models and loading one gives this
 * layer; weights, config and moving-average updates are those of tfjs-layers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, type LayerVariable } from '@tensorflow/tfjs-layers';
import {
  BATCH_NORM_RELU_TRAINING_GRAD_KERNEL,
  BATCH_NORM_RELU_TRAINING_KERNEL,
  BATCH_NORM_TRAINING_GRAD_KERNEL,
  BATCH_NORM_TRAINING_KERNEL,
} from '@flatrank/protocol';

tf.registerGradient({
  kernelName: BATCH_NORM_TRAINING_KERNEL,
  inputsToSave: ['x', 'scale'],
  outputsToSave: [false, true, true],
  gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    // The engine passes one gradient per output, zeros for outputs nothing used (the statistics
    // usually feed only the moving averages, outside the tape).
    const [dy, dmean, dvariance] = dys as tf.Tensor[];
    const [x, scale, mean, variance] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const [dx, dscale, doffset] = tf
      .engine()
      .runKernel(
        BATCH_NORM_TRAINING_GRAD_KERNEL,
        { dy: dy!, x, scale, mean, variance, dmean: dmean!, dvariance: dvariance! },
        attrs,
      ) as tf.Tensor[];
    return { x: () => dx!, scale: () => dscale!, offset: () => doffset! };
  },
});

// The rectified form: the offset is saved too, so that the gradient kernel can tell where the
// forward pass rectified (it recomputes the pre-activation instead of keeping it).
tf.registerGradient({
  kernelName: BATCH_NORM_RELU_TRAINING_KERNEL,
  inputsToSave: ['x', 'scale', 'offset'],
  outputsToSave: [false, true, true],
  gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const [dy, dmean, dvariance] = dys as tf.Tensor[];
    const [x, scale, offset, mean, variance] = saved as tf.Tensor[];
    const [dx, dscale, doffset] = tf.engine().runKernel(
      BATCH_NORM_RELU_TRAINING_GRAD_KERNEL,
      {
        dy: dy!,
        x: x!,
        scale: scale!,
        offset: offset!,
        mean: mean!,
        variance: variance!,
        dmean: dmean!,
        dvariance: dvariance!,
      },
      attrs,
    ) as tf.Tensor[];
    return { x: () => dx!, scale: () => dscale!, offset: () => doffset! };
  },
});

let fusedEnabled = !['0', 'false', 'off'].includes(process.env['FLATRANK_FUSED_BATCH_NORM'] ?? '');

/**
 * Turns the fused path off (or back on) for this process, e.g. to compare both in a benchmark;
 * FLATRANK_FUSED_BATCH_NORM=0 starts a process with it off. Returns the previous setting.
 */
export function setFusedBatchNorm(enabled: boolean): boolean {
  const previous = fusedEnabled;
  fusedEnabled = enabled;
  return previous;
}

/** Whether the active backend runs training-mode batch norm as one kernel (and it is enabled). */
export function fusedBatchNormAvailable(): boolean {
  if (!fusedEnabled) return false;
  const backend = tf.getBackend();
  return (
    tf.getKernel(BATCH_NORM_TRAINING_KERNEL, backend) !== undefined &&
    tf.getKernel(BATCH_NORM_TRAINING_GRAD_KERNEL, backend) !== undefined
  );
}

/** Whether the active backend also runs the batch norm + ReLU kernel (see BatchNormalization.fusedRelu). */
export function fusedBatchNormReluAvailable(): boolean {
  const backend = tf.getBackend();
  return (
    fusedBatchNormAvailable() &&
    tf.getKernel(BATCH_NORM_RELU_TRAINING_KERNEL, backend) !== undefined &&
    tf.getKernel(BATCH_NORM_RELU_TRAINING_GRAD_KERNEL, backend) !== undefined
  );
}

/**
 * Runs the fused kernel directly: y (rectified with relu), and the batch mean and (biased)
 * variance over all axes but the last. Differentiable with respect to x, scale and offset.
 */
export function batchNormTraining(
  x: tf.Tensor,
  scale: tf.Tensor1D,
  offset: tf.Tensor1D,
  epsilon: number,
  relu = false,
): [tf.Tensor, tf.Tensor1D, tf.Tensor1D] {
  const kernel = relu ? BATCH_NORM_RELU_TRAINING_KERNEL : BATCH_NORM_TRAINING_KERNEL;
  return tf.engine().runKernel(kernel, { x, scale, offset }, { epsilon }) as [
    tf.Tensor,
    tf.Tensor1D,
    tf.Tensor1D,
  ];
}

type BatchNormalizationArgs = NonNullable<Parameters<typeof layers.batchNormalization>[0]>;

/** The parts of tfjs-layers' (unexported) BatchNormalization class this layer uses. */
interface TfjsBatchNormalization extends layers.Layer {
  readonly axis: number;
  readonly momentum: number;
  readonly epsilon: number;
  gamma: LayerVariable | null;
  beta: LayerVariable | null;
  movingMean: LayerVariable;
  movingVariance: LayerVariable;
}

// tfjs-layers exports only the factory; its instances' constructor is the class to extend.
const TfjsBatchNormalizationClass = Object.getPrototypeOf(layers.batchNormalization({}) as object)
  .constructor as (new (args?: BatchNormalizationArgs) => TfjsBatchNormalization) &
  Pick<typeof layers.Layer, 'fromConfig'>;

export class BatchNormalization extends TfjsBatchNormalizationClass {
  /** Same name as tfjs-layers' class: saved models stay standard. */
  static readonly className = 'BatchNormalization';

  /**
   * Set by the model builder when this layer's output feeds only a ReLU layer: training steps then
   * rectify in the batch-norm kernel where the backend has the fused form (the ReLU layer after it
   * passes the result through, and its gradient pass is folded into this layer's). Values and
   * gradients are the same as without; not part of the config, so a loaded model trains unfused.
   */
  fusedRelu = false;

  override call(
    inputs: tf.Tensor | tf.Tensor[],
    kwargs: tf.serialization.ConfigDict,
  ): tf.Tensor | tf.Tensor[] {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const axis = this.axis >= 0 ? this.axis : this.axis + (x?.rank ?? 0);
    if (
      kwargs['training'] !== true ||
      !x ||
      (Array.isArray(inputs) && inputs.length !== 1) ||
      x.dtype !== 'float32' ||
      axis !== x.rank - 1 ||
      !this.gamma ||
      !this.beta ||
      !fusedBatchNormAvailable()
    )
      return super.call(inputs, kwargs);
    const gamma = this.gamma;
    const beta = this.beta;
    return tf.tidy(() => {
      const [y, mean, variance] = batchNormTraining(
        x,
        gamma.read() as tf.Tensor1D,
        beta.read() as tf.Tensor1D,
        this.epsilon,
        this.fusedRelu && fusedBatchNormReluAvailable(),
      );
      // tfjs-layers' moving-average update, verbatim: v -= (v - batch) * (1 - momentum).
      const decay = 1 - this.momentum;
      for (const [variable, value] of [
        [this.movingMean, mean],
        [this.movingVariance, variance],
      ] as const)
        tf.tidy(() => {
          const orig = variable.read();
          variable.write(tf.sub(orig, tf.mul(tf.sub(orig, value), decay)));
        });
      return y;
    });
  }
}

tf.serialization.registerClass(BatchNormalization);

/** Functional-API factory, like tf.layers.batchNormalization. */
export function batchNormalization(args: BatchNormalizationArgs): BatchNormalization {
  return new BatchNormalization(args);
}

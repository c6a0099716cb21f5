/**
 * The contract between backend selection (@flatrank/trainers) and the TensorFlow.js backend
 * packages (@flatrank/backend-*): what a backend reports once loaded, and the names and signatures
 * of flatrank's own training kernels, which the trainers' layers and optimizer run and each backend
 * may implement. Plain data: nothing here imports TensorFlow.js.
 */

/** What a backend reports once it has loaded and made itself the active TF.js backend. */
export interface LoadedBackend {
  /** Version of the package (or library) that implements the backend. */
  version: string;
  /** Intra-op threads the backend computes with. */
  threads: number;
  /** Device it computes on (selection defaults it to the CPU model). */
  device?: string;
  /** wasm: SIMD in use. */
  simd?: boolean | null;
  /** Kernels flatrank registered on top of the stock backend. */
  customKernels?: string[];
  /** Hard cap of the backend's memory (wasm: the 4 GiB heap), null when none. */
  heapLimitBytes?: number | null;
}

/**
 * Training-mode batch norm. Inputs {x, scale, offset} (x channels-last float32, scale/offset
 * length C), attrs {epsilon}; outputs [y, mean, variance] with the biased batch variance (as
 * tf.moments).
 */
export const BATCH_NORM_TRAINING_KERNEL = 'FlatrankBatchNormTraining';
/**
 * Gradient of BATCH_NORM_TRAINING_KERNEL, batch statistics included. Inputs {dy, x, scale, mean,
 * variance, dmean, dvariance}, attrs {epsilon}; outputs [dx, dscale, doffset].
 */
export const BATCH_NORM_TRAINING_GRAD_KERNEL = 'FlatrankBatchNormTrainingGrad';
/**
 * BATCH_NORM_TRAINING_KERNEL with a ReLU after it, in one pass: same inputs and attrs, outputs
 * [relu(y), mean, variance]. A backend that registers it (and its gradient) runs a batch norm
 * followed by a ReLU layer without the separate ReLU passes: its Relu kernel passes such an output
 * through, since rectifying it again changes nothing, and the gradient kernel masks.
 */
export const BATCH_NORM_RELU_TRAINING_KERNEL = 'FlatrankBatchNormReluTraining';
/**
 * Gradient of BATCH_NORM_RELU_TRAINING_KERNEL: the inputs of BATCH_NORM_TRAINING_GRAD_KERNEL plus
 * the forward pass's offset (the pre-activation's sign is recomputed from it); outputs [dx, dscale,
 * doffset].
 */
export const BATCH_NORM_RELU_TRAINING_GRAD_KERNEL = 'FlatrankBatchNormReluTrainingGrad';
/**
 * One momentum-SGD step of one variable. Inputs {variable, buffer, grad} (float32, same shape),
 * attrs {lr, momentum, weightDecay, nesterov}; outputs [variable', buffer'].
 */
export const SGD_MOMENTUM_KERNEL = 'FlatrankSgdMomentum';

/** Small helpers on tfjs-layers models shared by training, compression and measurement. */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { TrainableVariable } from './sgd.js';

/** Weight-decayed parameters: conv, depthwise conv and dense kernels (not biases, not batch norm). */
export function isDecayedWeight(originalName: string): boolean {
  return /(^|\/)(kernel|depthwise_kernel|pointwise_kernel)(_\d+)?$/.test(originalName);
}

export function trainableVariables(model: tfl.LayersModel): TrainableVariable[] {
  // LayerVariable.read() returns the underlying tf.Variable (this is what LayersModel.fit does too).
  return model.trainableWeights.map((w) => ({
    variable: w.read() as tf.Variable,
    decay: isDecayedWeight(w.originalName),
    name: w.originalName,
  }));
}

/** True when the model ends in a softmax (probabilities), false when it outputs logits. */
export function outputIsSoftmax(model: tfl.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  if (!last) return false;
  const cfg = last.getConfig() as { activation?: unknown };
  return last.getClassName() === 'Softmax' || cfg.activation === 'softmax';
}

/** Mean cross-entropy of a batch; works on logits or on softmax probabilities. */
export function crossEntropy(
  output: tf.Tensor,
  labels: tf.Tensor1D,
  numClasses: number,
  softmaxOutput: boolean,
): tf.Scalar {
  return tf.tidy(() => {
    const oneHot = tf.oneHot(labels, numClasses);
    if (softmaxOutput) {
      const p = tf.clipByValue(output, 1e-7, 1);
      return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.log(p)), -1))) as tf.Scalar;
    }
    return tf.losses.softmaxCrossEntropy(oneHot, output) as tf.Scalar;
  });
}

/** Number of correct top-1 predictions (int32 scalar). */
export function correctCount(output: tf.Tensor, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(
    () => tf.sum(tf.cast(tf.equal(tf.argMax(output, -1), tf.cast(labels, 'int32')), 'int32')) as tf.Scalar,
  );
}

/** Total number of parameters (trainable and not, e.g. batch-norm moving statistics). */
export function countModelParams(model: tfl.LayersModel): number {
  return model.weights.reduce((s, w) => s + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

/** Yields to the event loop (lets IPC messages such as 'cancel' in between synchronous steps). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Test-set evaluation in inference mode (batch norm uses its moving statistics). */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { correctCount, crossEntropy, outputIsSoftmax } from './model-utils.js';

export interface ArraySplit {
  /** NHWC, float32. */
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

export interface EvalResult {
  accuracy: number;
  loss: number;
  count: number;
}

/**
 * Accuracy (0..1) and mean cross-entropy over the whole split, in batches of `batchSize`. Reads
 * back asynchronously: the webgpu backend cannot read a GPU tensor synchronously in Node.
 */
export async function evaluateModel(
  model: tfl.LayersModel,
  split: ArraySplit,
  imageShape: readonly number[],
  numClasses: number,
  batchSize = 256,
): Promise<EvalResult> {
  const per = imageShape.reduce((a, b) => a * b, 1);
  const softmax = outputIsSoftmax(model);
  let correct = 0;
  let lossSum = 0;
  for (let start = 0; start < split.count; start += batchSize) {
    const n = Math.min(batchSize, split.count - start);
    const both = tf.tidy(() => {
      const x = tf.tensor4d(split.images.subarray(start * per, (start + n) * per), [n, ...imageShape] as [
        number,
        number,
        number,
        number,
      ]);
      const y = tf.tensor1d(split.labels.subarray(start, start + n), 'int32');
      const out = model.apply(x, { training: false }) as tf.Tensor;
      return tf.stack([tf.cast(correctCount(out, y), 'float32'), crossEntropy(out, y, numClasses, softmax)]);
    });
    const [c, l] = await both.data();
    both.dispose();
    correct += c!;
    lossSum += l! * n;
  }
  return {
    accuracy: split.count ? correct / split.count : 0,
    loss: split.count ? lossSum / split.count : 0,
    count: split.count,
  };
}

/** Model outputs (as stored: logits or probabilities) for the first `n` examples, for export checks. */
export async function predictArrays(
  model: tfl.LayersModel,
  split: ArraySplit,
  imageShape: readonly number[],
  n: number,
): Promise<Float32Array> {
  const per = imageShape.reduce((a, b) => a * b, 1);
  const k = Math.min(n, split.count);
  const y = tf.tidy(() => {
    const x = tf.tensor4d(split.images.subarray(0, k * per), [k, ...imageShape] as [
      number,
      number,
      number,
      number,
    ]);
    return model.apply(x, { training: false }) as tf.Tensor;
  });
  try {
    return (await y.data()) as Float32Array;
  } finally {
    y.dispose();
  }
}

/**
 * Batch-norm statistics re-estimation: after the weights changed (a low-rank distortion), the moving
 * mean / variance describe the old network. Recompute them as the population mean and (biased)
 * variance of each BN layer's input over training batches. In training mode every BN normalises
 * with its batch statistics, so the inputs of later BN layers do not depend on the moving
 * statistics of earlier ones and one pass suffices.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { Batch } from './loop.js';

export function batchNormLayers(model: tfl.LayersModel): tfl.layers.Layer[] {
  return model.layers.filter((l) => l.getClassName() === 'BatchNormalization');
}

/** Returns the number of BN layers updated (0 when the model has none). Disposes the batches. */
export function reestimateBatchNorm(
  model: tfl.LayersModel,
  batches: Iterable<Batch>,
  maxBatches = 100,
): number {
  const bns = batchNormLayers(model);
  const sums: tf.Tensor1D[] = [];
  const sqs: tf.Tensor1D[] = [];
  const counts: number[] = bns.map(() => 0);
  let used = 0;
  const probe = bns.length
    ? tfl.model({ inputs: model.inputs, outputs: bns.map((l) => l.input as tfl.SymbolicTensor) })
    : null;
  for (const b of batches) {
    if (probe && used < maxBatches) {
      tf.tidy(() => {
        const raw = probe.apply(b.x, { training: true }) as tf.Tensor | tf.Tensor[];
        const outs = Array.isArray(raw) ? raw : [raw];
        outs.forEach((t, i) => {
          const axes = t.shape.slice(0, -1).map((_, k) => k);
          counts[i]! += t.size / t.shape[t.shape.length - 1]!;
          const s = tf.sum(t, axes) as tf.Tensor1D;
          const q = tf.sum(tf.square(t), axes) as tf.Tensor1D;
          const prevS = sums[i];
          const prevQ = sqs[i];
          sums[i] = tf.keep(prevS ? tf.add(prevS, s) : s);
          sqs[i] = tf.keep(prevQ ? tf.add(prevQ, q) : q);
          prevS?.dispose();
          prevQ?.dispose();
        });
      });
      used += 1;
    }
    tf.dispose([b.x, b.y]);
  }
  if (!probe || used === 0) return 0;
  bns.forEach((layer, i) => {
    tf.tidy(() => {
      const mean = tf.div(sums[i]!, counts[i]!);
      const variance = tf.relu(tf.sub(tf.div(sqs[i]!, counts[i]!), tf.square(mean)));
      for (const w of layer.weights) {
        if (/moving_mean$/.test(w.originalName)) w.write(mean);
        else if (/moving_variance$/.test(w.originalName)) w.write(variance);
      }
    });
  });
  tf.dispose([...sums, ...sqs]);
  return bns.length;
}

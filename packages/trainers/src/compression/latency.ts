/**
 * Measured inference latency: median wall time of model.predict on one batch (after warm-up), on
 * the current backend. Original and factored models are measured with the same input and batch.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

export interface LatencyOptions {
  batch: number;
  warmup?: number;
  repeats?: number;
  seed?: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median milliseconds per batch of `batch` images of shape inputShape (HWC). */
export async function measureLatency(
  model: tfl.LayersModel,
  inputShape: readonly number[],
  opts: LatencyOptions,
): Promise<number> {
  const warmup = opts.warmup ?? 2;
  const repeats = opts.repeats ?? 5;
  const x = tf.randomUniform([opts.batch, ...inputShape], 0, 1, 'float32', opts.seed ?? 0);
  const times: number[] = [];
  try {
    for (let i = 0; i < warmup + repeats; i++) {
      const t0 = performance.now();
      const y = model.predict(x) as tf.Tensor;
      // data() waits for the backend to finish (asynchronous backends would otherwise time nothing).
      await y.data();
      const dt = performance.now() - t0;
      y.dispose();
      if (i >= warmup) times.push(dt);
    }
  } finally {
    x.dispose();
  }
  return median(times);
}

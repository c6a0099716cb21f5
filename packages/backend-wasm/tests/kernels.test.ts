/**
 * The custom wasm kernels against the cpu backend: values and gradients of conv2d (dW, dX),
 * depthwise conv (dW, dX) and batch norm, over a grid of shapes, strides, paddings and filters.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { createRng, type Rng } from '@flatrank/core';
import { loadWasmBackend, useBatchNormGradient } from '../src/index.js';

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

function randn(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

/** Runs fn on a backend with fresh tensors from the given arrays; returns plain arrays. */
async function on(backend: 'cpu' | 'wasm', fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(fn).map((t) => {
    const v = t.dataSync() as Float32Array;
    t.dispose();
    return Float32Array.from(v);
  });
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / Math.max(den, 1e-6);
}

const PADS: Array<[string, Pad]> = [
  ['same', 'same'],
  ['valid', 'valid'],
  [
    'explicit',
    [
      [0, 0],
      [1, 2],
      [2, 0],
      [0, 0],
    ],
  ],
];
const SHAPES: Array<[number, number, number, number]> = [
  [2, 7, 7, 3],
  [3, 8, 6, 2],
];

beforeAll(async () => {
  await tf.setBackend('cpu');
  await loadWasmBackend();
});

describe('wasm Conv2DBackpropFilter / Conv2DBackpropInput match cpu', () => {
  const cases: Array<[string, [number, number, number, number], number, Pad, number]> = [];
  for (const shape of SHAPES)
    for (const stride of [1, 2])
      for (const [pn, pad] of PADS)
        for (const f of [1, 3, 5])
          cases.push([`${shape.join('x')} s${stride} ${pn} f${f}`, shape, stride, pad, f]);
  test.each(cases)('%s', async (_label, shape, stride, pad, f) => {
    const rng = createRng(shape[1] * 100 + stride * 10 + f);
    const oc = 4;
    const xv = randn(
      shape.reduce((a, b) => a * b),
      rng,
    );
    const wv = randn(f * f * shape[3] * oc, rng);
    const run = () => {
      const x = tf.tensor4d(xv, shape);
      const w = tf.tensor4d(wv, [f, f, shape[3], oc]);
      const conv = (a: tf.Tensor4D, b: tf.Tensor4D) => tf.conv2d(a, b, stride, pad);
      const y = conv(x, w);
      // A fixed, non-uniform upstream gradient: sum(y * r).
      const r = tf.tensor(randn(y.size, createRng(7)), y.shape);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), r)),
      );
      const [dx, dw] = g([x, w]);
      return [y, dx!, dw!];
    };
    const cpu = await on('cpu', run);
    const wasm = await on('wasm', run);
    expect(maxRelErr(wasm[0]!, cpu[0]!)).toBeLessThan(1e-5); // forward
    expect(maxRelErr(wasm[1]!, cpu[1]!)).toBeLessThan(1e-5); // dX
    expect(maxRelErr(wasm[2]!, cpu[2]!)).toBeLessThan(1e-5); // dW
  });
});

describe('wasm depthwise conv gradients match cpu', () => {
  const cases: Array<[string, number, Pad, number, number]> = [];
  for (const stride of [1, 2])
    for (const [pn, pad] of PADS)
      for (const f of [1, 3, 5])
        for (const m of [1, 2]) cases.push([`s${stride} ${pn} f${f} m${m}`, stride, pad, f, m]);
  test.each(cases)('%s', async (_label, stride, pad, f, m) => {
    const rng = createRng(stride * 31 + f * 7 + m);
    const shape: [number, number, number, number] = [2, 7, 6, 3];
    const xv = randn(2 * 7 * 6 * 3, rng);
    const wv = randn(f * f * 3 * m, rng);
    const run = () => {
      const x = tf.tensor4d(xv, shape);
      const w = tf.tensor4d(wv, [f, f, 3, m]);
      const conv = (a: tf.Tensor4D, b: tf.Tensor4D) =>
        tf.depthwiseConv2d(a, b, stride, pad as 'same' | 'valid');
      const y = conv(x, w);
      const r = tf.tensor(randn(y.size, createRng(9)), y.shape);
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), r)),
      )([x, w]);
      return [y, dx!, dw!];
    };
    const cpu = await on('cpu', run);
    const wasm = await on('wasm', run);
    expect(maxRelErr(wasm[0]!, cpu[0]!)).toBeLessThan(1e-5);
    expect(maxRelErr(wasm[1]!, cpu[1]!)).toBeLessThan(1e-5);
    expect(maxRelErr(wasm[2]!, cpu[2]!)).toBeLessThan(1e-5);
  });
});

describe('FusedBatchNorm gradient by broadcasting', () => {
  test.each([
    ['NHWC, per-channel stats', [2, 5, 4, 3], [3]],
    ['2-D, per-feature stats', [6, 4], [4]],
    ['statistics shaped like x', [3, 2, 4], [3, 2, 4]],
  ] as const)('%s: equals the stock (Tile) gradient on cpu, and on wasm', async (_l, xShape, pShape) => {
    const rng = createRng(5);
    const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    const xv = randn(size(xShape), rng);
    const [mv, vv, sv, ov] = [0, 1, 2, 3].map(() => randn(size(pShape), rng));
    const run = () => {
      const x = tf.tensor(xv, [...xShape]);
      const mean = tf.tensor(mv!, [...pShape]);
      const variance = tf.add(tf.abs(tf.tensor(vv!, [...pShape])), 0.5);
      const scale = tf.tensor(sv!, [...pShape]);
      const offset = tf.tensor(ov!, [...pShape]);
      const r = tf.tensor(randn(size(xShape), createRng(3)), [...xShape]);
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor, e: tf.Tensor) =>
        tf.sum(tf.mul(tf.batchNorm(a, b, c, e, d, 1e-3), r));
      return tf.grads(f)([x, mean, variance, scale, offset]);
    };
    useBatchNormGradient('stock');
    const stock = await on('cpu', run);
    useBatchNormGradient('broadcast');
    const cpu = await on('cpu', run);
    const wasm = await on('wasm', run);
    expect(stock).toHaveLength(5);
    for (let i = 0; i < 5; i++) {
      expect(maxRelErr(cpu[i]!, stock[i]!)).toBeLessThan(1e-6);
      expect(maxRelErr(wasm[i]!, stock[i]!)).toBeLessThan(1e-5);
    }
  });
});

test('custom kernels dispose their intermediates', async () => {
  await tf.setBackend('wasm');
  const x = tf.randomNormal([2, 8, 8, 3]);
  const w = tf.randomNormal([3, 3, 3, 4]);
  const g = () =>
    tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')),
    )([x, w]);
  tf.dispose(g()); // warm-up (kernel setup)
  const before = (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
  tf.dispose(g());
  expect((tf.backend() as unknown as { numDataIds(): number }).numDataIds()).toBe(before);
  tf.dispose([x, w]);
});

describe('wasm MaxPoolGrad (JS scatter) matches cpu, ties included', () => {
  const cases: Array<[string, number, number, 'same' | 'valid']> = [];
  for (const f of [2, 3])
    for (const s of [1, 2])
      for (const p of ['same', 'valid'] as const) cases.push([`f${f} s${s} ${p}`, f, s, p]);
  test.each(cases)('%s', async (_l, f, s, pad) => {
    const rng = createRng(f * 10 + s);
    // ReLU-like values: many exact zeros, so windows often tie.
    const xv = randn(2 * 7 * 6 * 3, rng).map((v) => Math.max(0, v));
    const run = () => {
      const x = tf.tensor4d(xv, [2, 7, 6, 3]);
      const y = tf.maxPool(x, f, s, pad);
      const r = tf.tensor(randn(y.size, createRng(4)), y.shape);
      return [y, tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, f, s, pad), r)))(x)];
    };
    const cpu = await on('cpu', run);
    const wasm = await on('wasm', run);
    expect(wasm[0]).toEqual(cpu[0]);
    expect(maxRelErr(wasm[1]!, cpu[1]!)).toBeLessThan(1e-6);
  });
});

describe('wasm BatchMatMul with transposed operands matches cpu', () => {
  test.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])('transposeA %s, transposeB %s', async (ta, tb) => {
    const rng = createRng(Number(ta) * 2 + Number(tb));
    const av = randn(2 * 5 * 7, rng);
    const bv = randn(2 * 7 * 3, rng);
    const run = () => {
      const a = tf.tensor3d(av, ta ? [2, 7, 5] : [2, 5, 7]);
      const b = tf.tensor3d(bv, tb ? [2, 3, 7] : [2, 7, 3]);
      const r = tf.tensor(randn(2 * 5 * 3, createRng(2)), [2, 5, 3]);
      const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q, ta, tb), r)))([
        a,
        b,
      ]);
      return [tf.matMul(a, b, ta, tb), da!, db!];
    };
    const cpu = await on('cpu', run);
    const wasm = await on('wasm', run);
    for (let i = 0; i < 3; i++) expect(maxRelErr(wasm[i]!, cpu[i]!)).toBeLessThan(1e-5);
  });
});

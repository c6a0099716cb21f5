/**
 * Every op LeNet-5, the CIFAR ResNets, VGG-small and the factored chains train with, forward and
 * gradient, on webgpu against the cpu backend. Runs on whatever adapter Dawn offers (llvmpipe in
 * CI, forced: software adapters are never picked automatically); skipped, saying why, without one.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// Registers TF.js's gradients (tfjs-core alone has none).
import '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWebgpuBackend, probeWebgpu, releaseWebgpuBackend } from '../src/index.js';

const probe = await probeWebgpu();
const skipReason = probe.ok ? null : probe.reason;
if (skipReason) console.warn(`webgpu op tests skipped: ${skipReason}`);

/** Relative error bound: float32 sums in another order (measured up to ~5e-6 on llvmpipe). */
const REL = 1e-4;

type Inputs = Record<string, { shape: number[]; scale?: number; positive?: boolean }>;
interface OpCase {
  name: string;
  inputs: Inputs;
  /** The op under test; its output is contracted with a fixed random tensor to give a scalar loss. */
  f(x: Record<string, tf.Tensor>): tf.Tensor;
  /** Inputs not differentiated (integer-like or statistics). */
  noGrad?: string[];
}

const nhwc = (n: number, h: number, w: number, c: number) => [n, h, w, c];
const CASES: OpCase[] = [
  ...(
    [
      ['3x3 stride 1 same', [3, 3, 3, 4], 1, 'same'],
      ['3x3 stride 2 same (ResNet downsampling)', [3, 3, 3, 4], 2, 'same'],
      ['5x5 valid (LeNet-5)', [5, 5, 3, 4], 1, 'valid'],
      ['1x1 (Tucker-2 / CP ends)', [1, 1, 3, 4], 1, 'same'],
      ['3x1 stride 2 (spatial SVD chain)', [3, 1, 3, 4], 2, 'same'],
      ['1x3 (spatial SVD chain)', [1, 3, 3, 4], 1, 'same'],
    ] as const
  ).map(([label, fshape, stride, pad]): OpCase => ({
    name: `conv2d ${label}`,
    inputs: { x: { shape: nhwc(2, 8, 8, 3) }, w: { shape: [...fshape], scale: 0.3 } },
    f: ({ x, w }) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad),
  })),
  {
    name: 'conv2d with bias + relu (tfjs-layers fuses them)',
    inputs: { x: { shape: nhwc(2, 6, 6, 2) }, w: { shape: [3, 3, 2, 3], scale: 0.3 }, b: { shape: [3] } },
    f: ({ x, w, b }) =>
      tf.fused.conv2d({
        x: x as tf.Tensor4D,
        filter: w as tf.Tensor4D,
        strides: 1,
        pad: 'same',
        bias: b,
        activation: 'relu',
      }),
  },
  ...(
    [
      ['d x 1 stride (2,1) (CP chain)', [3, 1, 4, 1], [2, 1]],
      ['1 x d (CP chain)', [1, 3, 4, 1], [1, 1]],
    ] as const
  ).map(([label, fshape, strides]): OpCase => ({
    name: `depthwiseConv2d ${label}`,
    inputs: { x: { shape: nhwc(2, 8, 8, 4) }, w: { shape: [...fshape], scale: 0.3 } },
    f: ({ x, w }) =>
      tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, [...strides] as [number, number], 'same'),
  })),
  {
    name: 'maxPool 2x2 stride 2',
    inputs: { x: { shape: nhwc(2, 8, 8, 3) } },
    f: ({ x }) => tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid'),
  },
  {
    name: 'global average pool (mean over H, W)',
    inputs: { x: { shape: nhwc(2, 4, 4, 5) } },
    f: ({ x }) => tf.mean(x!, [1, 2]),
  },
  {
    name: 'dense: matMul + bias + relu',
    inputs: { x: { shape: [4, 12] }, w: { shape: [12, 5], scale: 0.3 }, b: { shape: [5] } },
    f: ({ x, w, b }) => tf.relu(tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b!)),
  },
  {
    name: 'fused matMul (dense layer path)',
    inputs: { x: { shape: [4, 12] }, w: { shape: [12, 5], scale: 0.3 }, b: { shape: [5] } },
    f: ({ x, w, b }) =>
      tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b, activation: 'relu' }),
  },
  {
    name: 'batch norm, training mode (moments + batchNorm, as tfjs-layers)',
    inputs: { x: { shape: nhwc(3, 4, 4, 3) }, gamma: { shape: [3] }, beta: { shape: [3] } },
    f: ({ x, gamma, beta }) => {
      const { mean, variance } = tf.moments(x!, [0, 1, 2]);
      return tf.batchNorm(x!, mean, variance, beta, gamma, 1e-5);
    },
  },
  {
    name: 'batch norm, inference (moving statistics)',
    inputs: {
      x: { shape: nhwc(2, 3, 3, 3) },
      m: { shape: [3] },
      v: { shape: [3], positive: true },
      gamma: { shape: [3] },
      beta: { shape: [3] },
    },
    f: ({ x, m, v, gamma, beta }) => tf.batchNorm(x!, m!, v!, beta, gamma, 1e-5),
    noGrad: ['m', 'v'],
  },
  {
    name: 'option-A shortcut: slice, reshape, pad',
    inputs: { x: { shape: nhwc(2, 4, 4, 2) } },
    f: ({ x }) => {
      const s = tf.reshape(tf.slice(tf.reshape(x!, [4, 2, 2, 4]), [0, 0, 0, 0], [4, 1, 2, 2]), [2, 2, 2, 2]);
      return tf.pad(s, [
        [0, 0],
        [0, 0],
        [0, 0],
        [1, 1],
      ]);
    },
  },
  {
    name: 'residual add + relu',
    inputs: { a: { shape: nhwc(2, 3, 3, 2) }, b: { shape: nhwc(2, 3, 3, 2) } },
    f: ({ a, b }) => tf.relu(tf.add(a!, b!)),
  },
  {
    name: 'softmax cross-entropy (the loss)',
    inputs: { logits: { shape: [4, 10] }, labels: { shape: [4, 10], positive: true } },
    f: ({ logits, labels }) =>
      tf.losses.softmaxCrossEntropy(tf.div(labels!, tf.sum(labels!, 1, true)), logits!),
    noGrad: ['labels'],
  },
  {
    name: 'L2 weight decay and the momentum update (square, sum, mul, add, sub)',
    inputs: { w: { shape: [3, 3, 2, 2] }, v: { shape: [3, 3, 2, 2] } },
    f: ({ w, v }) => tf.sub(w!, tf.mul(0.1, tf.add(tf.mul(0.9, v!), tf.mul(5e-4, tf.sum(tf.square(w!)))))),
  },
];

function seededValues(n: number, seed: number, scale: number, positive: boolean): Float32Array {
  // xorshift32: the same inputs on both backends, independent of TF.js's RNG.
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const u = s / 4294967296;
    out[i] = positive ? 0.1 + u * scale : (u * 2 - 1) * scale;
  }
  return out;
}

interface Result {
  y: Float32Array;
  grads: Record<string, Float32Array>;
}

async function run(c: OpCase, seed: number): Promise<Result> {
  const names = Object.keys(c.inputs);
  const xs: Record<string, tf.Tensor> = {};
  names.forEach((k, i) => {
    const s = c.inputs[k]!;
    const size = s.shape.reduce((a, b) => a * b, 1);
    xs[k] = tf.tensor(seededValues(size, seed + i, s.scale ?? 1, s.positive ?? false), s.shape);
  });
  const diff = names.filter((k) => !c.noGrad?.includes(k));
  const y = c.f(xs);
  const probe = tf.tensor(seededValues(y.size, seed + 99, 1, false), y.shape);
  const g = tf.grads((...args: tf.Tensor[]) => {
    const inp = { ...xs };
    diff.forEach((k, i) => (inp[k] = args[i]!));
    return tf.sum(tf.mul(c.f(inp), probe));
  })(diff.map((k) => xs[k]!));
  const out: Result = { y: (await y.data()) as Float32Array, grads: {} };
  for (let i = 0; i < diff.length; i++) out.grads[diff[i]!] = (await g[i]!.data()) as Float32Array;
  tf.dispose([y, probe, ...g, ...Object.values(xs)]);
  return out;
}

function relError(got: Float32Array, want: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

describe.skipIf(skipReason !== null)(
  `webgpu ops vs cpu, forward and gradient${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let adapter = '';
    beforeAll(async () => {
      adapter = (await loadWebgpuBackend({ allowSoftware: true })).device;
    });
    afterAll(() => releaseWebgpuBackend());

    it.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_n, c, i) => {
      await tf.setBackend('cpu');
      const want = await run(c, 1000 + i);
      expect(await tf.setBackend('webgpu')).toBe(true);
      const got = await run(c, 1000 + i);
      expect(got.y.length, adapter).toBe(want.y.length);
      expect(relError(got.y, want.y), `${c.name}: forward on ${adapter}`).toBeLessThan(REL);
      for (const k of Object.keys(want.grads))
        expect(relError(got.grads[k]!, want.grads[k]!), `${c.name}: d/d${k} on ${adapter}`).toBeLessThan(REL);
    });
  },
);

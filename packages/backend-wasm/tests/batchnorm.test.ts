/**
 * flatrank's training batch-norm kernels on wasm, called directly (no layer): the forward kernel
 * gives tf.moments() + tf.batchNorm() of the cpu backend (output, batch mean, biased variance), and
 * the gradient kernel gives the cpu gradient of sum(y dy) + sum(mean dmean) + sum(variance dvar)
 * for x, scale and offset, the statistics' gradients included; channels with means far from zero
 * keep their variance. Inputs the kernels cannot take are a ShapeError naming the field. (The
 * BatchNormalization layer that runs these kernels is tested in @flatrank/trainers.)
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BATCH_NORM_TRAINING_GRAD_KERNEL, BATCH_NORM_TRAINING_KERNEL, ShapeError } from '@flatrank/protocol';
import { loadWasmBackend } from '../src/index.js';

const EPSILON = 1e-3;

beforeAll(async () => {
  await loadWasmBackend();
});

/** Runs f on a backend; returns copies of its outputs. */
async function on(backend: 'cpu' | 'wasm', f: () => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => f().map((t) => Float32Array.from(t.dataSync() as Float32Array)));
}

/** Largest |a-b| relative to max(1, max|b|), per output. */
function relDiffs(a: Float32Array[], b: Float32Array[]): number[] {
  expect(a.map((v) => v.length)).toEqual(b.map((v) => v.length));
  return a.map((x, i) => {
    const y = b[i]!;
    const scale = Math.max(1, ...y.map(Math.abs));
    return Math.max(0, ...x.map((v, j) => Math.abs(v - y[j]!) / scale));
  });
}

/** x (channel c has mean ~ shift * (c + 1)), scale, offset, and the incoming gradients. */
function inputs(shape: number[], shift: number) {
  const C = shape[shape.length - 1]!;
  const r = (s: number[], seed: number) => tf.randomUniform(s, -1, 1, 'float32', seed);
  const x = tf.add(tf.mul(r(shape, 1), 3), tf.mul(tf.range(1, C + 1, 1, 'float32'), shift));
  return {
    x,
    scale: tf.add(r([C], 2), 1.5) as tf.Tensor1D,
    offset: r([C], 3) as tf.Tensor1D,
    dy: r(shape, 4),
    dmean: r([C], 5) as tf.Tensor1D,
    dvariance: r([C], 6) as tf.Tensor1D,
  };
}

const axesOf = (shape: number[]) => shape.slice(0, -1).map((_, i) => i);

/** tfjs-core's composite batch norm: [y, mean, variance]. */
function reference(x: tf.Tensor, scale: tf.Tensor1D, offset: tf.Tensor1D): tf.Tensor[] {
  const { mean, variance } = tf.moments(x, axesOf(x.shape));
  return [tf.batchNorm(x, mean, variance, offset, scale, EPSILON), mean, variance];
}

const CASES: Array<[string, number[], number]> = [
  ['NHWC', [4, 5, 6, 8], 0],
  ['NHWC, means far from zero', [3, 4, 4, 5], 100],
  ['odd sizes', [2, 3, 3, 3], 1],
  ['dense [N, C]', [16, 10], 10],
];

describe('wasm training batch-norm kernels vs tfjs-core on cpu', () => {
  test.each(CASES)('forward: %s %j', async (_label, shape, shift) => {
    const run = (fused: boolean) => () => {
      const { x, scale, offset } = inputs(shape, shift);
      return fused
        ? (tf
            .engine()
            .runKernel(BATCH_NORM_TRAINING_KERNEL, { x, scale, offset }, { epsilon: EPSILON }) as tf.Tensor[])
        : reference(x, scale, offset);
    };
    const diffs = relDiffs(await on('wasm', run(true)), await on('cpu', run(false)));
    for (const d of diffs) expect(d).toBeLessThan(2e-5);
  });

  test.each(CASES)('gradient, statistics included: %s %j', async (_label, shape, shift) => {
    const ref = await on('cpu', () => {
      const { x, scale, offset, dy, dmean, dvariance } = inputs(shape, shift);
      const loss = (xx: tf.Tensor, s: tf.Tensor, o: tf.Tensor) => {
        const [y, mean, variance] = reference(xx, s as tf.Tensor1D, o as tf.Tensor1D);
        return tf.addN([
          tf.sum(tf.mul(y!, dy)),
          tf.sum(tf.mul(mean!, dmean)),
          tf.sum(tf.mul(variance!, dvariance)),
        ]);
      };
      return tf.grads(loss)([x, scale, offset]);
    });
    const got = await on('wasm', () => {
      const { x, scale, offset, dy, dmean, dvariance } = inputs(shape, shift);
      const [, mean, variance] = tf
        .engine()
        .runKernel(BATCH_NORM_TRAINING_KERNEL, { x, scale, offset }, { epsilon: EPSILON }) as tf.Tensor[];
      return tf
        .engine()
        .runKernel(
          BATCH_NORM_TRAINING_GRAD_KERNEL,
          { dy, x, scale, mean: mean!, variance: variance!, dmean, dvariance },
          { epsilon: EPSILON },
        ) as tf.Tensor[];
    });
    const diffs = relDiffs(got, ref);
    for (const d of diffs) expect(d).toBeLessThan(2e-4);
  });

  test('inputs the kernel cannot take are a ShapeError naming the field', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomUniform([2, 3, 4], -1, 1, 'float32', 1);
    const short = tf.ones([3]);
    const ok = tf.ones([4]);
    const err = (() => {
      try {
        tf.engine().runKernel(
          BATCH_NORM_TRAINING_KERNEL,
          { x, scale: short, offset: ok },
          { epsilon: EPSILON },
        );
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as ShapeError).field).toBe(`${BATCH_NORM_TRAINING_KERNEL}.scale`);
    expect((err as Error).message).toMatch(/scale must be float32 with 4 values/);
    tf.dispose([x, short, ok]);
  });
});

/**
 * The fused training-mode batch norm (models/batch-normalization.ts + the native kernels): the
 * layer on the native backend matches tfjs-layers' moments() + batchNorm() on the cpu backend
 * (output, moving statistics, gradients for x, gamma and beta) over several shapes, including
 * channels whose mean is far from zero; the kernel's gradient through its statistics outputs is
 * right; the layer falls back to tfjs-layers' path where the kernel does not apply; and it
 * serialises as a plain 'BatchNormalization'.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  BatchNormalization,
  batchNormTraining,
  batchNormalization,
  fusedBatchNormAvailable,
  setFusedBatchNorm,
} from '../src/models/index.js';
import { maxRelDiff, nativeExpected, rand, runOn, setupNative } from './native-helpers.js';
import { bnLayerStep } from './training-steps.js';

let calls = new Map<string, number>();
beforeAll(async () => {
  ({ calls } = await setupNative());
});

describe.skipIf(!nativeExpected)('fused training batch norm on the native backend', () => {
  test('the native backend provides the fused kernels; cpu does not', async () => {
    await tf.setBackend('native');
    expect(fusedBatchNormAvailable()).toBe(true);
    await tf.setBackend('cpu');
    expect(fusedBatchNormAvailable()).toBe(false);
  });

  test.each([
    ['NHWC', [4, 5, 6, 8], 0],
    ['NHWC, means far from zero', [3, 7, 5, 16], 40],
    ['odd sizes', [2, 3, 3, 3], 2],
    ['dense [N, C]', [33, 10], 5],
    ['one row per channel group', [1, 1, 2, 4], 0],
  ])('layer matches tfjs-layers on cpu: %s %j', async (_label, shape, shift) => {
    const before = calls.get('batchNormTrainGrad') ?? 0;
    const ref = await runOn('cpu', () => bnLayerStep(shape as number[], 11, shift as number, 0.9));
    const got = await runOn('native', () => bnLayerStep(shape as number[], 11, shift as number, 0.9));
    const names = ['y', 'dx', 'dgamma', 'dbeta', 'movingMean', 'movingVariance'];
    const bad = names
      .map((n, i) => [n, maxRelDiff([got[i]!], [ref[i]!])] as const)
      .filter(([, d]) => !(d <= 2e-4))
      .map(([n, d]) => `${n}: ${d}`);
    expect(bad).toEqual([]);
    expect(calls.get('batchNormTrainGrad') ?? 0).toBeGreaterThan(before);
  });

  test('switched off, the layer runs tfjs-layers path on native (and still matches)', async () => {
    const before = calls.get('batchNormTrain') ?? 0;
    setFusedBatchNorm(false);
    try {
      const ref = await runOn('cpu', () => bnLayerStep([2, 4, 4, 6], 3, 1, 0.5));
      const got = await runOn('native', () => bnLayerStep([2, 4, 4, 6], 3, 1, 0.5));
      expect(maxRelDiff(got, ref)).toBeLessThan(2e-4);
    } finally {
      setFusedBatchNorm(true);
    }
    expect(calls.get('batchNormTrain') ?? 0).toBe(before);
  });

  test('gradient through the statistics outputs matches moments() on cpu', async () => {
    // loss = sum(y r1) + sum(mean r2) + sum(variance r3): dmean and dvariance are not zero here.
    const loss = (fused: boolean) => (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      let y: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor;
      if (fused) [y, mean, variance] = batchNormTraining(x, g as tf.Tensor1D, b as tf.Tensor1D, 1e-3);
      else {
        ({ mean, variance } = tf.moments(x, [0, 1, 2]));
        y = tf.batchNorm(x, mean, variance, b, g, 1e-3);
      }
      return tf.addN([
        tf.sum(tf.mul(y, rand(y.shape, 5))),
        tf.sum(tf.mul(mean, rand(mean.shape, 6))),
        tf.sum(tf.mul(variance, rand(variance.shape, 7))),
      ]);
    };
    const inputs = () => [tf.add(rand([3, 4, 5, 7], 1), 2), tf.add(rand([7], 2), 1.5), rand([7], 3)];
    const ref = await runOn('cpu', () => {
      const xs = inputs();
      return [loss(false)(...(xs as [tf.Tensor, tf.Tensor, tf.Tensor])), ...tf.grads(loss(false))(xs)];
    });
    const got = await runOn('native', () => {
      const xs = inputs();
      return [loss(true)(...(xs as [tf.Tensor, tf.Tensor, tf.Tensor])), ...tf.grads(loss(true))(xs)];
    });
    expect(maxRelDiff(got, ref)).toBeLessThan(2e-4);
  });

  test('falls back to tfjs-layers for inputs the kernel does not take (channels-first axis)', async () => {
    await tf.setBackend('native');
    const before = calls.get('batchNormTrain') ?? 0;
    const layer = batchNormalization({ axis: 1 });
    const y = tf.tidy(() => (layer.apply(rand([2, 3, 4, 4], 1), { training: true }) as tf.Tensor).clone());
    expect(y.shape).toEqual([2, 3, 4, 4]);
    expect(calls.get('batchNormTrain') ?? 0).toBe(before);
    y.dispose();
  });
});

describe('BatchNormalization serialisation', () => {
  test('saves as a plain BatchNormalization and loads back as the fused layer', async () => {
    await tf.setBackend('cpu');
    const input = tfl.input({ shape: [4, 4, 3] });
    const out = batchNormalization({ name: 'bn', momentum: 0.8, epsilon: 1e-4 }).apply(
      input,
    ) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: input, outputs: out });
    const json = model.toJSON(null, false) as { config: { layers: Array<{ class_name: string }> } };
    expect(json.config.layers.map((l) => l.class_name)).toContain('BatchNormalization');
    const loaded = await tfl.models.modelFromJSON({ modelTopology: json } as never);
    const bn = loaded.getLayer('bn');
    expect(bn).toBeInstanceOf(BatchNormalization);
    expect(bn.getConfig()).toMatchObject({ momentum: 0.8, epsilon: 1e-4 });
    model.dispose();
    loaded.dispose();
  });
});

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
  batchNormalization,
  fusedBatchNormAvailable,
  fusedBatchNormReluAvailable,
  setFusedBatchNorm,
} from '../src/models/index.js';
import { maxRelDiff, nativeExpected, rand, runOn, setupNative } from '@flatrank/backend-native/testing';
import { BATCH_NORM_RELU_TRAINING_GRAD_KERNEL, BATCH_NORM_RELU_TRAINING_KERNEL } from '@flatrank/protocol';
import { BN_LAYER_CASES, bnLayerDifferences, bnLayerStep, statisticsGradients } from './training-steps.js';

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

  test.each(BN_LAYER_CASES)('layer matches tfjs-layers on cpu: %s %j', async (_label, shape, shift) => {
    const before = calls.get('batchNormTrainGrad') ?? 0;
    expect(await bnLayerDifferences('native', shape, shift)).toEqual([]);
    expect(calls.get('batchNormTrainGrad') ?? 0).toBeGreaterThan(before);
  });

  test.each(BN_LAYER_CASES)(
    'batch norm + ReLU layer, rectified in the batch-norm kernel, matches both layers on cpu: %s %j',
    async (_label, shape, shift) => {
      await tf.setBackend('native');
      expect(fusedBatchNormReluAvailable()).toBe(true);
      expect(await bnLayerDifferences('native', shape, shift, true)).toEqual([]);
      // The fused kernels ran; the Relu kernel passed their output through (no addon pass) and
      // its gradient kernel never ran.
      const unary = calls.get('unary') ?? 0;
      const profile = await tf.profile(() => {
        tf.dispose(bnLayerStep(shape, 11, shift, 0.9, true));
      });
      const kernels = profile.kernels.map((k) => k.name);
      expect(kernels).toEqual(
        expect.arrayContaining([
          BATCH_NORM_RELU_TRAINING_KERNEL,
          BATCH_NORM_RELU_TRAINING_GRAD_KERNEL,
          'Relu',
        ]),
      );
      expect(kernels).not.toContain('FlatrankNativeReluGrad');
      expect(calls.get('unary') ?? 0).toBe(unary);
    },
  );

  test('a tensor that is not a fused ReLU output still goes through Relu and its gradient', async () => {
    await tf.setBackend('native');
    const before = calls.get('unary') ?? 0;
    const [y, dx] = await runOn('native', () => valueAndGradsOfRelu(rand([4, 8], 3)));
    expect(calls.get('unary') ?? 0).toBeGreaterThan(before);
    const [yRef, dxRef] = await runOn('cpu', () => valueAndGradsOfRelu(rand([4, 8], 3)));
    expect(maxRelDiff([y!, dx!], [yRef!, dxRef!])).toBe(0);
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
    const ref = await statisticsGradients('cpu', false);
    const got = await statisticsGradients('native', true);
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

/** relu(x) and the gradient of sum(relu(x) * r), r fixed. */
function valueAndGradsOfRelu(x: tf.Tensor): tf.Tensor[] {
  const r = rand(x.shape, 5);
  return [tf.relu(x), tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.relu(t), r)))(x)];
}

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

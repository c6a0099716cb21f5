/**
 * Whole training steps on the native backend match the cpu backend: ResNet-20 (small images so
 * the cpu reference stays fast) and LeNet-5, two momentum-SGD steps each, comparing the losses,
 * the gradients of every trainable weight and all weights afterwards (batch-norm moving statistics
 * included).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import '@tensorflow/tfjs-layers';
import { setFusedBatchNorm } from '../src/models/index.js';
import { nativeExpected, setupNative } from '@flatrank/backend-native/testing';
import { compareSteps, trainSteps } from './training-steps.js';

// Whole networks (or 131k-element tensors) against the cpu backend: seconds on a quiet machine,
// minutes on a loaded shared one.
const HEAVY = { timeout: 120_000 };

let calls = new Map<string, number>();
beforeAll(async () => {
  ({ calls } = await setupNative());
});

describe.skipIf(!nativeExpected)('training steps: native vs cpu', HEAVY, () => {
  test('ResNet-20 (8x8x3 inputs, batch 4): two momentum steps, fused batch norm', async () => {
    const before = calls.get('batchNormTrainGrad') ?? 0;
    const ref = await trainSteps('cpu', 'resnet20', [8, 8, 3], 4);
    const got = await trainSteps('native', 'resnet20', [8, 8, 3], 4);
    expect(got.grads.size).toBeGreaterThan(40);
    expect(compareSteps(got, ref, 2e-4)).toEqual([]);
    expect(got.losses[1]).not.toBe(got.losses[0]);
    // 19 batch norms per step ran the fused training kernel's gradient.
    expect((calls.get('batchNormTrainGrad') ?? 0) - before).toBeGreaterThanOrEqual(38);
  });

  test("ResNet-20: two momentum steps through tfjs-layers' batch norm (fused kernel off)", async () => {
    const before = calls.get('batchNormGrad') ?? 0;
    setFusedBatchNorm(false);
    try {
      const ref = await trainSteps('cpu', 'resnet20', [8, 8, 3], 4);
      const got = await trainSteps('native', 'resnet20', [8, 8, 3], 4);
      expect(compareSteps(got, ref, 2e-4)).toEqual([]);
    } finally {
      setFusedBatchNorm(true);
    }
    // moments() + batchNorm(): the native one-pass FusedBatchNorm gradient ran instead.
    expect((calls.get('batchNormGrad') ?? 0) - before).toBeGreaterThanOrEqual(38);
  });

  test('LeNet-5 (28x28x1, batch 8): two momentum steps', async () => {
    const ref = await trainSteps('cpu', 'lenet5', [28, 28, 1], 8);
    const got = await trainSteps('native', 'lenet5', [28, 28, 1], 8);
    expect(compareSteps(got, ref, 1e-4)).toEqual([]);
  });
});

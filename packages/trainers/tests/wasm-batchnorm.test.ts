/**
 * The fused training-mode BatchNormalization layer on the wasm backend (its kernels are tested on
 * their own in @flatrank/backend-wasm): the layer on wasm matches tfjs-layers'
 * moments() + batchNorm() on the cpu backend (output, moving statistics, gradients for x, gamma and
 * beta) over several shapes, channels with means far from zero and a dense [N, C] input included;
 * the gradient through the statistics outputs matches moments() on cpu; two momentum steps of a
 * ResNet-8 on wasm match cpu. Each test counts calls of the wasm kernels, so a silent fallback to
 * tfjs-layers' path fails it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { BATCH_NORM_TRAINING_GRAD_KERNEL, BATCH_NORM_TRAINING_KERNEL } from '@flatrank/protocol';
import { initBackend } from '../src/backend/index.js';
import { batchNormalization, fusedBatchNormAvailable, setFusedBatchNorm } from '../src/models/index.js';
import { maxRelDiff, rand, runOn } from '@flatrank/backend-native/testing';
import {
  BN_LAYER_CASES,
  bnLayerDifferences,
  bnLayerStep,
  compareSteps,
  statisticsGradients,
  trainSteps,
} from './training-steps.js';

// Whole networks (or 131k-element tensors) against the cpu backend: seconds on a quiet machine,
// minutes on a loaded shared one.
const HEAVY = { timeout: 120_000 };

/** Calls of the two wasm kernels, counted by wrapping the registered kernel functions. */
const calls = new Map<string, number>();
const originals: tf.KernelConfig[] = [];

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  const info = await initBackend({ backend: 'wasm' });
  expect(info.customKernels).toEqual(
    expect.arrayContaining([BATCH_NORM_TRAINING_KERNEL, BATCH_NORM_TRAINING_GRAD_KERNEL]),
  );
  for (const name of [BATCH_NORM_TRAINING_KERNEL, BATCH_NORM_TRAINING_GRAD_KERNEL]) {
    const k = tf.getKernel(name, 'wasm')!;
    originals.push(k);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        calls.set(name, (calls.get(name) ?? 0) + 1);
        return k.kernelFunc(args);
      },
    });
  }
});

afterAll(() => {
  for (const k of originals) {
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel(k);
  }
});

const count = (name: string) => calls.get(name) ?? 0;

describe('fused training batch norm on the wasm backend', () => {
  test('the wasm backend provides the fused kernels; cpu does not', async () => {
    await tf.setBackend('wasm');
    expect(fusedBatchNormAvailable()).toBe(true);
    await tf.setBackend('cpu');
    expect(fusedBatchNormAvailable()).toBe(false);
  });

  test.each(BN_LAYER_CASES)('layer matches tfjs-layers on cpu: %s %j', async (_label, shape, shift) => {
    const before = [count(BATCH_NORM_TRAINING_KERNEL), count(BATCH_NORM_TRAINING_GRAD_KERNEL)];
    expect(await bnLayerDifferences('wasm', shape, shift)).toEqual([]);
    expect(count(BATCH_NORM_TRAINING_KERNEL)).toBe(before[0]! + 1);
    expect(count(BATCH_NORM_TRAINING_GRAD_KERNEL)).toBe(before[1]! + 1);
  });

  test('switched off, the layer runs tfjs-layers path on wasm (and still matches)', async () => {
    const before = count(BATCH_NORM_TRAINING_KERNEL);
    setFusedBatchNorm(false);
    try {
      const ref = await runOn('cpu', () => bnLayerStep([2, 4, 4, 6], 3, 1, 0.5));
      const got = await runOn('wasm', () => bnLayerStep([2, 4, 4, 6], 3, 1, 0.5));
      expect(maxRelDiff(got, ref)).toBeLessThan(2e-4);
    } finally {
      setFusedBatchNorm(true);
    }
    expect(count(BATCH_NORM_TRAINING_KERNEL)).toBe(before);
  });

  test('gradient through the statistics outputs matches moments() on cpu', async () => {
    const ref = await statisticsGradients('cpu', false);
    const before = count(BATCH_NORM_TRAINING_GRAD_KERNEL);
    const got = await statisticsGradients('wasm', true);
    expect(count(BATCH_NORM_TRAINING_GRAD_KERNEL)).toBe(before + 1);
    expect(maxRelDiff(got, ref)).toBeLessThan(2e-4);
  });

  test('falls back to tfjs-layers for a channels-first axis', async () => {
    await tf.setBackend('wasm');
    const before = count(BATCH_NORM_TRAINING_KERNEL);
    const layer = batchNormalization({ axis: 1 });
    const y = tf.tidy(() => (layer.apply(rand([2, 3, 4, 4], 1), { training: true }) as tf.Tensor).clone());
    expect(y.shape).toEqual([2, 3, 4, 4]);
    expect(count(BATCH_NORM_TRAINING_KERNEL)).toBe(before);
    y.dispose();
  });
});

describe('training steps: wasm vs cpu', HEAVY, () => {
  test('ResNet-8 (8x8x3 inputs, batch 4): two momentum steps, fused batch norm', async () => {
    const ref = await trainSteps('cpu', 'resnet8', [8, 8, 3], 4);
    const before = count(BATCH_NORM_TRAINING_GRAD_KERNEL);
    const got = await trainSteps('wasm', 'resnet8', [8, 8, 3], 4);
    expect(got.grads.size).toBeGreaterThan(15);
    expect(compareSteps(got, ref, 2e-4)).toEqual([]);
    expect(got.losses[1]).not.toBe(got.losses[0]);
    // 7 batch norms per step (bn1 + 3 blocks x 2) ran the fused gradient kernel.
    expect(count(BATCH_NORM_TRAINING_GRAD_KERNEL) - before).toBe(14);
  });
});

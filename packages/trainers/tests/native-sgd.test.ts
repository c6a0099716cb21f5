/**
 * MomentumSgd's fused update (training/sgd.ts SGD_MOMENTUM_KERNEL, the native addon's sgdMomentum)
 * matches its TF.js-op path on the cpu backend over several steps: momentum on and off, Nesterov,
 * weight decay on kernels only, and a variable without a gradient left alone.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { MomentumSgd, type SgdOptions } from '../src/training/sgd.js';
import { maxRelDiff, nativeExpected, rand, runOn, setupNative } from '@flatrank/backend-native/testing';

let calls = new Map<string, number>();
beforeAll(async () => {
  ({ calls } = await setupNative());
});

/** Three steps on a kernel (decayed), a bias and an unused variable: final values and buffers. */
function threeSteps(opts: SgdOptions): tf.Tensor[] {
  const kernel = tf.variable(rand([3, 3, 4, 5], 1), true, `k${Math.random()}`);
  const bias = tf.variable(rand([5], 2), true, `b${Math.random()}`);
  const unused = tf.variable(rand([7], 3), true, `u${Math.random()}`);
  const sgd = new MomentumSgd(
    [
      { variable: kernel, decay: true, name: 'kernel' },
      { variable: bias, decay: false, name: 'bias' },
      { variable: unused, decay: true, name: 'unused' },
    ],
    opts,
  );
  for (let s = 0; s < 3; s++) {
    const grads = { [kernel.name]: rand(kernel.shape, 10 + s), [bias.name]: rand(bias.shape, 20 + s) };
    sgd.step(grads, 0.1 / (s + 1));
    tf.dispose(Object.values(grads));
  }
  const state = sgd.exportState();
  const out = [
    kernel.clone(),
    bias.clone(),
    unused.clone(),
    ...state.slots.map((slot) => tf.tensor(slot.values, slot.shape)),
  ];
  sgd.dispose();
  tf.dispose([kernel, bias, unused]);
  return out;
}

describe.skipIf(!nativeExpected)('fused SGD-momentum update on the native backend', () => {
  test.each([
    { momentum: 0.9, nesterov: false, weightDecay: 5e-4 },
    { momentum: 0.9, nesterov: true, weightDecay: 1e-2 },
    { momentum: 0.5, nesterov: false, weightDecay: 0 },
    { momentum: 0, nesterov: false, weightDecay: 1e-3 },
  ])('matches the TF.js-op path on cpu: %j', async (opts) => {
    const before = calls.get('sgdMomentum') ?? 0;
    const ref = await runOn('cpu', () => threeSteps(opts));
    const got = await runOn('native', () => threeSteps(opts));
    expect(maxRelDiff(got, ref)).toBeLessThan(1e-6);
    // 2 variables with gradients x 3 steps; the unused one is never touched.
    expect((calls.get('sgdMomentum') ?? 0) - before).toBe(6);
  });
});

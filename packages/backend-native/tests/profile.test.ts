/**
 * The native profile (src/profile.ts, src/profile-summary.ts) on a tiny training step: its kernels,
 * conv passes and FLOPs are those of the step's layer shapes, the shares add up, op scopes are not
 * counted twice, fallbacks are counted, and nothing is recorded once profiling is off. No timings
 * are asserted beyond being non-negative.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeAddon } from '../src/addon.js';
import { profileNative } from '../src/profile.js';
import { summarizeProfile } from '../src/profile-summary.js';
import { nativeExpected, rand, setupNative } from '../src/testing.js';

beforeAll(async () => {
  await setupNative();
});

const N = 4;
/** conv1 3x3 3->8 8x8 (tf.conv2d: its input gradient is pruned), batch norm, relu,
 *  conv2 3x3 8->16 stride 2 (tf.fused.conv2d: a customGrad scope), relu, mean, dense 16->5. */
function tinyStep(vars: { w1: tf.Variable; w2: tf.Variable; wd: tf.Variable }, x: tf.Tensor4D, y: tf.Tensor) {
  // tfjs-core's batch-norm gradient saves the scale: give it one.
  const bnScale = tf.ones([8]);
  const bnOffset = tf.zeros([8]);
  return async (): Promise<void> => {
    const { value, grads } = tf.variableGrads(() => {
      let h: tf.Tensor4D = tf.conv2d(x, vars.w1 as tf.Tensor4D, 1, 'same');
      const { mean, variance } = tf.moments(h, [0, 1, 2]);
      h = tf.relu(tf.batchNorm(h, mean, variance, bnOffset, bnScale));
      // Linear, as tfjs-layers calls it (under a gradient tf.fused.conv2d fuses nothing else).
      h = tf.relu(tf.fused.conv2d({ x: h, filter: vars.w2 as tf.Tensor4D, strides: 2, pad: 'same' }));
      const logits = tf.matMul(tf.mean(h, [1, 2]) as tf.Tensor2D, vars.wd as tf.Tensor2D);
      return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
    });
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
  };
}

describe.skipIf(!nativeExpected)('native profile of a tiny training step', () => {
  test('kernels, conv passes and FLOPs match the layer shapes; shares add up', async () => {
    await tf.setBackend('native');
    const vars = {
      w1: tf.variable(rand([3, 3, 3, 8], 1)),
      w2: tf.variable(rand([3, 3, 8, 16], 2)),
      wd: tf.variable(rand([16, 5], 3)),
    };
    const x = rand([N, 8, 8, 3], 4) as tf.Tensor4D;
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3], 'int32'), 5);
    const step = tinyStep(vars, x, y);
    await step(); // warm: primitives created outside the profile
    const runs = [await profileNative(step), await profileNative(step)];
    const s = summarizeProfile(runs, { peakGflops: 100, peakGflopsPerThread: 50 });

    const calls = Object.fromEntries(s.kernels.map((k) => [k.kernel, k.calls]));
    expect(calls).toMatchObject({
      Conv2D: 1,
      FusedConv2D: 1,
      Conv2DBackpropFilter: 2,
      // Only conv2's: conv1's input is the data, and tf.conv2d's gradient is not asked for it.
      Conv2DBackpropInput: 1,
    });
    // The fused conv's customGrad wrapper is a scope, not a kernel: timed apart, not summed.
    expect(s.kernels.some((k) => k.kernel.endsWith('__op'))).toBe(false);
    expect(s.step.scopeMs).toBeGreaterThan(0);

    const conv1 = 2 * N * 8 * 8 * 9 * 3 * 8;
    const conv2 = 2 * N * 4 * 4 * 9 * 8 * 16;
    const byPass = (pass: string, layer: string) => s.convs.find((c) => c.pass === pass && c.layer === layer);
    expect(byPass('forward', '3x3 3->8 8x8->8x8')?.gflop).toBeCloseTo(conv1 / 1e9, 12);
    expect(byPass('backprop-filter', '3x3 3->8 8x8->8x8')?.gflop).toBeCloseTo(conv1 / 1e9, 12);
    expect(byPass('backprop-input', '3x3 3->8 8x8->8x8')).toBeUndefined();
    for (const pass of ['forward', 'backprop-input', 'backprop-filter'])
      expect(byPass(pass, '3x3 8->16 8x8->4x4')?.gflop).toBeCloseTo(conv2 / 1e9, 12);
    expect(s.step.convGflop).toBeCloseTo((2 * conv1 + 3 * conv2) / 1e9, 12);
    // Dense forward and its two gradient matmuls: 2 x 4 x 16 x 5 flops each.
    expect(s.step.gflop - s.step.convGflop).toBeCloseTo((3 * 2 * N * 16 * 5) / 1e9, 12);

    // Every conv row met the addon's recorder (same shapes), which names oneDNN's implementation.
    for (const c of s.convs) {
      expect(c.calls).toBe(1);
      expect(c.impl, `${c.pass} ${c.layer}`).toMatch(/\w/);
      expect(c.execCpuMs).toBeGreaterThanOrEqual(0);
      expect(c.batch).toBe(N);
    }
    // Shares: kernels plus the time outside them make the step; nothing counted twice.
    const kernelShare = s.kernels.reduce((a, k) => a + k.share, 0);
    expect(kernelShare + s.step.outsideKernelsShare).toBeCloseTo(1, 9);
    expect(s.step.outsideKernelsMs).toBeGreaterThanOrEqual(0);
    expect(s.step.kernelMs).toBeLessThanOrEqual(s.step.ms);
    expect(s.step.convMs).toBeLessThanOrEqual(s.step.kernelMs);
    expect(s.kernels.find((k) => k.kernel === 'Conv2D')).toMatchObject({ implementation: 'native' });
    expect(s.kernels.every((k) => k.ms >= 0 && k.cpuMs !== null && k.cpuMs >= 0)).toBe(true);
    expect(s.kernels.find((k) => k.kernel === 'Reshape')?.implementation ?? 'cpu').toBe('cpu');
    expect(s.step.fallbacks).toEqual({});
    // Warm: every conv primitive came from the addon's cache.
    expect(s.step.primitivesCreated).toBe(0);
    tf.dispose([x, y, vars.w1, vars.w2, vars.wd]);
  });

  test('fallbacks are counted; nothing is recorded once profiling is off', async () => {
    await tf.setBackend('native');
    const x = rand([2, 6, 6, 4], 5) as tf.Tensor4D;
    const w = rand([1, 1, 4, 3], 6) as tf.Tensor4D;
    // oneDNN 2.6 gets 1x1 convolutions with unequal strides wrong: the cpu kernel runs them.
    const run = await profileNative(() => tf.tidy(() => tf.conv2d(x, w, [1, 2], 'valid')));
    const s = summarizeProfile([run], { peakGflops: null, peakGflopsPerThread: null });
    expect(s.step.fallbacks).toEqual({ Conv2D: 1 });
    expect(s.kernels.find((k) => k.kernel === 'Conv2D')?.implementation).toBe('native+fallback');
    expect(s.convs[0]).toMatchObject({ pass: 'forward', impl: null, execCpuMs: null, fractionOfPeak: null });
    run.result.dispose();

    tf.tidy(() => tf.conv2d(x, rand([3, 3, 4, 3], 7) as tf.Tensor4D, 1, 'same'));
    expect(loadNativeAddon().addon!.convProfile(false)).toEqual([]);
    tf.dispose([x, w]);
  });
});

test('summarizeProfile refuses an empty list', () => {
  expect(() => summarizeProfile([], { peakGflops: null, peakGflopsPerThread: null })).toThrow(/at least one/);
});

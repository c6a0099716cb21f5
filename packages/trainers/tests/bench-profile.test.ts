// The profile bench (bench/profile.ts): its options, and the profile of a real ResNet-8 training
// step on the native backend, whose conv FLOPs per pass are the model's layer shapes (the flop
// counter of the training bench, bench/lib/flops.ts) and whose shares add up. No timings asserted.
import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { profileNative, summarizeProfile } from '@flatrank/backend-native';
import { nativeExpected, setupNative } from '@flatrank/backend-native/testing';
import { initBackend } from '../src/backend/index.js';
import { buildModel } from '../src/models/index.js';
import { MomentumSgd } from '../src/training/sgd.js';
import { trainingFlops } from '../bench/lib/flops.js';
import { parseProfileOptions, profileRows } from '../bench/profile.js';
import type { ProfileResult } from '../bench/lib/jobs.js';

describe('options', () => {
  test('defaults: ResNet-32 at batch 128, 3 steps after 2, peak measured', () => {
    expect(parseProfileOptions([])).toEqual({
      net: 'resnet32',
      batch: 128,
      steps: 3,
      warmup: 2,
      peak: 'measured',
      peakReps: 3,
    });
  });

  test('values, and refusals naming the option', () => {
    const o = parseProfileOptions(['--model=resnet8', '--batch=16', '--steps=1', '--warmup=0', '--peak=172']);
    expect(o).toMatchObject({ net: 'resnet8', batch: 16, steps: 1, warmup: 0, peak: 172 });
    expect(parseProfileOptions(['--peak=committed']).peak).toBe('committed');
    expect(() => parseProfileOptions(['--model=vgg19'])).toThrow(/--model: unknown 'vgg19'/);
    expect(() => parseProfileOptions(['--steps=0'])).toThrow(/--steps must be an integer >= 1/);
    expect(() => parseProfileOptions(['--peak=fast'])).toThrow(/--peak must be/);
    expect(() => parseProfileOptions(['--frobnicate'])).toThrow(/unknown option --frobnicate/);
  });
});

describe.skipIf(!nativeExpected)('profile of a ResNet-8 step on native', () => {
  test(
    'conv FLOPs per pass are the layer shapes; kernel shares and the rest make the step',
    { timeout: 180_000 },
    async () => {
      await setupNative();
      await initBackend({ backend: 'native' });
      const batch = 2;
      const model = buildModel('resnet8', { inputShape: [32, 32, 3], numClasses: 10, seed: 0 });
      const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, 'float32', 1);
      const y = tf.oneHot(tf.tensor1d([1, 7], 'int32'), 10);
      const vars = model.trainableWeights.map((w) => ({
        variable: w.read() as tf.Variable,
        decay: false,
        name: w.originalName,
      }));
      const opt = new MomentumSgd(vars, { momentum: 0.9, nesterov: false, weightDecay: 0 });
      const step = async (): Promise<void> => {
        const { value, grads } = tf.variableGrads(
          () =>
            tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
          vars.map((v) => v.variable),
        );
        opt.step(grads, 0.01);
        await value.data();
        tf.dispose([value, ...Object.values(grads)]);
      };
      await step();
      const runs = [await profileNative(step)];
      const summary = summarizeProfile(runs, { peakGflops: 100, peakGflopsPerThread: 50 });

      const f = trainingFlops(model);
      const convMacs = f.layers.filter((l) => l.kind === 'conv').reduce((s, l) => s + l.macs, 0);
      const stemMacs = f.layers[0]!.macs;
      const passGflop = (pass: string) =>
        summary.convs.filter((c) => c.pass === pass).reduce((s, c) => s + c.gflop, 0);
      expect(passGflop('forward')).toBeCloseTo((2 * batch * convMacs) / 1e9, 9);
      expect(passGflop('backprop-filter')).toBeCloseTo((2 * batch * convMacs) / 1e9, 9);
      // TF.js's fused conv gradient (tfjs-layers' Conv2D) also computes the image's gradient, which
      // the flop counter leaves out: the stem's backprop-input is work the step throws away.
      expect(passGflop('backprop-input')).toBeCloseTo((2 * batch * convMacs) / 1e9, 9);
      expect(summary.step.gflop).toBeCloseTo(
        (batch * f.trainingFlopsPerExample + 2 * batch * stemMacs) / 1e9,
        9,
      );
      // 7 convs, one row per shape and pass; every conv call met the addon's recorder.
      expect(summary.convs.reduce((s, c) => s + c.calls, 0)).toBe(3 * 7);
      expect(summary.convs.every((c) => c.impl !== null && c.execCpuMs !== null)).toBe(true);

      const result: ProfileResult = {
        version: 'v',
        threads: 2,
        batch,
        plainStepMs: [runs[0]!.wallMs],
        profiledStepMs: [runs[0]!.wallMs],
        summary,
        maxRssKb: process.resourceUsage().maxRSS,
      };
      const o = parseProfileOptions(['--model=resnet8', `--batch=${batch}`, '--steps=1']);
      const rows = profileRows(result, o, { gflops: 100, perThread: 50, threads: 2, source: 'test' }, 1);
      expect(rows[0]).toMatchObject({ kind: 'step', net: 'resnet8', batch, steps: 1, peakSource: 'test' });
      expect(rows[0]!['peakRssMiB']).toBeGreaterThan(0);
      const kernels = rows.filter((r) => r.kind === 'kernel');
      const shares = kernels.reduce(
        (s, r) => s + summary.kernels.find((k) => k.kernel === r['kernel'])!.share,
        0,
      );
      expect(shares + summary.step.outsideKernelsShare).toBeCloseTo(1, 9);
      expect(summary.step.outsideKernelsShare).toBeGreaterThanOrEqual(0);
      expect(rows.filter((r) => r.kind === 'conv')).toHaveLength(summary.convs.length);
      expect(kernels.map((r) => r['kernel'])).toEqual(
        expect.arrayContaining([
          'FusedConv2D',
          'Conv2DBackpropInput',
          'Conv2DBackpropFilter',
          'FlatrankBatchNormTraining',
        ]),
      );
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
    },
  );
});

/**
 * The webgpu backend in the trainers: it is chosen only when forced here (llvmpipe is a software
 * adapter), every kernel a training step of LeNet-5 / ResNet-8 / VGG-small runs has a webgpu
 * implementation, the fused batch norm falls back to TF.js ops, and a LeNet-5 distort trial and a
 * ResNet-8 finetune trial of a few steps end where the same trials end on cpu. Skipped, saying why,
 * without the optional packages or a WebGPU adapter. Kept tiny: llvmpipe is slow.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  resolveTrialConfig,
  type TrialConfigInput,
  type TrialEvent,
  type RunEnvironment,
} from '@flatrank/protocol';
import { isWebgpuInstalled, probeWebgpu, releaseWebgpuBackend } from '@flatrank/backend-webgpu';
import { initBackend, installedBackends } from '../src/backend/index.js';
import { buildModel, fusedBatchNormAvailable, setFusedBatchNorm } from '../src/models/index.js';
import { runTrial } from '../src/trial.js';

const probe = await probeWebgpu();
const skipReason = probe.ok ? null : probe.reason;
if (skipReason) console.warn(`webgpu trainer tests skipped: ${skipReason}`);
const title = (t: string) => `${t}${skipReason ? ` (skipped: ${skipReason})` : ''}`;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-webgpu-'));
});
afterAll(() => {
  releaseWebgpuBackend();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!isWebgpuInstalled())(title('webgpu kernels for every op a training step runs'), () => {
  it.each([
    ['lenet5', [28, 28, 1]],
    ['resnet8', [16, 16, 3]],
    ['vgg-small', [8, 8, 3]],
  ] as const)(
    '%s: forward + gradient kernels all exist on webgpu',
    async (name, inputShape) => {
      // Importing TF.js's WebGPU package registers its kernels (the backend itself needs an adapter).
      await import('@tensorflow/tfjs-backend-webgpu' as string);
      // Profiled on wasm (fast) with the fused batch norm off: on webgpu batch norm takes tfjs-layers' ops.
      await initBackend({ backend: 'wasm' });
      const fused = setFusedBatchNorm(false);
      const model = buildModel(name, { inputShape: [...inputShape], numClasses: 10, seed: 0 });
      const x = tf.randomNormal([2, ...inputShape]);
      const y = tf.oneHot(tf.tensor1d([1, 7], 'int32'), 10);
      const { kernelNames } = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(
          () =>
            tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
        );
        // The momentum update and weight decay of MomentumSgd.
        for (const g of Object.values(grads)) tf.add(tf.mul(g, 0.9), tf.mul(tf.sum(tf.square(g)), 1e-4));
        return value;
      });
      // kernelNames also lists op scopes ('fusedConv2d__op'): keep the names wasm has kernels for.
      const kernels = [...new Set(kernelNames)].filter((k) => tf.getKernel(k, 'wasm') !== undefined);
      const missing = kernels.filter((k) => tf.getKernel(k, 'webgpu') === undefined);
      expect(missing, `${name}: kernels without a webgpu implementation`).toEqual([]);
      expect(kernels).toEqual(expect.arrayContaining(['Conv2DBackpropFilter', 'Conv2DBackpropInput']));
      setFusedBatchNorm(fused);
      model.dispose();
      tf.dispose([x, y]);
    },
    180_000,
  );
});

/** Relative L2 distance of two float32 weight files of the same model. */
function weightsRelDiff(a: string, b: string): number {
  const fa = new Float32Array(readFileSync(join(a, 'weights.bin')).buffer.slice(0));
  const fb = new Float32Array(readFileSync(join(b, 'weights.bin')).buffer.slice(0));
  expect(fa.length).toBe(fb.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < fa.length; i++) {
    num += (fa[i]! - fb[i]!) ** 2;
    den += fa[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

async function trialOn(backend: 'cpu' | 'wasm' | 'webgpu', name: string, input: TrialConfigInput) {
  const events: TrialEvent[] = [];
  const out = join(dir, `${name}-${backend}`);
  const summary = await runTrial(resolveTrialConfig(input), {
    dataDir: null,
    artifactDir: out,
    startCheckpoint: null,
    backend,
    heartbeatMs: 60_000,
    emit: (e) => events.push(e),
    logEverySteps: 1,
    // One timed batch per model: latency is not what these tests compare.
    latencyRepeats: 1,
  });
  const env = (events.find((e) => e.type === 'started') as { env: RunEnvironment }).env;
  const losses = events.flatMap((e) =>
    e.type === 'metric' && e.name === 'loss' && e.phase === 'train' ? [e.value] : [],
  );
  const errors = events.flatMap((e) => (e.type === 'layer' ? [e.layer.relativeError] : []));
  return { summary, env, losses, errors, checkpoint: join(out, 'checkpoint') };
}

/**
 * Tolerance of a few-step trial, webgpu vs cpu: float32 sums in another order (~1e-6 per op) grow
 * through the steps and the distortions' SVDs; measured on llvmpipe: weights ~1e-6 apart.
 */
const TRIAL_REL = 1e-3;

describe.skipIf(skipReason !== null)(title('trials on webgpu equal the same trials on cpu'), () => {
  it('auto never picks the software adapter; forced, webgpu loads and records the adapter; batch norm falls back', async () => {
    const adapters = probe.ok ? probe.adapters : [];
    expect(await installedBackends()).toContain('webgpu');
    if (adapters.every((a) => a.software)) {
      const auto = await initBackend({ backend: 'auto' });
      expect(auto.name).not.toBe('webgpu');
      expect(auto.skipped.find((s) => s.name === 'webgpu')?.reason).toMatch(/no GPU device node|software/);
    }
    const info = await initBackend({ backend: 'webgpu' });
    expect(info.name).toBe('webgpu');
    expect(info.device).toContain(adapters[0]!.name);
    expect(fusedBatchNormAvailable()).toBe(false);
  });

  it('LeNet-5 distort, 4 steps with 2 distortions', async () => {
    const input: TrialConfigInput = {
      model: 'lenet5',
      dataset: { name: 'mnist', trainLimit: 64, testLimit: 32 },
      training: { epochs: 1, batchSize: 16, lr: 0.05, weightDecay: 1e-4 },
      method: 'distort',
      compression: { decomposition: 'svd', scheme: 'lowered', rank: { kind: 'rank', rank: 4 } },
      distortion: { interval: 2 },
      seed: 3,
    };
    const cpu = await trialOn('cpu', 'lenet', input);
    const gpu = await trialOn('webgpu', 'lenet', input);
    expect(gpu.env.backend).toBe('webgpu');
    expect(gpu.env.device).toMatch(/^WebGPU /);
    expect(gpu.env.backendVersion).toMatch(/tfjs-backend-webgpu@4\.22\.0 on Dawn/);
    expect(gpu.summary.steps).toBe(4);
    expect(gpu.losses).toHaveLength(cpu.losses.length);
    gpu.losses.forEach((l, i) =>
      expect(Math.abs(l - cpu.losses[i]!) / cpu.losses[i]!).toBeLessThan(TRIAL_REL),
    );
    gpu.errors.forEach((e, i) => expect(Math.abs(e - cpu.errors[i]!)).toBeLessThan(TRIAL_REL));
    expect(weightsRelDiff(gpu.checkpoint, cpu.checkpoint)).toBeLessThan(TRIAL_REL);
    expect(Math.abs(gpu.summary.accuracyFinal - cpu.summary.accuracyFinal)).toBeLessThanOrEqual(1 / 32);
  }, 600_000);

  it('ResNet-8 finetune (Tucker-2), 2 + 2 steps', async () => {
    const input: TrialConfigInput = {
      model: 'resnet8',
      dataset: { name: 'mnist', trainLimit: 16, testLimit: 8 },
      training: { epochs: 2, batchSize: 8, lr: 0.02, weightDecay: 1e-4 },
      method: 'finetune',
      compression: { decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } },
      seed: 5,
    };
    const cpu = await trialOn('cpu', 'resnet8', input);
    const gpu = await trialOn('webgpu', 'resnet8', input);
    expect(gpu.env.backend).toBe('webgpu');
    expect(gpu.summary.steps).toBe(cpu.summary.steps);
    gpu.losses.forEach((l, i) =>
      expect(Math.abs(l - cpu.losses[i]!) / cpu.losses[i]!).toBeLessThan(TRIAL_REL),
    );
    gpu.errors.forEach((e, i) => expect(Math.abs(e - cpu.errors[i]!)).toBeLessThan(TRIAL_REL));
    expect(weightsRelDiff(gpu.checkpoint, cpu.checkpoint)).toBeLessThan(TRIAL_REL);
  }, 600_000);
});

/**
 * Whole training steps on the native backend match the cpu backend: ResNet-20 (small images so
 * the cpu reference stays fast) and LeNet-5, two momentum-SGD steps each, comparing the losses,
 * the gradients of every trainable weight and all weights afterwards (batch-norm moving statistics
 * included).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { buildModel, setFusedBatchNorm } from '../src/models/index.js';
import { maxRelDiff, nativeExpected, rand, setupNative } from './native-helpers.js';

let calls = new Map<string, number>();
beforeAll(async () => {
  ({ calls } = await setupNative());
});

interface StepResult {
  losses: number[];
  grads: Map<string, Float32Array>;
  weights: Map<string, Float32Array>;
}

async function trainSteps(
  backend: string,
  name: 'resnet20' | 'lenet5',
  shape: [number, number, number],
  batch: number,
): Promise<StepResult> {
  await tf.setBackend(backend);
  const model: LayersModel = buildModel(name, { inputShape: shape, numClasses: 10, seed: 7 });
  const x = rand([batch, ...shape], 1);
  const labels = tf.oneHot(tf.tensor1d([3, 1, 4, 1, 5, 9, 2, 6].slice(0, batch), 'int32'), 10);
  const opt = tf.train.momentum(0.05, 0.9);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const losses: number[] = [];
  const grads = new Map<string, Float32Array>();
  for (let step = 0; step < 2; step++) {
    const { value, grads: g } = tf.variableGrads(
      () =>
        tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
      vars,
    );
    losses.push(value.dataSync()[0]!);
    // Keyed by layer weight name: tf variable names get a uniquifying suffix per model instance.
    if (step === 0)
      model.trainableWeights.forEach((w, i) =>
        grads.set(w.originalName, Float32Array.from(g[vars[i]!.name]!.dataSync() as Float32Array)),
      );
    opt.applyGradients(g);
    value.dispose();
    tf.dispose(Object.values(g));
  }
  const weights = new Map(
    model.weights.map((w) => [w.originalName, Float32Array.from(w.read().dataSync() as Float32Array)]),
  );
  model.dispose();
  opt.dispose();
  tf.dispose([x, labels]);
  return { losses, grads, weights };
}

function compare(a: StepResult, b: StepResult, tol: number): string[] {
  const bad: string[] = [];
  a.losses.forEach((l, i) => {
    if (!(Math.abs(l - b.losses[i]!) <= tol * Math.max(1, Math.abs(b.losses[i]!))))
      bad.push(`loss ${i}: ${l} vs ${b.losses[i]}`);
  });
  for (const [what, ma, mb] of [
    ['grad', a.grads, b.grads],
    ['weight', a.weights, b.weights],
  ] as const) {
    expect([...ma.keys()].sort()).toEqual([...mb.keys()].sort());
    for (const [k, v] of ma) {
      const d = maxRelDiff([v], [mb.get(k)!]);
      if (!(d <= tol)) bad.push(`${what} ${k}: ${d}`);
    }
  }
  return bad;
}

describe.skipIf(!nativeExpected)('training steps: native vs cpu', () => {
  test('ResNet-20 (8x8x3 inputs, batch 4): two momentum steps, fused batch norm', async () => {
    const before = calls.get('batchNormTrainGrad') ?? 0;
    const ref = await trainSteps('cpu', 'resnet20', [8, 8, 3], 4);
    const got = await trainSteps('native', 'resnet20', [8, 8, 3], 4);
    expect(got.grads.size).toBeGreaterThan(40);
    expect(compare(got, ref, 2e-4)).toEqual([]);
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
      expect(compare(got, ref, 2e-4)).toEqual([]);
    } finally {
      setFusedBatchNorm(true);
    }
    // moments() + batchNorm(): the native one-pass FusedBatchNorm gradient ran instead.
    expect((calls.get('batchNormGrad') ?? 0) - before).toBeGreaterThanOrEqual(38);
  });

  test('LeNet-5 (28x28x1, batch 8): two momentum steps', async () => {
    const ref = await trainSteps('cpu', 'lenet5', [28, 28, 1], 8);
    const got = await trainSteps('native', 'lenet5', [28, 28, 1], 8);
    expect(compare(got, ref, 1e-4)).toEqual([]);
  });
});

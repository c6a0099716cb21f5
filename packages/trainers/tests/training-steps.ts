/**
 * Shared pieces of the backend-vs-cpu training tests (native and wasm): one training-mode call of a
 * batch-norm layer with its gradients, and two momentum-SGD steps of a model with the losses,
 * gradients and weights to compare.
 */
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { batchNormTraining, batchNormalization, buildModel } from '../src/models/index.js';
import { maxRelDiff, rand, runOn } from '@flatrank/backend-native/testing';

/** One training-mode call of a fresh BN layer: [y, dx, dgamma, dbeta, movingMean, movingVariance]. */
export function bnLayerStep(
  shape: number[],
  seed: number,
  shift: number,
  momentum: number,
  relu = false,
): tf.Tensor[] {
  const layer = batchNormalization({
    axis: -1,
    momentum,
    epsilon: 1e-5,
    gammaInitializer: tfl.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed }),
    betaInitializer: tfl.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: seed + 1 }),
  });
  // Channel c has mean ~ shift * (c + 1): the variance must survive the cancellation.
  const C = shape[shape.length - 1]!;
  const x = tf.add(tf.mul(rand(shape, seed + 2), 3), tf.mul(tf.range(1, C + 1, 1, 'float32'), shift));
  layer.build(x.shape);
  const r = rand(shape, seed + 3);
  const xVar = tf.variable(x, true);
  // With relu: batch norm, then a ReLU layer as the model builder wires them (fused where it can).
  layer.fusedRelu = relu;
  const reluLayer = tfl.layers.reLU();
  const [gamma, beta] = [layer.gamma!.read() as tf.Variable, layer.beta!.read() as tf.Variable];
  let y: tf.Tensor | null = null;
  const { grads } = tf.variableGrads(() => {
    const bn = layer.apply(xVar, { training: true }) as tf.Tensor;
    y = tf.keep(relu ? (reluLayer.apply(bn) as tf.Tensor) : bn);
    return tf.sum(tf.mul(y, r)) as tf.Scalar;
  }, [xVar, gamma, beta]);
  const out = [
    y!,
    grads[xVar.name]!,
    grads[gamma.name]!,
    grads[beta.name]!,
    layer.movingMean.read(),
    layer.movingVariance.read(),
  ].map((t) => tf.keep(t.clone()));
  xVar.dispose();
  return out;
}

/** Shapes (with a per-channel mean shift) the fused batch-norm layer is checked on. */
export const BN_LAYER_CASES: Array<[string, number[], number]> = [
  ['NHWC', [4, 5, 6, 8], 0],
  ['NHWC, means far from zero', [3, 7, 5, 16], 40],
  ['odd sizes', [2, 3, 3, 3], 2],
  ['dense [N, C]', [33, 10], 5],
  ['one row per channel group', [1, 1, 2, 4], 0],
];

/**
 * bnLayerStep on `backend` against tfjs-layers on cpu: one line per output (y, dx, dgamma, dbeta,
 * moving mean / variance) whose relative difference exceeds 2e-4.
 */
export async function bnLayerDifferences(
  backend: string,
  shape: number[],
  shift: number,
  relu = false,
): Promise<string[]> {
  const ref = await runOn('cpu', () => bnLayerStep(shape, 11, shift, 0.9, relu));
  const got = await runOn(backend, () => bnLayerStep(shape, 11, shift, 0.9, relu));
  const names = ['y', 'dx', 'dgamma', 'dbeta', 'movingMean', 'movingVariance'];
  return names
    .map((n, i) => [n, maxRelDiff([got[i]!], [ref[i]!])] as const)
    .filter(([, d]) => !(d <= 2e-4))
    .map(([n, d]) => `${n}: ${d}`);
}

export interface StepResult {
  losses: number[];
  grads: Map<string, Float32Array>;
  weights: Map<string, Float32Array>;
}

export async function trainSteps(
  backend: string,
  name: 'resnet8' | 'resnet20' | 'lenet5',
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

/** Differences beyond `tol` (relative), one line each: losses, first-step gradients, final weights. */
export function compareSteps(a: StepResult, b: StepResult, tol: number): string[] {
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

/**
 * Value and gradients (x, gamma, beta) of sum(y r1) + sum(mean r2) + sum(variance r3) on
 * `backend`, through the fused kernel (fused) or moments() + batchNorm(): dmean and dvariance are
 * not zero here, so the gradient through the statistics outputs is exercised.
 */
export async function statisticsGradients(backend: string, fused: boolean): Promise<Float32Array[]> {
  const loss = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
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
  return runOn(backend, () => {
    const xs = [tf.add(rand([3, 4, 5, 7], 1), 2), tf.add(rand([7], 2), 1.5), rand([7], 3)] as const;
    return [loss(...xs), ...tf.grads(loss)([...xs])];
  });
}

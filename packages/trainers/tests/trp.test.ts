// TRP's engine pieces on the cpu backend: the energy projection's per-layer rank and the
// nuclear-norm subgradient hook. Whole trp trials are in trial-trp.test.ts.
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, svd } from '@flatrank/core';
import { kernelDims, matrixToKernel, nuclearSubgradient } from '@flatrank/decomposers';
import { compressionSchema, type CompressionConfig } from '@flatrank/protocol';
import { buildModel } from '../src/models/index.js';
import { trainableVariables } from '../src/training/index.js';
import {
  NuclearPenalty,
  RankTrajectory,
  distortModel,
  layerRecords,
  planCompression,
  projectedNuclearNorm,
  type CompressionPlan,
} from '../src/compression/index.js';
import { rng, useCpu } from './training-fixtures.js';

const comp = (c: Record<string, unknown>): CompressionConfig => compressionSchema.parse(c);

beforeAll(useCpu);

/** Orthonormal columns (n x k) from the SVD of a seeded random matrix. */
function orthonormal(n: number, k: number, seed: number): Tensor {
  const r = rng(seed);
  return svd(
    new Tensor(
      Float64Array.from({ length: n * k }, () => r() - 0.5),
      [n, k],
    ),
  ).U;
}

/** A kernel of conv2's shape whose `scheme` matrix has exactly the singular values `sigma`. */
function kernelWithSpectrum(
  shape: number[],
  scheme: 'lowered' | 'spatial',
  sigma: number[],
  seed: number,
): Float32Array {
  const dims = kernelDims(new Tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape));
  const rows = scheme === 'lowered' ? dims.t : dims.kh * dims.s;
  const cols = scheme === 'lowered' ? dims.kh * dims.kw * dims.s : dims.kw * dims.t;
  const k = sigma.length;
  const u = orthonormal(rows, k, seed);
  const v = orthonormal(cols, k, seed + 1);
  const m = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let q = 0; q < k; q++) s += u.data[i * k + q]! * sigma[q]! * v.data[j * k + q]!;
      m[i * cols + j] = s;
    }
  return Float32Array.from(matrixToKernel(new Tensor(m, [rows, cols]), dims, scheme).data);
}

function setKernel(model: tfl.LayersModel, name: string, data: Float32Array): void {
  const layer = model.getLayer(name);
  const [kernel, ...rest] = layer.getWeights();
  layer.setWeights([tf.tensor(data, kernel!.shape, 'float32'), ...rest]);
}

describe('TRP projection: the energy rule on a kernel with a known spectrum', () => {
  // sigma_i = 2^(3 - i): squared energies 64, 16, 4, 1, 1/4, ... so the kept share after r values
  // is 1 - 4^-r (of the total): 0.75, 0.9375, 0.984, 0.9961, 0.99902.
  const expected: Array<[number, number]> = [
    [0.7, 1],
    [0.9, 2],
    [0.95, 3],
    [0.99, 4],
    [0.999, 5],
  ];
  for (const scheme of ['lowered', 'spatial'] as const)
    it(`picks the smallest rank holding the energy (${scheme})`, () => {
      const model = buildModel('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 4 });
      const shape = model.getLayer('conv2').getWeights()[0]!.shape; // [5, 5, 6, 16]
      const full = scheme === 'lowered' ? 16 : 30;
      const sigma = Array.from({ length: full }, (_, i) => 2 ** (3 - i));
      const start = kernelWithSpectrum(shape, scheme, sigma, 9);
      for (const [threshold, rank] of expected) {
        setKernel(model, 'conv2', start);
        const plan = planCompression(
          model,
          comp({
            decomposition: 'svd',
            scheme,
            rank: { kind: 'energy', threshold },
            layers: { kind: 'names', names: ['conv2'] },
          }),
          0,
        );
        const results = distortModel(model, plan);
        const [rec] = layerRecords(results);
        expect(rec!.ranks, `energy ${threshold}`).toEqual([rank]);
        // the kept singular values, and nothing else: the projection's nuclear norm
        const kept = sigma.slice(0, rank).reduce((a, b) => a + b, 0);
        expect(projectedNuclearNorm(results)).toBeCloseTo(kept, 4);
      }
      model.dispose();
    });
});

/** Zero loss gradients for every trainable variable, keyed as tf.variableGrads keys them. */
function zeroGrads(model: tfl.LayersModel): tf.NamedTensorMap {
  return Object.fromEntries(
    trainableVariables(model).map((v) => [v.variable.name, tf.zerosLike(v.variable)]),
  );
}

function kernelTensor(model: tfl.LayersModel, name: string): Tensor {
  const w = model.getLayer(name).getWeights()[0]!;
  return new Tensor(Float32Array.from(w.dataSync() as Float32Array), w.shape);
}

function gradOf(model: tfl.LayersModel, grads: tf.NamedTensorMap, name: string): Float32Array {
  const v = trainableVariables(model).find((x) => x.name === `${name}/kernel`)!;
  return grads[v.variable.name]!.dataSync() as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('TRP nuclear-norm penalty (the gradient hook)', () => {
  let model: tfl.LayersModel;
  let plan: CompressionPlan;
  const lambda = 0.01;
  beforeAll(() => {
    model = buildModel('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 });
    plan = planCompression(
      model,
      comp({
        decomposition: 'svd',
        scheme: 'spatial',
        rank: { kind: 'energy', threshold: 0.8 },
        layers: { kind: 'all-but-first', includeFc: true },
      }),
      0,
    );
  });

  it('adds lambda * U V^T of each current target kernel to its gradient, and touches nothing else', async () => {
    const grads = zeroGrads(model);
    const penalty = new NuclearPenalty(model, plan, lambda, 'step');
    await penalty.apply(grads);
    expect(penalty.applications).toBe(1);
    for (const t of plan.targets) {
      // convs by the trial's scheme (spatial), dense layers by their lowered matrix
      const scheme = t.layer.kind === 'dense' ? 'lowered' : 'spatial';
      const sub = nuclearSubgradient(kernelTensor(model, t.layer.name), scheme).subgradient;
      const want = sub.data.map((x) => lambda * x);
      expect(maxAbsDiff(gradOf(model, grads, t.layer.name), want), t.layer.name).toBeLessThan(1e-7);
      expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(1e-4);
    }
    expect(Math.max(...(gradOf(model, grads, 'conv1') as Float32Array).map(Math.abs))).toBe(0);
    const biases = trainableVariables(model).filter((v) => /bias/.test(v.name!));
    for (const b of biases) expect(Math.max(...(grads[b.variable.name]!.dataSync() as Float32Array))).toBe(0);
    tf.dispose(Object.values(grads));
  });

  it('right after a projection it uses that projection\'s U_r V_r^T; "projection" applies it only then', async () => {
    const atProjection = new NuclearPenalty(model, plan, lambda, 'projection');
    const before = zeroGrads(model);
    await atProjection.apply(before);
    expect(atProjection.applications).toBe(0);
    expect(Math.max(...gradOf(model, before, 'conv2').map(Math.abs))).toBe(0);
    const results = distortModel(model, plan);
    atProjection.projected(results);
    const after = zeroGrads(model);
    await atProjection.apply(after);
    expect(atProjection.applications).toBe(1);
    for (const r of results) {
      const name = r.target.layer.name;
      const scheme = r.target.layer.kind === 'dense' ? 'lowered' : 'spatial';
      // the kernel now is the truncation: its fresh minimum-norm subgradient is U_r V_r^T
      const fresh = nuclearSubgradient(kernelTensor(model, name), scheme);
      expect(fresh.rank, name).toBe(r.decomposition.ranks[0]);
      const want = fresh.subgradient.data.map((x) => lambda * x);
      expect(maxAbsDiff(gradOf(model, after, name), want), name).toBeLessThan(1e-6);
    }
    // consumed: the next step has no projection before it
    const next = zeroGrads(model);
    await atProjection.apply(next);
    expect(atProjection.applications).toBe(1);
    tf.dispose([...Object.values(before), ...Object.values(after), ...Object.values(next)]);
  });

  it('lambda 0 leaves the gradients alone', async () => {
    const grads = zeroGrads(model);
    const penalty = new NuclearPenalty(model, plan, 0, 'step');
    penalty.projected(distortModel(model, plan));
    await penalty.apply(grads);
    expect(penalty.applications).toBe(0);
    for (const g of Object.values(grads))
      expect(Math.max(...(g.dataSync() as Float32Array).map(Math.abs))).toBe(0);
    tf.dispose(Object.values(grads));
  });
});

describe('TRP rank trajectory', () => {
  it('keeps every projection up to the limit, else an even sample with the first and the last', () => {
    const model = buildModel('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 6 });
    const plan = planCompression(
      model,
      comp({
        decomposition: 'svd',
        rank: { kind: 'energy', threshold: 0.9 },
        layers: { kind: 'names', names: ['conv2'] },
      }),
      0,
    );
    const results = distortModel(model, plan);
    const counts = { paramsBefore: 100, paramsAfter: 50, macsBefore: 10, macsAfter: 5 };
    const t = new RankTrajectory();
    for (let step = 1; step <= 1001; step++) t.add(step, results, counts);
    expect(t.count).toBe(1001);
    expect(t.sample(2000)).toHaveLength(1001);
    const s = t.sample(501);
    expect(s).toHaveLength(501);
    expect(s.map((p) => p.step)).toEqual(Array.from({ length: 501 }, (_, i) => 1 + 2 * i));
    expect(s[0]!).toEqual({ step: 1, ranks: [results[0]!.decomposition.ranks[0]], paramsRatio: 2 });
    model.dispose();
  });
});

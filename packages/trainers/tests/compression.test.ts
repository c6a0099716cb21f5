import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { svd, Tensor } from '@flatrank/core';
import { decompose, kernelToMatrix, layerCosts, planDecomposition } from '@flatrank/decomposers';
import {
  UnknownNameError,
  ValidationError,
  compressionSchema,
  type CompressionConfig,
} from '@flatrank/protocol';
import { buildModel, convLayers } from '../src/models/index.js';
import {
  buildExportModel,
  decomposeTargets,
  distortModel,
  fixRanks,
  layerRecords,
  modelCounts,
  planCompression,
  selectTargets,
  hasChainExport,
} from '../src/compression/index.js';
import { useCpu, rng } from './training-fixtures.js';

// The compression config as resolveTrialConfig fills it (defaults included).
const comp = (c: Record<string, unknown>): CompressionConfig => compressionSchema.parse(c);

function kernelOf(model: tfl.LayersModel, name: string): { data: Float32Array; shape: number[] } {
  const w = model.getLayer(name).getWeights()[0]!;
  return { data: w.dataSync() as Float32Array, shape: w.shape };
}

function singularValues(m: Tensor): Float64Array {
  return svd(m).S;
}

/** Random inputs (normal) and model outputs in inference mode. */
function outputs(model: tfl.LayersModel, shape: number[], n: number, seed: number): Float32Array {
  return tf.tidy(
    () =>
      (
        model.predict(tf.randomNormal([n, ...shape], 0, 1, 'float32', seed)) as tf.Tensor
      ).dataSync() as Float32Array,
  );
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]!));
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
  }
  return d / Math.max(scale, 1e-12);
}

/** Randomises batch-norm statistics so that the export check exercises them. */
function perturbBatchNorm(model: tfl.LayersModel, seed: number): void {
  const r = rng(seed);
  for (const l of model.layers.filter((x) => x.getClassName() === 'BatchNormalization')) {
    l.setWeights(
      l.getWeights().map((w, i) =>
        tf.tensor(
          Float32Array.from({ length: w.size }, () => (i === 3 ? 0.5 + r() : r() - 0.5)),
          w.shape,
        ),
      ),
    );
  }
}

let resnet: tfl.LayersModel;
const rShape = [8, 8, 3];

beforeAll(async () => {
  await useCpu();
  resnet = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 3 });
});

describe('target selection', () => {
  it('all-but-first skips the first conv (and the FC unless includeFc); names and filter', () => {
    const layers = convLayers(resnet);
    const convs = layers.filter((l) => l.kind === 'conv');
    const abf = selectTargets(layers, { kind: 'all-but-first', includeFc: false });
    expect(abf.map((l) => l.name)).toEqual(convs.slice(1).map((l) => l.name));
    const withFc = selectTargets(layers, { kind: 'all-but-first', includeFc: true });
    expect(withFc.some((l) => l.kind === 'dense')).toBe(true);
    const named = selectTargets(layers, { kind: 'names', names: [convs[2]!.name] });
    expect(named.map((l) => l.name)).toEqual([convs[2]!.name]);
    expect(() => selectTargets(layers, { kind: 'names', names: ['nope'] })).toThrow(UnknownNameError);
    // ResNet-8: conv1 3->16, s1b1 16->16 (x2), s2b1_conv1 16->32 stride 2, s2b1_conv2 32->32,
    // s3b1_conv1 32->64 stride 2, s3b1_conv2 64->64, fc.
    const f = selectTargets(layers, { kind: 'filter', inChannels: 32, outChannels: 32, kernelSize: 3 });
    expect(f.map((l) => l.name)).toEqual(['s2b1_conv2']);
    const strided = selectTargets(layers, { kind: 'filter', stride: 2 });
    expect(strided.map((l) => l.name)).toEqual(['s2b1_conv1', 's3b1_conv1']);
    expect(() => selectTargets(layers, { kind: 'filter', inChannels: 7 })).toThrow(ValidationError);
  });
});

/** A ResNet-8 whose 16 -> 16 convs are planned for rank-4 CP: the CP distortion tests' subject. */
function cpRank4Plan(seed: number) {
  const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed });
  const plan = planCompression(
    model,
    comp({
      decomposition: 'cp',
      rank: { kind: 'rank', rank: 4 },
      layers: { kind: 'filter', inChannels: 16, outChannels: 16 },
    }),
    0,
  );
  return { model, plan };
}

describe('distortion makes the targeted kernels exactly low-rank', { timeout: 120_000 }, () => {
  it('svd lowered: every target kernel has rank r (SVD of the lowered matrix); the first conv is untouched', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 4 });
    const first = kernelOf(model, convLayers(model)[0]!.name).data.slice();
    const plan = planCompression(
      model,
      comp({ decomposition: 'svd', scheme: 'lowered', rank: { kind: 'rank', rank: 4 } }),
      0,
    );
    const res = distortModel(model, plan);
    expect(res.length).toBe(plan.targets.length);
    for (const t of plan.targets) {
      const k = kernelOf(model, t.layer.name);
      const s = singularValues(kernelToMatrix(new Tensor(k.data, k.shape), 'lowered'));
      expect(s[3]! / s[0]!).toBeGreaterThan(1e-3);
      expect(s[4]! / s[0]!).toBeLessThan(2e-6);
    }
    expect(Array.from(kernelOf(model, convLayers(model)[0]!.name).data)).toEqual(Array.from(first));
    // a second distortion of an exactly rank-r kernel changes (almost) nothing
    const again = distortModel(model, plan);
    for (const r of again) expect(r.decomposition.relativeError).toBeLessThan(1e-5);
  });

  it.each(['spatial', 'input'] as const)('svd %s: the scheme matrix has rank r', (scheme) => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 5 });
    const plan = planCompression(
      model,
      comp({ decomposition: 'svd', scheme, rank: { kind: 'rank', rank: 3 } }),
      0,
    );
    distortModel(model, plan);
    for (const t of plan.targets) {
      const k = kernelOf(model, t.layer.name);
      const s = singularValues(kernelToMatrix(new Tensor(k.data, k.shape), scheme));
      expect(s[3]! / s[0]!).toBeLessThan(2e-6);
    }
  });

  it('tiled-svd: every tile has rank r; no conv-chain export; tiled GEMM counts', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 6 });
    const plan = planCompression(
      model,
      comp({
        decomposition: 'tiled-svd',
        tile: [8, 8],
        rank: { kind: 'rank', rank: 2 },
        layers: { kind: 'filter', inChannels: 32, outChannels: 32 },
      }),
      0,
    );
    const res = distortModel(model, plan);
    for (const t of plan.targets) {
      const k = kernelOf(model, t.layer.name);
      const w = kernelToMatrix(new Tensor(k.data, k.shape), 'lowered');
      const [rows, cols] = w.shape as [number, number];
      for (const [p, q] of [
        [0, 0],
        [rows / 8 - 1, cols / 8 - 1],
        [1, 5],
      ] as const) {
        const tile = new Float64Array(64);
        for (let i = 0; i < 8; i++)
          for (let j = 0; j < 8; j++) tile[i * 8 + j] = w.data[(p * 8 + i) * cols + q * 8 + j]!;
        const s = singularValues(new Tensor(tile, [8, 8]));
        expect(s[2]! / s[0]!).toBeLessThan(2e-6);
      }
    }
    expect(hasChainExport(res)).toBe(false);
    expect(() => buildExportModel(model, res)).toThrow(/tiled GEMM/);
    const rec = layerRecords(res)[0]!;
    // a*b / (r*(a+b)) = 64 / 32 = 2 per tile
    expect(rec.paramsBefore / rec.paramsAfter).toBeCloseTo(2, 6);
    const counts = modelCounts(model, plan, res);
    expect(counts.paramsAfter).toBeLessThan(counts.paramsBefore);
    expect(counts.macsAfter).toBeLessThan(counts.macsBefore);
  });

  it('tiled-svd order chw: every tile of the channel-major lowering has rank r, and the layer says so', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 6 });
    const plan = planCompression(
      model,
      comp({
        decomposition: 'tiled-svd',
        order: 'chw',
        tile: [16, 16],
        rank: { kind: 'rank', rank: 2 },
        layers: { kind: 'filter', inChannels: 32, outChannels: 32 },
      }),
      0,
    );
    const res = distortModel(model, plan);
    expect(layerRecords(res).map((r) => r.order)).toEqual(['chw']);
    const k = kernelOf(model, 's2b1_conv2');
    for (const order of ['chw', 'hwc'] as const) {
      const w = kernelToMatrix(new Tensor(k.data, k.shape), 'lowered', order);
      const cols = w.shape[1]!;
      const tile = new Float64Array(256);
      for (let i = 0; i < 16; i++)
        for (let j = 0; j < 16; j++) tile[i * 16 + j] = w.data[(16 + i) * cols + 32 + j]!;
      const s = singularValues(new Tensor(tile, [16, 16]));
      // exactly rank 2 in the channel-major tiles; the tap-major tiles of the same kernel are not
      if (order === 'chw') expect(s[2]! / s[0]!).toBeLessThan(2e-6);
      else expect(s[2]! / s[0]!).toBeGreaterThan(1e-3);
    }
  });

  it('tucker2: the distorted kernels are exactly Tucker-2 of the ranks (re-decomposition error ~0)', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 7 });
    const plan = planCompression(
      model,
      comp({ decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } }),
      0,
    );
    const first = distortModel(model, plan);
    expect(Math.min(...first.map((r) => r.decomposition.relativeError))).toBeGreaterThan(0.05);
    for (const t of plan.targets) {
      const k = kernelOf(model, t.layer.name);
      const again = decompose(new Tensor(k.data, k.shape), t.options);
      expect(again.relativeError).toBeLessThan(1e-5);
    }
  });

  it('cp: the distorted kernels are exactly rank-R CP (re-decomposition error ~0)', () => {
    const { model, plan } = cpRank4Plan(8);
    const first = distortModel(model, plan);
    expect(Math.min(...first.map((r) => r.decomposition.relativeError))).toBeGreaterThan(0.05);
    for (const t of plan.targets) {
      const k = kernelOf(model, t.layer.name);
      const again = decompose(new Tensor(k.data, k.shape), {
        ...t.options,
        cp: { ...t.options.cp, maxIterations: 500, tolerance: 1e-12 },
      });
      expect(again.relativeError).toBeLessThan(1e-3);
    }
  });
});

describe('distortion warm starts and heartbeats', { timeout: 120_000 }, () => {
  it('cp: a distortion given the previous one refits warm (few sweeps); beat runs after every sweep and layer', () => {
    const { model, plan } = cpRank4Plan(9);
    let beats = 0;
    const first = distortModel(model, plan, { beat: () => beats++ });
    const sweeps = (rs: typeof first): number => rs.reduce((a, r) => a + r.decomposition.iterations, 0);
    expect(beats).toBe(sweeps(first) + plan.targets.length);
    // What S_D SGD steps do to the distorted kernels, roughly: move each by 1 % of its norm.
    const r = rng(10);
    for (const t of plan.targets) {
      const k = kernelOf(model, t.layer.name);
      const norm = Math.hypot(...k.data);
      const noise = Float32Array.from(k.data, () => r() - 0.5);
      const scale = (0.01 * norm) / Math.hypot(...noise);
      const moved = tf.tensor(
        Float32Array.from(k.data, (v, i) => v + scale * noise[i]!),
        k.shape,
      );
      model.getLayer(t.layer.name).setWeights([moved, ...model.getLayer(t.layer.name).getWeights().slice(1)]);
      moved.dispose();
    }
    const cold = decomposeTargets(model, plan);
    beats = 0;
    const warm = distortModel(model, plan, { previous: first, beat: () => beats++ });
    expect(beats).toBe(sweeps(warm) + plan.targets.length);
    warm.forEach((w, i) => {
      const d = w.decomposition;
      expect(d.method === 'cp' && d.init, w.target.layer.name).toBe('warm');
      expect(cold[i]!.decomposition.method === 'cp' && cold[i]!.decomposition.init).toBe('svd');
      expect(d.iterations).toBeLessThanOrEqual(10);
      expect(d.iterations).toBeLessThan(cold[i]!.decomposition.iterations);
      expect(d.relativeError).toBeLessThan(0.011);
      expect(d.relativeError).toBeLessThanOrEqual(cold[i]!.decomposition.relativeError + 1e-6);
    });
    const rec = layerRecords(warm, first);
    expect(rec.map((l) => [l.cp?.init, l.converged])).toEqual(warm.map(() => ['warm', true]));
    expect(rec.map((l) => l.iterations)).toEqual(warm.map((w) => w.decomposition.iterations));
  });
});

describe('the exported factored model reproduces the distorted model', { timeout: 120_000 }, () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    [
      'svd lowered (+ FC)',
      {
        decomposition: 'svd',
        scheme: 'lowered',
        rank: { kind: 'rank', rank: 5 },
        layers: { kind: 'all-but-first', includeFc: true },
      },
    ],
    ['svd lowered chw', { decomposition: 'svd', order: 'chw', rank: { kind: 'rank', rank: 5 } }],
    ['svd spatial', { decomposition: 'svd', scheme: 'spatial', rank: { kind: 'rank', rank: 6 } }],
    ['svd input', { decomposition: 'svd', scheme: 'input', rank: { kind: 'rank', rank: 6 } }],
    ['tucker2', { decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } }],
    ['cp', { decomposition: 'cp', rank: { kind: 'rank', rank: 6 }, cp: { maxIterations: 30 } }],
  ];
  it.each(cases)('%s (stride-2 convs, option-A shortcuts, batch norm)', (_name, c) => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 9 });
    perturbBatchNorm(model, 1);
    const plan = planCompression(model, comp(c), 0);
    expect(plan.targets.some((t) => t.layer.strides[0] === 2)).toBe(true);
    const before = outputs(model, rShape, 6, 1);
    const res = distortModel(model, plan);
    const distorted = outputs(model, rShape, 6, 1);
    expect(maxRelDiff(before, distorted)).toBeGreaterThan(1e-3); // the distortion did something
    const factored = buildExportModel(model, res);
    const exported = outputs(factored, rShape, 6, 1);
    expect(maxRelDiff(distorted, exported)).toBeLessThan(1e-4);
    // the factored model really is smaller, by the decomposers' count
    const counted = factored.trainableWeights.reduce(
      (s, w) => s + w.shape.reduce((a: number, b) => a * (b ?? 1), 1),
      0,
    );
    expect(counted).toBe(modelCounts(model, plan, res).paramsAfter);
    factored.dispose();
  });
});

describe('rank policies through the decomposers', () => {
  // The paper's Fig. 3 ratios on ResNet-20 and -32: the reported whole-model ratio (every trainable
  // weight, batch norm and biases included) lands in [target, target * 1.01).
  it.each(['resnet20', 'resnet32'] as const)(
    'model-ratio hits the reported whole-model ratio within 1 %% on %s (tucker2 and cp)',
    (name) => {
      const model = buildModel(name, { inputShape: [8, 8, 1], numClasses: 10, seed: 10 });
      const totalParams = model.trainableWeights.reduce(
        (s, w) => s + w.shape.reduce((a: number, b) => a * (b ?? 1), 1),
        0,
      );
      for (const decomposition of ['tucker2', 'cp'] as const)
        for (const ratio of [1.57, 2.06, 2.8, 4.28, 6.71]) {
          const plan = planCompression(
            model,
            comp({ decomposition, tucker: { algorithm: 'hosvd' }, rank: { kind: 'model-ratio', ratio } }),
            0,
          );
          // counted without factorising: the plan's ranks decide the sizes
          const saved = plan.targets.reduce((s, t) => {
            const p = planDecomposition(
              new Tensor(new Float32Array(t.kernelShape.reduce((a, b) => a * b, 1)), t.kernelShape),
              t.options,
            );
            const c = layerCosts({ ...p, kernelShape: t.kernelShape }, t.geometry);
            return s + c.paramsBefore - c.paramsAfter;
          }, 0);
          const achieved = totalParams / (totalParams - saved);
          expect(achieved, `${decomposition} ${ratio}`).toBeGreaterThanOrEqual(ratio);
          expect(achieved, `${decomposition} ${ratio}`).toBeLessThan(ratio * 1.01);
        }
      // and it is the ratio modelCounts reports after a real decomposition
      const plan = planCompression(
        model,
        comp({
          decomposition: 'tucker2',
          tucker: { algorithm: 'hosvd' },
          rank: { kind: 'model-ratio', ratio: 4.28 },
        }),
        0,
      );
      const counts = modelCounts(model, plan, decomposeTargets(model, plan));
      expect(counts.paramsBefore).toBe(totalParams);
      expect(counts.paramsBefore / counts.paramsAfter).toBeGreaterThanOrEqual(4.28);
      expect(counts.paramsBefore / counts.paramsAfter).toBeLessThan(4.28 * 1.01);
    },
  );
  it('vbmf ranks are fixed from the kernels the first distortion meets, then kept', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 12 });
    const plan = planCompression(model, comp({ decomposition: 'tucker2', rank: { kind: 'vbmf' } }), 0);
    const expected = plan.targets.map((t) => {
      const k = kernelOf(model, t.layer.name);
      return planDecomposition(new Tensor(k.data, k.shape), t.options);
    });
    fixRanks(model, plan);
    const first = layerRecords(distortModel(model, plan));
    // the ranks EVBMF picks on the start kernels, with its raw estimates kept in the record
    expect(first.map((r) => r.ranks)).toEqual(expected.map((p) => p.ranks));
    expect(first.map((r) => r.rawRanks)).toEqual(expected.map((p) => p.rawRanks));
    // a second distortion meets low-rank kernels (EVBMF would now pick other ranks) and keeps them
    const second = layerRecords(distortModel(model, plan));
    expect(second.map((r) => r.ranks)).toEqual(first.map((r) => r.ranks));
    expect(Math.max(...second.map((r) => r.relativeError))).toBeLessThan(1e-5);
  });

  it('an impossible rank fails at planning time, naming the field', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 3], numClasses: 10, seed: 11 });
    expect(() =>
      planCompression(model, comp({ decomposition: 'svd', rank: { kind: 'rank', rank: 100000 } }), 0),
    ).toThrow(/rank/);
  });
});

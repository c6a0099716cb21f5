// Budgeted rank allocation on synthetic layers whose spectra are known: the answers the criteria
// must give, the budgets they must meet, and the budgets they must refuse.
import { describe, expect, it } from 'vitest';
import {
  RankError,
  ValidationError,
  compressionSchema,
  type CompressionConfig,
  type RankPolicy,
} from '@flatrank/protocol';
import { Tensor, matmul, qr } from '@flatrank/core';
import {
  allocateDataFree,
  allocateRanks,
  checkAllocationTarget,
  geometryOf,
  kernelDimsFromShape,
  layerCosts,
  layerDecomposeOptions,
  matrixToKernel,
  modelLayersFor,
  planDecomposition,
  planModelCompression,
  selectTargets,
  type AllocatePolicy,
  type AllocationLayer,
  type RankAllocation,
  type SensitivityRequest,
} from '../src/index.js';
import { nonIncreasing } from '../src/allocation/sensitivity.js';
import { randn } from './helpers.js';

/** A kernel whose lowered T x (kh*kw*S) matrix has exactly these singular values (random vectors). */
function kernelWithSpectrum(shape: number[], sigmas: readonly number[], seed: number): Tensor {
  const dims = kernelDimsFromShape(shape);
  const rows = dims.t;
  const cols = dims.kh * dims.kw * dims.s;
  const n = sigmas.length;
  const u = qr(randn([rows, n], seed)).Q;
  const v = qr(randn([cols, n], seed + 1)).Q;
  const us = new Tensor(new Float64Array(rows * n), [rows, n]);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < n; j++) us.data[i * n + j] = u.data[i * n + j]! * sigmas[j]!;
  return matrixToKernel(matmul(us, v, { transposeB: true }), dims, 'lowered');
}

const decaying = (n: number, tau: number): number[] =>
  Array.from({ length: n }, (_, i) => Math.exp(-i / tau));

const allocate = (by: 'error' | 'vbmf', target: AllocatePolicy['target']): AllocatePolicy => ({
  kind: 'allocate',
  by,
  target,
});

/**
 * ResNet-20 (CIFAR-10 shapes; or another model) with every conv but the first targeted (and the fc
 * layer with includeFc) and synthetic kernels: each layer its own decay unless `spectrum` says.
 */
function resnetLayers(
  comp: Record<string, unknown>,
  model: { name: 'resnet20' | 'lenet5'; input: [number, number, number] } = {
    name: 'resnet20',
    input: [32, 32, 3],
  },
  spectrum?: (name: string, full: number) => number[] | null,
): {
  layers: AllocationLayer[];
  untargetedParams: number;
  untargetedMacs: number;
} {
  const all = modelLayersFor(model.name, model.input, 10);
  const c: CompressionConfig = compressionSchema.parse({ rank: { kind: 'rank', rank: 1 }, ...comp });
  const chosen = selectTargets(all, c.layers);
  const macs = (l: (typeof all)[number]): number =>
    layerCosts(
      {
        ...planDecomposition(
          new Tensor(new Float64Array(l.kernelShape.reduce((a, b) => a * b, 1)), l.kernelShape),
          { method: 'svd', rank: 1 },
        ),
        kernelShape: [...l.kernelShape],
      },
      geometryOf(l),
    ).macsBefore;
  const layers = chosen.map((l, i) => {
    const { rank: _r, ...options } = layerDecomposeOptions(c, l);
    const [kh, kw, s, t] = l.kernelShape;
    const full = Math.min(t, kh * kw * s);
    // Each layer its own decay, so that the best ranks differ between layers.
    const sigmas = spectrum?.(l.name, full) ?? decaying(full, 2 + ((i * 7) % 11));
    const kernel = kernelWithSpectrum([...l.kernelShape], sigmas, 100 + i);
    return { name: l.name, kernelShape: [...l.kernelShape], options, geometry: geometryOf(l), kernel };
  });
  const targeted = new Set(chosen.map((l) => l.name));
  return {
    layers,
    untargetedParams:
      all.reduce((s, l) => s + l.trainableParams, 0) -
      chosen.reduce((s, l) => s + l.kernelShape.reduce((a, b) => a * b, 1), 0),
    untargetedMacs: all.filter((l) => !targeted.has(l.name)).reduce((s, l) => s + macs(l), 0),
  };
}

/** Cross-checks a result against decompose's own plans and counts. */
function checkResult(
  res: RankAllocation,
  layers: readonly AllocationLayer[],
  untargeted: { params: number; macs: number },
): void {
  let params = untargeted.params;
  let macs = untargeted.macs;
  res.layers.forEach((l, i) => {
    const layer = layers[i]!;
    const plan = planDecomposition(layer.kernel!, { ...layer.options, rank: l.policy });
    expect(plan.ranks).toEqual(l.ranks);
    const c = layerCosts({ ...plan, kernelShape: [...layer.kernelShape] }, layer.geometry);
    params += c.paramsAfter;
    macs += c.macsAfter;
  });
  expect(res.paramsAfter).toBe(params);
  expect(res.macsAfter).toBe(macs);
  expect(res.achieved.params).toBeCloseTo(res.paramsBefore / params, 12);
}

describe('allocate by error', () => {
  it('gives an exactly rank-2 layer rank 2 and the rest of the budget to the others', () => {
    const shape = [3, 3, 32, 32];
    const geometry = { inputSize: [8, 8] as [number, number] };
    const layers: AllocationLayer[] = [
      {
        name: 'rank2',
        kernelShape: shape,
        options: { method: 'svd' },
        geometry,
        kernel: kernelWithSpectrum(shape, [1, 1], 1),
      },
      ...[0, 1, 2].map((i) => ({
        name: `smooth${i}`,
        kernelShape: shape,
        options: { method: 'svd' as const },
        geometry,
        kernel: kernelWithSpectrum(shape, decaying(32, 3 + i), 10 + i),
      })),
    ];
    const res = allocateDataFree(layers, allocate('error', { params: 3 }), { untargetedParams: 500 });
    expect(res.layers[0]!.ranks).toEqual([2]);
    expect(res.layers[0]!.error!).toBeLessThan(1e-6);
    // The others share the budget: more rank to the slower decays, all well above 2.
    for (const l of res.layers.slice(1)) expect(l.ranks[0]).toBeGreaterThan(4);
    expect(res.layers[3]!.ranks[0]).toBeGreaterThanOrEqual(res.layers[1]!.ranks[0]!);
    expect(res.achieved.params).toBeGreaterThanOrEqual(3);
    // Within one rank step (320 params) of the budget.
    expect(res.paramsBefore / (res.paramsAfter - 320)).toBeGreaterThan(3);
    // The predicted errors are the singular-value tails (svd: exact).
    expect(res.measured['maxError']).toBe(Math.max(...res.layers.map((l) => l.error!)));
    checkResult(res, layers, { params: 500, macs: 0 });
  });

  it('minimises the largest error: no layer can trade rank for a lower maximum', () => {
    const { layers, untargetedParams, untargetedMacs } = resnetLayers({ decomposition: 'svd' });
    const res = allocateDataFree(layers, allocate('error', { params: 4 }), {
      untargetedParams,
      untargetedMacs,
    });
    const errorLevel = res.measured['errorLevel'] as number;
    // Before the greedy fill every layer had the cheapest rank within the level; the fill only lowers errors.
    expect(res.measured['maxError']).toBeLessThanOrEqual(errorLevel + 1e-12);
    expect(res.measured['maxErrorBeforeFill']).toBeLessThanOrEqual(errorLevel + 1e-12);
  });
});

describe('budgets (error and vbmf)', () => {
  const decompositions: Array<[string, Record<string, unknown>]> = [
    ['svd lowered', { decomposition: 'svd' }],
    ['svd spatial', { decomposition: 'svd', scheme: 'spatial' }],
    ['tiled-svd 16x16', { decomposition: 'tiled-svd', tile: [16, 16] }],
    ['tucker2', { decomposition: 'tucker2' }],
    ['cp', { decomposition: 'cp' }],
  ];
  const cases = decompositions.flatMap(([name, comp]) =>
    (['error', 'vbmf'] as const).flatMap((by) =>
      (
        [
          ['params', 4],
          ['macs', 3],
        ] as const
      ).map(([basis, ratio]) => [name, by, basis, ratio, comp] as const),
    ),
  );
  it.each(cases)(
    '%s by %s hits a %s budget of %sx within 1 %% (ResNet-20 shapes)',
    (_n, by, basis, ratio, comp) => {
      const { layers, untargetedParams, untargetedMacs } = resnetLayers(comp);
      const res = allocateDataFree(layers, allocate(by, { [basis]: ratio }), {
        untargetedParams,
        untargetedMacs,
      });
      expect(res.budget).toEqual({ kind: basis, ratio });
      expect(res.achieved[basis]).toBeGreaterThanOrEqual(ratio);
      expect(res.achieved[basis]).toBeLessThan(ratio * 1.01);
      checkResult(res, layers, { params: untargetedParams, macs: untargetedMacs });
    },
    // tiled-svd by vbmf runs EVBMF on 144 tiles of each of 18 layers: 30-55 s seen on a loaded machine
    120_000,
  );
});

describe('allocate by vbmf', () => {
  it("scales EVBMF's ranks by one factor to the budget and keeps their order", () => {
    const shape = [3, 3, 64, 64];
    const geometry = { inputSize: [8, 8] as [number, number] };
    const trueRanks = [4, 9, 16, 24, 12];
    const layers: AllocationLayer[] = trueRanks.map((r, i) => {
      const low = kernelWithSpectrum(
        shape,
        Array.from({ length: r }, (_, j) => 10 - (5 * j) / r),
        20 + i,
      );
      const noise = randn(shape, 40 + i, 0.02);
      return {
        name: `l${i}`,
        kernelShape: shape,
        options: { method: 'svd' },
        geometry,
        kernel: new Tensor(
          low.data.map((v, j) => v + noise.data[j]!),
          shape,
        ),
      };
    });
    for (const ratio of [2, 4, 8]) {
      const res = allocateDataFree(layers, allocate('vbmf', { params: ratio }), { untargetedParams: 1000 });
      const raw = res.layers.map((l) => (l.measured['rawRanks'] as number[])[0]!);
      expect(raw).toEqual(trueRanks); // EVBMF finds the planted ranks
      expect(res.achieved.params).toBeGreaterThanOrEqual(ratio);
      // Five layers are coarse (a rank step is 640 params): within one step of the budget.
      expect(res.paramsBefore / (res.paramsAfter + 640)).toBeLessThan(ratio);
      const chosen = res.layers.map((l) => l.ranks[0]!);
      for (let a = 0; a < raw.length; a++)
        for (let b = 0; b < raw.length; b++)
          if (raw[a]! > raw[b]!) expect(chosen[a]).toBeGreaterThanOrEqual(chosen[b]!);
      // One factor: every rank is the scaled raw rank rounded, or one rank step above it.
      const scale = res.measured['scale'] as number;
      chosen.forEach((r, i) => expect(r - Math.round(scale * raw[i]!)).toBeGreaterThanOrEqual(0));
      chosen.forEach((r, i) => expect(r - Math.round(scale * raw[i]!)).toBeLessThanOrEqual(1));
      checkResult(res, layers, { params: 1000, macs: 0 });
    }
  });
});

describe('allocate by sensitivity', () => {
  const shape = [3, 3, 32, 32];
  const geometry = { inputSize: [8, 8] as [number, number] };
  const layers: AllocationLayer[] = [0, 1, 2].map((i) => ({
    name: `l${i}`,
    kernelShape: shape,
    options: { method: 'tucker2' },
    geometry,
  }));
  const policy: AllocatePolicy = {
    kind: 'allocate',
    by: 'sensitivity',
    target: { params: 3 },
    sensitivity: { candidates: [1 / 8, 1 / 4, 1 / 2, 3 / 4], validationSize: 100, validationSeed: 0 },
  };

  it('keeps more rank where compression kills accuracy', async () => {
    const requests: SensitivityRequest[] = [];
    // l1's accuracy collapses as its ranks shrink; l0 and l2 hardly care.
    const measure = async (req: SensitivityRequest) => {
      requests.push(req);
      return {
        baseline: 0.9,
        accuracies: req.layers.map((l) =>
          l.candidates.map((c) => {
            const f = (c.ranks[0]! + c.ranks[1]!) / 64;
            return 0.9 - (l.index === 1 ? 0.8 : 0.02) * (1 - f) ** 2;
          }),
        ),
        info: { validation: { size: 100, seed: 0 } },
      };
    };
    const res = await allocateRanks(layers, policy, { untargetedParams: 300, measure });
    expect(requests).toHaveLength(1);
    // Measured at the smallest ranks and at each candidate fraction (Tucker-2: R_S = f*S, R_T = f*T).
    expect(requests[0]!.layers[0]!.candidates.map((c) => c.ranks)).toEqual([
      [1, 1],
      [4, 4],
      [8, 8],
      [16, 16],
      [24, 24],
    ]);
    expect(requests[0]!.layers[0]!.candidates[2]!.options).toMatchObject({
      method: 'tucker2',
      rank: { kind: 'ranks', ranks: [8, 8] },
    });
    const [l0, l1, l2] = res.layers.map((l) => l.ranks[0]!);
    expect(l1).toBeGreaterThan(l0! + 4);
    expect(l1).toBeGreaterThan(l2! + 4);
    expect(res.achieved.params).toBeGreaterThanOrEqual(3);
    expect(res.achieved.params).toBeLessThan(3 * 1.02);
    expect(res.measured).toMatchObject({ baselineAccuracy: 0.9, validation: { size: 100, seed: 0 } });
    expect(res.layers[1]!.measured['curve']).toHaveLength(5);
    // The summed predicted loss is the least a uniform choice within the budget could do, or less.
    const uniform = await allocateRanks(layers, policy, {
      untargetedParams: 300,
      measure: async (req) => ({
        baseline: 0.9,
        accuracies: req.layers.map((l) => l.candidates.map(() => 0.9)),
      }),
    });
    expect(new Set(uniform.layers.map((l) => l.ranks.join()))).toHaveProperty('size', 1);
    expect(res.measured['predictedLoss']).toBeLessThan(
      0.8 * (1 - uniform.layers[1]!.ranks[0]! / 32) ** 2 + 0.04,
    );
  });

  it('refuses to run without data', async () => {
    await expect(allocateRanks(layers, policy, {})).rejects.toMatchObject({ field: 'rank.by' });
    expect(() => allocateDataFree(layers, policy)).toThrow(/needs data/);
  });

  it('fits measured losses non-increasing in rank', () => {
    const fit = nonIncreasing([0.5, 0.3, 0.35, 0.1, 0, 0.02]);
    [0.5, 0.325, 0.325, 0.1, 0.01, 0.01].forEach((v, i) => expect(fit[i]).toBeCloseTo(v, 12));
  });
});

/** Decompose's own counts of a layer at a rank policy. */
function costsAt(layer: AllocationLayer, rank: RankPolicy): ReturnType<typeof layerCosts> {
  const plan = planDecomposition(layer.kernel!, { ...layer.options, rank });
  return layerCosts({ ...plan, kernelShape: [...layer.kernelShape] }, layer.geometry);
}

/**
 * Whether a chosen layer sits at its cap: some free rank is still below full, and raising any of
 * them by one would cost more than the dense layer (in params, or in the macs of a macs budget).
 */
function atCap(layer: AllocationLayer, policy: RankPolicy, basis: 'params' | 'macs'): boolean {
  const ups: RankPolicy[] =
    policy.kind === 'ranks'
      ? [
          { kind: 'ranks', ranks: [policy.ranks[0] + 1, policy.ranks[1]] },
          { kind: 'ranks', ranks: [policy.ranks[0], policy.ranks[1] + 1] },
        ]
      : policy.kind === 'rank'
        ? [{ kind: 'rank', rank: policy.rank + 1 }]
        : [];
  const costs = ups.flatMap((p) => {
    try {
      return [costsAt(layer, p)];
    } catch (e) {
      if (e instanceof RankError) return []; // above full
      throw e;
    }
  });
  return (
    costs.length > 0 &&
    costs.every((c) => c.paramsAfter > c.paramsBefore || (basis === 'macs' && c.macsAfter > c.macsBefore))
  );
}

/** Accuracy falls linearly as a layer's last rank falls below its T output channels; `weights` by layer name. */
function linearMeasure(layers: readonly AllocationLayer[], weights: Record<string, number>) {
  return async (req: SensitivityRequest) => ({
    baseline: 0.9,
    accuracies: req.layers.map((l) => {
      const layer = layers[l.index]!;
      const t = layer.kernelShape[layer.kernelShape.length - 1]!;
      const w = weights[layer.name] ?? 0.02;
      return l.candidates.map((c) => 0.9 - w * (1 - c.ranks[c.ranks.length - 1]! / t));
    }),
  });
}

const policyOf = (by: 'error' | 'vbmf' | 'sensitivity', target: AllocatePolicy['target']): AllocatePolicy =>
  by === 'sensitivity'
    ? {
        kind: 'allocate',
        by,
        target,
        sensitivity: { candidates: [1 / 8, 1 / 4, 1 / 2, 3 / 4], validationSize: 100, validationSeed: 0 },
      }
    : allocate(by, target);

describe('no layer costs more than its dense layer', () => {
  const criteria = ['error', 'vbmf', 'sensitivity'] as const;
  // A flat spectrum in the fc layer (64 -> 10): the error criterion wants its full rank 10, which
  // costs 74*10 = 740 > 640 params; the sensitivity curve makes it the layer that loses most.
  const flatFc = (name: string, full: number): number[] | null =>
    name === 'fc' ? new Array<number>(full).fill(1) : null;
  const cases = (['svd', 'tucker2'] as const).flatMap((decomposition) =>
    criteria.flatMap((by) =>
      (['params', 'macs'] as const).map((basis) => [decomposition, by, basis] as const),
    ),
  );
  it.each(cases)(
    '%s by %s under a generous %s budget (1.05x, ResNet-20 with its fc layer)',
    async (decomposition, by, basis) => {
      const { layers, untargetedParams, untargetedMacs } = resnetLayers(
        { decomposition, layers: { kind: 'all-but-first', includeFc: true } },
        undefined,
        flatFc,
      );
      const res = await allocateRanks(layers, policyOf(by, { [basis]: 1.05 }), {
        untargetedParams,
        untargetedMacs,
        measure: linearMeasure(layers, { fc: 0.5 }),
      });
      expect(res.achieved[basis]).toBeGreaterThanOrEqual(1.05);
      res.layers.forEach((l, i) => {
        const c = costsAt(layers[i]!, l.policy);
        expect(c.paramsAfter, l.name).toBeLessThanOrEqual(c.paramsBefore);
        if (basis === 'macs') expect(c.macsAfter, l.name).toBeLessThanOrEqual(c.macsBefore);
      });
      // Not vacuous: the budget pushed some layer up to the edge of what it can afford.
      expect(res.layers.some((l, i) => atCap(layers[i]!, l.policy, basis))).toBe(true);
      checkResult(res, layers, { params: untargetedParams, macs: untargetedMacs });
    },
  );

  const lenetCases = (['svd', 'tucker2'] as const).flatMap((d) => criteria.map((by) => [d, by] as const));
  it.each(lenetCases)(
    "%s by %s does not grow LeNet-5's fc3 (84 -> 10, 840 params) at a 4x params budget",
    async (decomposition, by) => {
      const { layers, untargetedParams, untargetedMacs } = resnetLayers(
        { decomposition, layers: { kind: 'all-but-first', includeFc: true } },
        { name: 'lenet5', input: [28, 28, 1] },
        (name, full) => (name === 'fc3' ? new Array<number>(full).fill(1) : null),
      );
      expect(layers.map((l) => l.name)).toEqual(['conv2', 'fc1', 'fc2', 'fc3']);
      const res = await allocateRanks(layers, policyOf(by, { params: 4 }), {
        untargetedParams,
        untargetedMacs,
        measure: linearMeasure(layers, { fc3: 0.5 }),
      });
      const fc3 = res.layers[3]!;
      expect(fc3.ranks[0]).toBeLessThanOrEqual(8); // 9 * (84 + 10) = 846 > 840
      expect(costsAt(layers[3]!, fc3.policy).paramsAfter).toBeLessThanOrEqual(840);
      res.layers.forEach((l, i) => {
        const c = costsAt(layers[i]!, l.policy);
        expect(c.paramsAfter, l.name).toBeLessThanOrEqual(c.paramsBefore);
      });
      expect(res.achieved.params).toBeGreaterThanOrEqual(4);
      // Within one rank step of the budget (LeNet-5 is coarse: a step of fc1, 400 -> 120, is 520
      // params, 3 % of the budget, and the capped layers cannot take what is left).
      expect(res.paramsBefore / (res.paramsAfter + 520)).toBeLessThan(4);
      checkResult(res, layers, { params: untargetedParams, macs: untargetedMacs });
    },
  );
});

describe('bad budgets', () => {
  const shape = [3, 3, 16, 16];
  const layer = (i: number): AllocationLayer => ({
    name: `l${i}`,
    kernelShape: shape,
    options: { method: 'tucker2' },
    geometry: { inputSize: [8, 8] },
    kernel: randn(shape, i),
  });
  const fieldOf = (f: () => unknown): { cls: unknown; field: string; message: string } => {
    try {
      f();
    } catch (e) {
      return {
        cls: (e as Error).constructor,
        field: (e as ValidationError).field,
        message: (e as Error).message,
      };
    }
    throw new Error('accepted');
  };

  it('refuses a budget below the smallest model, naming the field and what it reaches', () => {
    const r = fieldOf(() =>
      allocateDataFree([layer(0), layer(1)], allocate('error', { params: 1000 }), { untargetedParams: 10 }),
    );
    expect(r.cls).toBe(RankError);
    expect(r.field).toBe('rank.target.params');
    expect(r.message).toMatch(
      /ratio of 1000 is out of reach: the smallest model \(rank 1 in every one of the 2 target layers\) reaches \d+\.\d+x/,
    );
    const m = fieldOf(() => allocateDataFree([layer(0)], allocate('vbmf', { macs: 1e4 })));
    expect([m.cls, m.field]).toEqual([RankError, 'rank.target.macs']);
  });

  it('refuses targets that are not a ratio > 1, and no target layers', () => {
    for (const [target, field] of [
      [{ params: 1 }, 'rank.target.params'],
      [{ macs: 0.5 }, 'rank.target.macs'],
      [{ params: Number.NaN }, 'rank.target.params'],
      [{ params: 2, macs: 2 }, 'rank.target'],
      [{}, 'rank.target'],
    ] as const) {
      const r = fieldOf(() =>
        allocateDataFree([layer(0)], allocate('error', target as AllocatePolicy['target'])),
      );
      expect([r.cls, r.field]).toEqual([ValidationError, field]);
    }
    const none = fieldOf(() => allocateDataFree([], allocate('error', { params: 2 })));
    expect([none.cls, none.field]).toEqual([ValidationError, 'layers']);
    const noKernel = fieldOf(() =>
      allocateDataFree([{ ...layer(0), kernel: null }], allocate('error', { params: 2 })),
    );
    expect([noKernel.cls, noKernel.field]).toEqual([ValidationError, 'layers[0].kernel']);
  });

  it('is checked at spec time, without kernel values (planModelCompression)', () => {
    const layers = modelLayersFor('resnet20', [32, 32, 3], 10);
    const c = (rank: RankPolicy): CompressionConfig =>
      compressionSchema.parse({ decomposition: 'tucker2', rank });
    const ok = planModelCompression(layers, c({ kind: 'allocate', by: 'error', target: { params: 4 } }));
    expect(ok).toHaveLength(18);
    expect(ok.every((p) => p.ranks === null)).toBe(true);
    const r = fieldOf(() =>
      planModelCompression(layers, c({ kind: 'allocate', by: 'vbmf', target: { macs: 500 } })),
    );
    expect([r.cls, r.field]).toEqual([RankError, 'rank.target.macs']);
    expect(() =>
      checkAllocationTarget(
        ok.map((p) => ({
          name: p.layer.name,
          kernelShape: [...p.layer.kernelShape],
          options: p.options,
          geometry: geometryOf(p.layer),
        })),
        { kind: 'allocate', by: 'sensitivity', target: { params: 3 } },
      ),
    ).not.toThrow();
  });
});

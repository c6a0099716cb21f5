/**
 * allocate by: sensitivity (data-driven, after AIMET's per-layer compression-ratio selection):
 * per target layer an accuracy-vs-rank curve measured on a validation split with only that layer
 * decomposed (by an injected measure function: the measuring belongs to the trainers), then the
 * ranks meeting the budget with the least summed predicted accuracy loss, as a multiple-choice
 * knapsack solved by dynamic programming over a discretised budget.
 */
import { ValidationError, type AllocationTarget } from '@flatrank/protocol';
import { freeRanks, resolveRanks } from '../plan.js';
import type { DecomposeOptions } from '../types.js';
import {
  allocationResult,
  greedyFill,
  prepare,
  type AllocationLayer,
  type AllocationOptions,
  type LayerSpace,
  type RankAllocation,
} from './budget.js';

/** One candidate of a layer: its ranks and the options that decompose the layer at them. */
export interface SensitivityCandidate {
  /** As decompose reports them. */
  ranks: number[];
  options: DecomposeOptions;
}

export interface SensitivityRequest {
  layers: Array<{ index: number; name: string; candidates: SensitivityCandidate[] }>;
}

export interface SensitivityMeasurement {
  /** Validation accuracy of the model as it is (no layer decomposed). */
  baseline: number;
  /** Per layer and candidate, in the request's order: the accuracy with only that layer decomposed. */
  accuracies: number[][];
  /** What the measurer wants recorded with the allocation (validation split, cache key, ...). */
  info?: Record<string, unknown>;
}

/** Measures the curves of a request (the trainers evaluate on a validation split). */
export type SensitivityMeasure = (request: SensitivityRequest) => Promise<SensitivityMeasurement>;

/** Budget steps of the knapsack (the rounding slack, under 0.1 % of the budget, is spent greedily). */
export const KNAPSACK_STEPS = 2048;

/**
 * The ranks the 'fraction' rank policy gives as f runs over (0, 1], in increasing order (Tucker-2:
 * R_S and R_T grow together, as the candidates lie): the choices of a layer.
 */
export function fractionLadder(space: LayerSpace): number[][] {
  const { dims, shape } = space;
  const base =
    shape.method === 'tucker2' && shape.fallback === null
      ? [dims.s, dims.t]
      : shape.fallback === 'tucker1'
        ? [dims.t]
        : shape.fallback === 'svd-2d'
          ? [Math.min(dims.s, dims.t)]
          : space.full;
  const breaks = new Set<number>([0, 1]);
  for (const b of base) for (let j = 0; j < b; j++) if ((j + 0.5) / b < 1) breaks.add((j + 0.5) / b);
  const sorted = [...breaks].sort((a, b) => a - b);
  const samples = sorted.slice(1).map((f, i) => 0.5 * (sorted[i]! + f));
  samples.push(1);
  const out: number[][] = [];
  for (const f of samples) {
    const free = atFraction(space, f);
    const last = out[out.length - 1];
    if (!last || last.some((r, k) => r !== free[k])) out.push(free);
  }
  return out;
}

function atFraction(space: LayerSpace, f: number): number[] {
  return freeRanks(
    space.shape,
    resolveRanks(null, space.dims, space.shape, { kind: 'fraction', fraction: f }).ranks,
  );
}

/** Least-squares non-increasing fit (pool adjacent violators). */
export function nonIncreasing(values: readonly number[]): number[] {
  const blocks: Array<{ sum: number; n: number }> = [];
  for (const v of values) {
    blocks.push({ sum: v, n: 1 });
    while (blocks.length > 1) {
      const b = blocks[blocks.length - 1]!;
      const a = blocks[blocks.length - 2]!;
      if (a.sum / a.n >= b.sum / b.n) break;
      blocks.splice(blocks.length - 2, 2, { sum: a.sum + b.sum, n: a.n + b.n });
    }
  }
  return blocks.flatMap((b) => Array.from({ length: b.n }, () => b.sum / b.n));
}

/** Multiple-choice knapsack: one option per layer, summed weight <= capacity, least summed loss. */
function knapsack(weights: number[][], losses: number[][], capacity: number): number[] {
  const n = weights.length;
  let dp = new Float64Array(capacity + 1); // layers so far, weight <= b
  const choice = weights.map(() => new Int32Array(capacity + 1).fill(-1));
  for (let i = 0; i < n; i++) {
    const next = new Float64Array(capacity + 1).fill(Infinity);
    const w = weights[i]!;
    const l = losses[i]!;
    for (let b = 0; b <= capacity; b++)
      for (let j = 0; j < w.length; j++) {
        if (w[j]! > b) continue;
        const v = dp[b - w[j]!]! + l[j]!;
        if (v < next[b]!) {
          next[b] = v;
          choice[i]![b] = j;
        }
      }
    dp = next;
  }
  const picks = new Array<number>(n).fill(0);
  let b = capacity;
  for (let i = n - 1; i >= 0; i--) {
    const j = choice[i]![b]!;
    picks[i] = j < 0 ? 0 : j;
    b -= weights[i]![picks[i]!]!;
  }
  return picks;
}

function checkMeasurement(m: SensitivityMeasurement, sizes: number[]): void {
  const ok = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  if (!m || !ok(m.baseline) || !Array.isArray(m.accuracies) || m.accuracies.length !== sizes.length)
    throw new ValidationError(
      'measure',
      'the sensitivity measurement must give a baseline accuracy and one accuracy list per target layer',
    );
  m.accuracies.forEach((a, i) => {
    if (!Array.isArray(a) || a.length !== sizes[i] || !a.every(ok))
      throw new ValidationError(
        `measure.accuracies[${i}]`,
        `the sensitivity measurement must give ${sizes[i]} finite accuracies for target layer ${i}`,
      );
  });
}

export interface SensitivityOptions extends AllocationOptions {
  /** Candidate ranks as fractions of each layer's full rank (as the 'fraction' policy maps them). */
  candidates: readonly number[];
  measure?: SensitivityMeasure | null;
}

/**
 * The curves: the candidates and the smallest ranks (every budget the allocator may reach has a
 * measured end), full rank taken as lossless. Between points the predicted loss is piecewise
 * linear in the ladder position after a non-increasing (isotonic) fit of the measured losses. The
 * knapsack chooses over the rungs of every layer's ladder that cost no more than the dense layer;
 * its budget-rounding slack is spent greedily (largest loss reduction per unit of budget, then the
 * lowest layers).
 */
export async function allocateBySensitivity(
  layers: readonly AllocationLayer[],
  target: AllocationTarget,
  opts: SensitivityOptions,
): Promise<RankAllocation> {
  const { spaces, budget } = prepare(layers, target, opts);
  if (typeof opts.measure !== 'function')
    throw new ValidationError(
      'rank.by',
      'allocate by sensitivity needs measured accuracy curves (a measure function over a validation split of the training data); without data use by: error or by: vbmf',
    );
  const fractions = [...new Set(opts.candidates)].sort((a, b) => a - b);
  if (fractions.length === 0 || !fractions.every((f) => typeof f === 'number' && f > 0 && f <= 1))
    throw new ValidationError(
      'rank.sensitivity.candidates',
      `rank.sensitivity.candidates: give fractions of the full rank in (0, 1], got ${JSON.stringify(opts.candidates)}`,
    );
  const ladders = spaces.map((s) => fractionLadder(s));
  const measuredAt = spaces.map((s, i) => {
    const index = new Map(ladders[i]!.map((f, j) => [f.join(','), j]));
    const at = new Set<number>([0, ...fractions.map((f) => index.get(atFraction(s, f).join(','))!)]);
    return [...at].sort((a, b) => a - b);
  });
  const request: SensitivityRequest = {
    layers: spaces.map((s, i) => ({
      index: i,
      name: s.name,
      candidates: measuredAt[i]!.map((j) => {
        const free = ladders[i]![j]!;
        return {
          ranks: s.ranks(free),
          options: { ...s.layer.options, rank: s.policy(free) } as DecomposeOptions,
        };
      }),
    })),
  };
  const m = await opts.measure(request);
  checkMeasurement(
    m,
    measuredAt.map((a) => a.length),
  );
  // The curve runs over the whole ladder to full rank (lossless), but a layer may only choose the
  // rungs no costlier than its dense layer: a prefix, as the rungs' costs grow. The top rung it
  // may choose keeps the loss interpolated between the measured points around it (full rank, the
  // lossless end, may be one of them), not zero: calling the capped top lossless would be optimistic.
  const losses = spaces.map((_, i) =>
    predictedLosses(ladders[i]!.length, measuredAt[i]!, m.accuracies[i]!, m.baseline),
  );
  const reach = spaces.map((s, i) => ladders[i]!.filter((f) => s.affordable(f)).length);
  // Knapsack over the budget above the smallest model, in KNAPSACK_STEPS units (weights rounded up).
  const { basis } = budget;
  const floor = spaces.map((s, i) => s.cost(ladders[i]![0]!)[basis]);
  const spare = budget.limit - floor.reduce((a, b) => a + b, 0);
  const unit = spare > 0 ? spare / KNAPSACK_STEPS : 0;
  const weights = spaces.map((s, i) =>
    ladders[i]!.slice(0, reach[i]).map((f) => {
      const extra = s.cost(f)[basis] - floor[i]!;
      return unit > 0 ? Math.ceil(extra / unit - 1e-9) : extra > 0 ? KNAPSACK_STEPS + 1 : 0;
    }),
  );
  const picks = knapsack(
    weights,
    losses.map((l, i) => l.slice(0, reach[i])),
    unit > 0 ? KNAPSACK_STEPS : 0,
  );
  const frees = picks.map((j, i) => [...ladders[i]![j]!]);
  const positions = spaces.map((_, i) => new Map(ladders[i]!.map((f, j) => [f.join(','), j])));
  const filled = greedyFill(spaces, budget, frees, (i, free) => {
    const j = positions[i]!.get(free.join(','))!;
    const next = j + 1 < reach[i]! ? ladders[i]![j + 1] : undefined;
    return next ? [{ next: [...next], gain: losses[i]![j]! - losses[i]![j + 1]! }] : [];
  });
  const chosen = frees.map((f, i) => positions[i]!.get(f.join(','))!);
  const knapsackLoss = picks.reduce((s, j, i) => s + losses[i]![j]!, 0);
  return allocationResult(
    'sensitivity',
    spaces,
    budget,
    frees,
    (i) => ({
      error: null,
      measured: {
        curve: measuredAt[i]!.map((j, c) => ({
          ranks: spaces[i]!.ranks(ladders[i]![j]!),
          accuracy: m.accuracies[i]![c]!,
        })),
        predictedLoss: losses[i]![chosen[i]!]!,
      },
    }),
    {
      solver: `multiple-choice knapsack (dynamic programming over ${KNAPSACK_STEPS} budget steps) on isotonic piecewise-linear loss curves, then greedy steps by loss reduction per unit of budget`,
      baselineAccuracy: m.baseline,
      candidates: fractions,
      knapsackLoss,
      predictedLoss: chosen.reduce((s, j, i) => s + losses[i]![j]!, 0),
      greedySteps: filled,
      ...(m.info ?? {}),
    },
  );
}

/** Predicted accuracy loss at every ladder rung from the measured points (top rung: lossless). */
function predictedLosses(
  rungs: number,
  at: readonly number[],
  accuracies: readonly number[],
  baseline: number,
): number[] {
  const xs = [...at];
  const ys = accuracies.map((a) => baseline - a);
  if (xs[xs.length - 1] !== rungs - 1) {
    xs.push(rungs - 1);
    ys.push(0);
  }
  const fit = nonIncreasing(ys);
  const out = new Array<number>(rungs);
  for (let p = 0; p + 1 < xs.length; p++) {
    const [x0, x1, y0, y1] = [xs[p]!, xs[p + 1]!, fit[p]!, fit[p + 1]!];
    for (let x = x0; x <= x1; x++) out[x] = y0 + ((y1 - y0) * (x - x0)) / Math.max(1, x1 - x0);
  }
  if (xs.length === 1) out[0] = fit[0]!;
  return out;
}

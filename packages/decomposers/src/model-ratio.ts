import { RankError, ValidationError, type RankPolicy } from '@flatrank/protocol';
import { kernelDimsFromShape } from './kernel.js';
import {
  freeRanks,
  fullRanks,
  kernelParams,
  planParams,
  planShape,
  reportedRanks,
  resolveRanks,
} from './plan.js';
import type { DecomposeOptions } from './types.js';

/** One targeted layer: its kernel shape and how it is decomposed (everything but the rank policy). */
export interface ModelLayerSpec {
  name?: string;
  kernelShape: readonly number[];
  options: Omit<DecomposeOptions, 'rank'>;
}

export interface ModelRatioResult {
  /** The largest uniform fraction whose ranks reach the target (the start of the refinement). */
  fraction: number;
  /** The params ratio the final ranks achieve for the whole set (>= the target). */
  ratio: number;
  /** Per layer, the final ranks (as decompose reports them). */
  ranks: number[][];
  /** Per layer, the rank policy that gives exactly those ranks ({ kind: 'ranks' } for Tucker-2). */
  policies: RankPolicy[];
  paramsBefore: number;
  paramsAfter: number;
}

/**
 * The 'model-ratio' rank policy. Basis: (sum of the targeted kernels before + untargetedParams) /
 * (sum after + untargetedParams), where the caller puts every other parameter it counts in the
 * model's size (trainers: all trainable weights, so the basis is the reported whole-model ratio).
 *
 * First the largest uniform fraction f in (0, 1] such that all layers, each decomposed with
 * { kind: 'fraction', fraction: f }, reach the target (bisection on f; ranks are steps in f).
 * Uniform fractions move many layers' ranks at once, so their ratios jump by several percent at
 * high compression; the ranks are then raised one step at a time, round-robin over the layers,
 * while the target is still reached and no layer's factors outgrow its dense kernel, which lands
 * within one rank step (well under 1 % on ResNets) above the target.
 */
export function modelRatioFraction(
  layers: readonly ModelLayerSpec[],
  ratio: number,
  opts: { untargetedParams?: number } = {},
): ModelRatioResult {
  if (!Array.isArray(layers) || layers.length === 0)
    throw new ValidationError('layers', 'model-ratio needs at least one targeted layer');
  if (!(typeof ratio === 'number' && ratio > 1 && Number.isFinite(ratio)))
    throw new ValidationError('rank.ratio', `model ratio must be a number > 1, got ${JSON.stringify(ratio)}`);
  const fixed = opts.untargetedParams ?? 0;
  if (!(fixed >= 0))
    throw new ValidationError('untargetedParams', `untargetedParams must be >= 0, got ${String(fixed)}`);
  const prepared = layers.map((l, i) => {
    const dims = kernelDimsFromShape(l.kernelShape, `layers[${i}].kernelShape`);
    const shape = planShape(dims, l.options);
    return { dims, shape, full: fullRanks(dims, shape) };
  });
  const before = prepared.reduce((n, p) => n + kernelParams(p.dims), 0) + fixed;
  const layerParams = (i: number, free: readonly number[]): number => {
    const p = prepared[i]!;
    return planParams(p.dims, { ...p.shape, ranks: reportedRanks(p.dims, p.shape, free) });
  };
  const freeAt = (f: number): number[][] =>
    prepared.map((p) =>
      freeRanks(p.shape, resolveRanks(null, p.dims, p.shape, { kind: 'fraction', fraction: f }).ranks),
    );
  const afterOf = (free: number[][]): number => free.reduce((n, r, i) => n + layerParams(i, r), 0) + fixed;
  const reaches = (after: number): boolean => before / after >= ratio * (1 - 1e-12);
  const done = (fraction: number, free: number[][]): ModelRatioResult => {
    const after = afterOf(free);
    const ranks = free.map((r, i) => reportedRanks(prepared[i]!.dims, prepared[i]!.shape, r));
    const policies = free.map((r, i): RankPolicy => {
      const p = prepared[i]!;
      return p.shape.method === 'tucker2' && p.shape.fallback === null
        ? { kind: 'ranks', ranks: [r[0]!, r[1]!] }
        : { kind: 'rank', rank: r[0]! };
    });
    return { fraction, ratio: before / after, ranks, policies, paramsBefore: before, paramsAfter: after };
  };
  if (reaches(afterOf(freeAt(1)))) return done(1, freeAt(1));
  let lo = 1e-9; // every rank clamps to 1
  const best = before / afterOf(freeAt(lo));
  if (best < ratio)
    throw new RankError(
      'rank.ratio',
      `model ratio ${ratio} is out of reach: rank 1 everywhere gives ${best.toFixed(3)}`,
      {
        context: { ratio, best },
      },
    );
  let hi = 1;
  for (let it = 0; it < 60; it++) {
    const mid = 0.5 * (lo + hi);
    if (reaches(afterOf(freeAt(mid)))) lo = mid;
    else hi = mid;
  }
  return done(lo, refine(freeAt(lo)));

  function refine(free: number[][]): number[][] {
    let after = afterOf(free);
    // Passes: all of a layer's free ranks together (keeps Tucker's R_S : R_T), then one at a time.
    for (const together of [true, false]) {
      let grew = true;
      while (grew) {
        grew = false;
        for (let i = 0; i < free.length; i++) {
          const steps = together
            ? [free[i]!.map(() => 1)]
            : free[i]!.map((_, k) => free[i]!.map((_, j) => +(j === k)));
          for (const step of steps) {
            const next = free[i]!.map((r, k) => r + step[k]!);
            if (next.some((r, k) => r > prepared[i]!.full[k]!)) continue;
            // A factored layer larger than its dense kernel spends budget on nothing: never grow one past it.
            if (layerParams(i, next) > kernelParams(prepared[i]!.dims)) continue;
            const nextAfter = after - layerParams(i, free[i]!) + layerParams(i, next);
            if (!reaches(nextAfter)) continue;
            free[i] = next;
            after = nextAfter;
            grew = true;
          }
        }
      }
    }
    return free;
  }
}

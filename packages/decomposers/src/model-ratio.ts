import { RankError, ValidationError } from '@flatrank/protocol';
import { kernelDimsFromShape } from './kernel.js';
import { kernelParams, planParams, planShape, resolveRanks } from './plan.js';
import type { DecomposeOptions } from './types.js';

/** One targeted layer: its kernel shape and how it is decomposed (everything but the rank policy). */
export interface ModelLayerSpec {
  name?: string;
  kernelShape: readonly number[];
  options: Omit<DecomposeOptions, 'rank'>;
}

export interface ModelRatioResult {
  /** The uniform fraction to decompose every targeted layer with ({ kind: 'fraction', fraction }). */
  fraction: number;
  /** The params ratio this fraction achieves for the whole set (>= the target). */
  ratio: number;
  /** Per layer, the ranks the fraction gives. */
  ranks: number[][];
  paramsBefore: number;
  paramsAfter: number;
}

/**
 * The 'model-ratio' rank policy: the largest uniform fraction f in (0, 1] such that all targeted
 * layers, each decomposed with { kind: 'fraction', fraction: f }, reach the target params ratio
 * (sum before + untargeted) / (sum after + untargeted). Ranks are steps in f, so the search is a
 * bisection on f that keeps the invariant "ratio(lo) >= target".
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
    return { dims, shape: planShape(dims, l.options) };
  });
  const before = prepared.reduce((n, p) => n + kernelParams(p.dims), 0) + fixed;
  const evaluate = (f: number): { ratio: number; ranks: number[][]; after: number } => {
    const ranks = prepared.map(
      (p) => resolveRanks(null, p.dims, p.shape, { kind: 'fraction', fraction: f }).ranks,
    );
    const after =
      prepared.reduce((n, p, i) => n + planParams(p.dims, { ...p.shape, ranks: ranks[i]! }), 0) + fixed;
    return { ratio: before / after, ranks, after };
  };
  const done = (f: number): ModelRatioResult => {
    const e = evaluate(f);
    return { fraction: f, ratio: e.ratio, ranks: e.ranks, paramsBefore: before, paramsAfter: e.after };
  };
  if (evaluate(1).ratio >= ratio) return done(1);
  let lo = 1e-9; // every rank clamps to 1
  const best = evaluate(lo).ratio;
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
    if (evaluate(mid).ratio >= ratio) lo = mid;
    else hi = mid;
  }
  return done(lo);
}

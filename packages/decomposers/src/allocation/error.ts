/**
 * allocate by: error (data-free, after ALDS, Liebenwein et al. 2021): the per-layer ranks that
 * minimise the largest relative reconstruction error over the target layers within the budget,
 * then the rest of the budget spent greedily on the best error reduction per unit of budget.
 */
import type { AllocationTarget } from '@flatrank/protocol';
import { singularValues } from '@flatrank/core';
import { spectralMatrices } from '../plan.js';
import {
  allocationResult,
  greedyFill,
  kernelOf,
  prepare,
  type AllocationLayer,
  type AllocationOptions,
  type Budget,
  type LayerSpace,
  type RankAllocation,
  type Step,
} from './budget.js';

/** How a layer's error at given ranks is obtained from its spectra. */
export const ERROR_ESTIMATES = {
  svd: "exact: the tail of the singular values of the scheme's matrix (Eckart-Young)",
  'tiled-svd': 'exact: the tails of the singular values of every tile',
  'tucker2-hosvd-bound':
    'HOSVD bound: the energy outside the leading R_S mode-S and R_T mode-T singular vectors, an upper bound on the truncated HOSVD error (HOOI does at least as well)',
  'cp-unfolding-bound':
    'lower bound: the larger tail of the mode-S and mode-T unfolding spectra beyond R (a CP rank-R kernel has unfoldings of rank <= R); the CP-ALS fit, in the layer record, errs more',
} as const;
export type ErrorEstimate = keyof typeof ERROR_ESTIMATES;

/** A layer's relative error as a function of its free ranks, from its spectra. */
export interface ErrorModel {
  estimate: ErrorEstimate;
  error(free: readonly number[]): number;
  /**
   * The cheapest affordable free ranks (in the budget's basis) whose error is <= eps; where no
   * affordable ranks reach eps, those with the least error (the eps the cap allows).
   */
  cheapest(eps: number, basis: Budget['basis']): number[];
}

/** tail[r] = energy beyond the first r singular values, summed over the given spectra. */
function tails(spectra: readonly Float64Array[]): Float64Array {
  const len = Math.max(...spectra.map((s) => s.length));
  const out = new Float64Array(len + 1);
  for (const s of spectra) {
    let acc = 0;
    for (let r = s.length - 1; r >= 0; r--) {
      acc += s[r]! * s[r]!;
      out[r] = out[r]! + acc;
    }
  }
  return out;
}

const at = (t: Float64Array, r: number): number => (r >= t.length ? 0 : t[r]!);

/** Smallest r in [1, full] with tail(r) <= thr (tails are non-increasing); full if none. */
function smallestWithin(tail: (r: number) => number, full: number, thr: number): number {
  let lo = 1;
  let hi = full;
  if (tail(hi) > thr) return hi;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tail(mid) <= thr) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

export function errorModel(space: LayerSpace): ErrorModel {
  const groups = spectralMatrices(kernelOf(space, 'error'), space.dims, space.shape).map((ms) =>
    tails(ms.map((m) => singularValues(m))),
  );
  const total = groups[0]![0]!;
  const rel = (energy: number): number => (total === 0 ? 0 : Math.min(1, Math.sqrt(energy / total)));
  const thrOf = (eps: number): number => eps * eps * total * (1 + 1e-12) + 1e-300;
  const { method, fallback } = space.shape;
  // Only ranks no costlier than the dense layer are candidates: the single ranks end at the
  // layer's affordable top, Tucker-2's R_T at the edge of the affordable staircase for each R_S.
  const top = space.top;
  if (method === 'tucker2' && fallback === null) {
    const [ts, tt] = groups as [Float64Array, Float64Array];
    return {
      estimate: 'tucker2-hosvd-bound',
      error: (f) => rel(at(ts, f[0]!) + at(tt, f[1]!)),
      cheapest(eps, basis) {
        if (eps >= 1) return space.ones();
        const thr = thrOf(eps);
        let best: number[] | null = null;
        let bestCost = Infinity;
        let closest = space.ones();
        let closestTail = Infinity;
        for (let a = 1; a <= top[0]!; a++) {
          const bTop = space.cap([a, 1], 1);
          if (bTop < 1) break;
          const tailAtTop = at(ts, a) + at(tt, bTop);
          if (tailAtTop < closestTail) [closest, closestTail] = [[a, bTop], tailAtTop];
          const rest = thr - at(ts, a);
          if (rest < 0) continue;
          const b = smallestWithin((r) => at(tt, r), bTop, rest);
          if (at(tt, b) > rest) continue;
          const c = space.cost([a, b])[basis];
          if (c < bestCost) [best, bestCost] = [[a, b], c];
        }
        return best ?? closest;
      },
    };
  }
  if (method === 'cp') {
    const [ts, tt] = groups as [Float64Array, Float64Array];
    const tail = (r: number): number => Math.max(at(ts, r), at(tt, r));
    return {
      estimate: 'cp-unfolding-bound',
      error: (f) => rel(tail(f[0]!)),
      cheapest: (eps) => (eps >= 1 ? [1] : [smallestWithin(tail, top[0]!, thrOf(eps))]),
    };
  }
  const t = groups[0]!;
  return {
    estimate: method === 'tiled-svd' ? 'tiled-svd' : 'svd',
    error: (f) => rel(at(t, f[0]!)),
    cheapest: (eps) => (eps >= 1 ? [1] : [smallestWithin((r) => at(t, r), top[0]!, thrOf(eps))]),
  };
}

/**
 * Bisection on the error level eps: each layer takes its cheapest affordable ranks with error <=
 * eps (or its least error where the cap stops it short of eps); the smallest eps whose ranks fit
 * the budget minimises the largest error. Then greedy steps of one rank (one Tucker rank at a
 * time, never past what the layer can afford) spend the rest on the largest error reduction per
 * unit of budget.
 */
export function allocateByError(
  layers: readonly AllocationLayer[],
  target: AllocationTarget,
  opts: AllocationOptions = {},
): RankAllocation {
  const { spaces, budget } = prepare(layers, target, opts);
  const models = spaces.map((s) => errorModel(s));
  const costAt = (eps: number): number =>
    spaces.reduce((n, s, i) => n + s.cost(models[i]!.cheapest(eps, budget.basis))[budget.basis], 0);
  const fits = (eps: number): boolean => costAt(eps) <= budget.limit * (1 + 1e-12);
  let eps = 0;
  if (!fits(0)) {
    // fits(1): every layer at rank 1 (prepare has checked that the smallest model fits).
    let lo = 0;
    let hi = 1;
    for (let it = 0; it < 60; it++) {
      const mid = 0.5 * (lo + hi);
      if (fits(mid)) hi = mid;
      else lo = mid;
    }
    eps = hi;
  }
  const frees = models.map((m) => m.cheapest(eps, budget.basis));
  const maxErrorBeforeFill = Math.max(...frees.map((f, i) => models[i]!.error(f)));
  const steps = (i: number, free: readonly number[]): Step[] => {
    const m = models[i]!;
    const s = spaces[i]!;
    const e = m.error(free);
    const out: Step[] = [];
    free.forEach((r, k) => {
      if (r >= s.cap(free, k)) return;
      const next = free.map((v, j) => (j === k ? v + 1 : v));
      out.push({ next, gain: e - m.error(next) });
    });
    return out;
  };
  const filled = greedyFill(spaces, budget, frees, steps);
  const errors = frees.map((f, i) => models[i]!.error(f));
  return allocationResult(
    'error',
    spaces,
    budget,
    frees,
    (i) => ({ error: errors[i]!, measured: { estimate: models[i]!.estimate } }),
    {
      solver: 'bisection on the largest error, then greedy steps by error reduction per unit of budget',
      errorLevel: eps,
      maxErrorBeforeFill,
      maxError: Math.max(...errors),
      greedySteps: filled,
      estimates: Object.fromEntries(
        [...new Set(models.map((m) => m.estimate))].map((k) => [k, ERROR_ESTIMATES[k]]),
      ),
    },
  );
}

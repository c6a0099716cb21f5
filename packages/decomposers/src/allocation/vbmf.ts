/**
 * allocate by: vbmf: EVBMF's per-layer ranks (Nakajima et al. 2013, as Kim et al. 2016 choose
 * Tucker-2 ranks) multiplied by one factor c, found by bisection so that the whole model meets the
 * budget: Kim et al.'s rank profile at other compression ratios.
 */
import type { AllocationTarget } from '@flatrank/protocol';
import { freeRanks, resolveRanks } from '../plan.js';
import {
  allocationResult,
  kernelOf,
  prepare,
  type AllocationLayer,
  type AllocationOptions,
  type RankAllocation,
} from './budget.js';

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

/**
 * ranks(c) = clamp(round(c * raw), 1, full) per free rank, until the layer would cost more than
 * the dense one: from there on a layer keeps the last ranks it could afford (its own c stops).
 * The largest c whose ranks fit the budget. Rounding moves ranks in jumps (equal raw ranks move
 * together), so the ranks are then raised one at a time in the order a growing c would raise them
 * (largest remainder first), skipping what does not fit the budget or the layer's dense cost and
 * what would overtake a rank whose raw estimate is larger: the rank order of EVBMF is kept (up to
 * the clamps and caps) and the budget is met within one rank step.
 */
export function allocateByVbmf(
  layers: readonly AllocationLayer[],
  target: AllocationTarget,
  opts: AllocationOptions = {},
): RankAllocation {
  const { spaces, budget } = prepare(layers, target, opts);
  const { basis } = budget;
  const resolved = spaces.map((s) => resolveRanks(kernelOf(s, 'vbmf'), s.dims, s.shape, { kind: 'vbmf' }));
  // The free raw ranks (cp: the larger of its two unfolding estimates, as the vbmf policy uses).
  // EVBMF may find no signal at all (rank 0, e.g. in untrained kernels): scaled as rank 1, so that
  // such layers still take part in meeting the budget.
  const raw = spaces.map((s, i) => {
    const r = resolved[i]!.rawRanks!;
    return (s.shape.method === 'cp' ? [Math.max(...r)] : freeRanks(s.shape, r)).map((x) => Math.max(1, x));
  });
  const ranksAt = (i: number, c: number): number[] =>
    raw[i]!.map((x, k) => clamp(Math.round(c * x), 1, spaces[i]!.full[k]!));
  const maxScale = Math.max(...spaces.flatMap((s) => s.full)) / Math.min(...raw.flat()) + 1;
  // Each layer's ranks as c grows, up to the last it can afford: costs grow with c, so one
  // bisection per layer finds where its ranks would first cost more than the dense layer.
  const ceilings = spaces.map((s, i) => {
    if (s.affordable(ranksAt(i, maxScale))) return ranksAt(i, maxScale);
    let lo = 0; // rank 1 everywhere: always allowed
    let hi = maxScale;
    for (let it = 0; it < 80; it++) {
      const mid = 0.5 * (lo + hi);
      if (s.affordable(ranksAt(i, mid))) lo = mid;
      else hi = mid;
    }
    return ranksAt(i, lo);
  });
  const at = (c: number): number[][] =>
    spaces.map((s, i) => {
      const f = ranksAt(i, c);
      return s.affordable(f) ? f : [...ceilings[i]!];
    });
  const cost = (frees: number[][]): number => spaces.reduce((n, s, i) => n + s.cost(frees[i]!)[basis], 0);
  const limit = budget.limit * (1 + 1e-12);
  let scale: number;
  if (cost(at(maxScale)) <= limit) scale = maxScale;
  else {
    let lo = 0; // every rank at 1: fits (prepare checked the smallest model)
    let hi = maxScale;
    for (let it = 0; it < 80; it++) {
      const mid = 0.5 * (lo + hi);
      if (cost(at(mid)) <= limit) lo = mid;
      else hi = mid;
    }
    scale = lo;
  }
  const frees = at(scale);
  const raised = refine(frees);
  return allocationResult(
    'vbmf',
    spaces,
    budget,
    frees,
    (i) => ({ error: null, measured: { rawRanks: resolved[i]!.rawRanks } }),
    {
      solver: 'EVBMF ranks times one factor (bisection), then single rank steps in rounding order',
      scale,
      refinedSteps: raised,
    },
  );

  function refine(frees: number[][]): number {
    const items = raw.flatMap((v, i) => v.map((x, k) => ({ i, k, x })));
    const blocked = new Set<(typeof items)[number]>();
    let used = cost(frees);
    let steps = 0;
    // A rank is capped where raising it would pass full or the layer's dense cost.
    const capped = (it: (typeof items)[number]): boolean =>
      frees[it.i]![it.k]! >= spaces[it.i]!.cap(frees[it.i]!, it.k);
    for (;;) {
      // The next rank a growing c would raise: the smallest c at which round(c * x) steps up.
      let next: (typeof items)[number] | null = null;
      let nextAt = Infinity;
      for (const it of items) {
        if (blocked.has(it) || capped(it)) continue;
        const c = (frees[it.i]![it.k]! + 0.5) / it.x;
        if (c < nextAt) [next, nextAt] = [it, c];
      }
      if (!next) return steps;
      const value = frees[next.i]![next.k]! + 1;
      const overtakes = items.some((o) => o.x > next.x && !capped(o) && frees[o.i]![o.k]! < value);
      const s = spaces[next.i]!;
      const candidate = frees[next.i]!.map((r, k) => (k === next.k ? value : r));
      const delta = s.cost(candidate)[basis] - s.cost(frees[next.i]!)[basis];
      if (overtakes || used + delta > limit || !s.affordable(candidate)) {
        blocked.add(next);
        continue;
      }
      frees[next.i] = candidate;
      used += delta;
      steps += 1;
    }
  }
}

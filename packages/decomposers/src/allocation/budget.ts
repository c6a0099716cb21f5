/**
 * What every rank allocation shares: the target layers with their rank bounds and costs, the
 * whole-model budget, the refusal of budgets no ranks can meet, the greedy spending of what a
 * solver leaves of the budget, and the result.
 */
import {
  RankError,
  ValidationError,
  type AllocationCriterion,
  type AllocationTarget,
  type BudgetBasis,
  type RankPolicy,
} from '@flatrank/protocol';
import { kernelDims, kernelDimsFromShape, type KernelDims, type LayerKernel } from '../kernel.js';
import { fullRanks, kernelParams, planCosts, planShape, reportedRanks, type PlanShape } from '../plan.js';
import type { DecomposeOptions, LayerGeometry } from '../types.js';

/** One target layer of an allocation. */
export interface AllocationLayer {
  name: string;
  /** conv HWIO [kh, kw, S, T] or dense [in, out]. */
  kernelShape: readonly number[];
  /** How the layer is decomposed (everything but the rank policy). */
  options: Omit<DecomposeOptions, 'rank'>;
  /** Strides, padding and input size [H, W] (convs), for the multiply-add counts. */
  geometry: LayerGeometry;
  /** The kernel's values: the data-free criteria (error, vbmf) read their spectra. */
  kernel?: LayerKernel | null;
}

/** The rest of the whole model, which the allocation leaves as it is. */
export interface AllocationOptions {
  /**
   * Every other parameter counted in the model's size (trainers: all trainable weights but the
   * target kernels: untargeted kernels, biases, batch-norm scale / offset), on both sides.
   */
  untargetedParams?: number;
  /** The multiply-adds of the untargeted conv / dense layers (one example). */
  untargetedMacs?: number;
}

export interface Cost {
  params: number;
  macs: number;
}

/**
 * A target layer with its plan shape, the bounds of its free ranks, the ranks it may take (those
 * no costlier than the dense layer) and memoised costs.
 */
export class LayerSpace {
  readonly dims: KernelDims;
  readonly shape: PlanShape;
  /** The largest value of each free rank (tucker2 [R_S, R_T]; everything else [r]). */
  readonly full: number[];
  readonly before: Cost;
  /**
   * The bases in which a factored layer may not cost more than the dense one: the budget's, and
   * params always. A compression allocator must never grow a layer: full-rank Tucker-2 costs
   * S*S + S*T*kh*kw + T*T > S*T*kh*kw, and a small dense layer (84 -> 10) at full rank 10 costs
   * 94*10 > 840. Params are capped under a macs budget too because the stored model's size is the
   * reported ratio's basis and must not grow for a speed-up; macs are not capped under a params
   * budget, which promises no speed (a strided Tucker-2 / CP chain runs its first 1x1 conv at the
   * input resolution, so a macs cap would forbid ranks that do shrink the model).
   */
  readonly cappedBases: readonly BudgetBasis[];
  /** The largest value each free rank takes among the affordable ranks (rank 1 at least). */
  readonly top: number[];
  private readonly costs = new Map<string, Cost>();
  private readonly caps = new Map<string, number>();

  constructor(
    readonly layer: AllocationLayer,
    readonly index: number,
    basis: BudgetBasis = 'params',
  ) {
    this.dims = layer.kernel
      ? kernelDims(layer.kernel)
      : kernelDimsFromShape(layer.kernelShape, `layers[${index}].kernelShape`);
    this.shape = planShape(this.dims, layer.options);
    this.full = fullRanks(this.dims, this.shape);
    const c = planCosts(this.dims, { ...this.shape, ranks: this.ranks(this.ones()) }, layer.geometry);
    this.before = { params: kernelParams(this.dims), macs: c.macsBefore };
    this.cappedBases = basis === 'params' ? ['params'] : ['macs', 'params'];
    this.top = this.full.map((_, k) => this.cap(this.ones(), k));
  }

  get name(): string {
    return this.layer.name;
  }

  ones(): number[] {
    return this.full.map(() => 1);
  }

  /** The ranks as decompose reports them (Tucker-1 [S, R_T], 2-D Tucker [r, r]). */
  ranks(free: readonly number[]): number[] {
    return reportedRanks(this.dims, this.shape, free);
  }

  /** The fixed rank policy that gives exactly these ranks. */
  policy(free: readonly number[]): RankPolicy {
    return this.shape.method === 'tucker2' && this.shape.fallback === null
      ? { kind: 'ranks', ranks: [free[0]!, free[1]!] }
      : { kind: 'rank', rank: free[0]! };
  }

  /** Kernel parameters and multiply-adds of the factored layer at these free ranks. */
  cost(free: readonly number[]): Cost {
    const key = free.join(',');
    let c = this.costs.get(key);
    if (!c) {
      const p = planCosts(this.dims, { ...this.shape, ranks: this.ranks(free) }, this.layer.geometry);
      c = { params: p.paramsAfter, macs: p.macsAfter };
      this.costs.set(key, c);
    }
    return c;
  }

  /**
   * Whether the layer may take these free ranks: within full and no costlier than the dense layer
   * in the capped bases. Rank 1 everywhere is always allowed: a target layer is decomposed, and
   * where even rank 1 costs more (a dense layer with one output, a 1-wide tile) nothing cheaper exists.
   */
  affordable(free: readonly number[]): boolean {
    if (free.some((r, k) => !(r >= 1 && r <= this.full[k]!))) return false;
    if (free.every((r) => r === 1)) return true;
    const c = this.cost(free);
    return this.cappedBases.every((b) => c[b] <= this.before[b]);
  }

  /**
   * The largest value of free rank k, the other ranks as given, at which the layer is affordable;
   * 0 when none is. Costs grow with every rank, so the affordable ranks are down-closed (for
   * Tucker-2 a staircase in (R_S, R_T)) and a bisection finds the edge.
   */
  cap(free: readonly number[], k: number): number {
    const key = `${k}:${free.map((r, j) => (j === k ? '*' : r)).join(',')}`;
    let v = this.caps.get(key);
    if (v === undefined) {
      const at = (r: number): number[] => free.map((x, j) => (j === k ? r : x));
      if (!this.affordable(at(1))) v = 0;
      else {
        let lo = 1;
        let hi = this.full[k]!;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (this.affordable(at(mid))) lo = mid;
          else hi = mid - 1;
        }
        v = lo;
      }
      this.caps.set(key, v);
    }
    return v;
  }

  /** Where a free rank stands between 1 and full (0..1): spreads ties in the greedy steps. */
  position(free: readonly number[]): number {
    return free.reduce((s, r, k) => s + r / this.full[k]!, 0) / free.length;
  }
}

/** The whole-model budget in the target's basis. */
export interface Budget {
  basis: BudgetBasis;
  ratio: number;
  /** The whole model before any decomposition. */
  before: Cost;
  untargeted: Cost;
  /** The most the target layers may cost after decomposition (in the basis). */
  limit: number;
}

/** The basis and ratio of a target, checked (exactly one of params / macs, a finite ratio > 1). */
export function budgetOf(
  target: AllocationTarget,
  field = 'rank.target',
): { basis: BudgetBasis; ratio: number } {
  const t = target as Record<string, unknown> | null;
  if (t === null || typeof t !== 'object')
    throw new ValidationError(
      field,
      `${field}: must be {params: X} or {macs: X} (X > 1), got ${JSON.stringify(target)}`,
    );
  const given = (['params', 'macs'] as const).filter((k) => t[k] !== undefined);
  const extra = Object.keys(t).filter((k) => k !== 'params' && k !== 'macs');
  if (given.length !== 1 || extra.length > 0)
    throw new ValidationError(
      field,
      `${field}: give exactly one of params: X or macs: X (the whole-model compression ratio, X > 1), got ${JSON.stringify(target)}`,
    );
  const basis = given[0]!;
  const ratio = t[basis];
  if (!(typeof ratio === 'number' && Number.isFinite(ratio) && ratio > 1))
    throw new ValidationError(
      `${field}.${basis}`,
      `${field}.${basis}: must be a whole-model compression ratio > 1 (size before / size after), got ${JSON.stringify(ratio)}`,
    );
  return { basis, ratio };
}

function untargetedOf(opts: AllocationOptions): Cost {
  const params = opts.untargetedParams ?? 0;
  const macs = opts.untargetedMacs ?? 0;
  if (!(typeof params === 'number' && params >= 0 && Number.isFinite(params)))
    throw new ValidationError(
      'untargetedParams',
      `untargetedParams must be a number >= 0, got ${String(params)}`,
    );
  if (!(typeof macs === 'number' && macs >= 0 && Number.isFinite(macs)))
    throw new ValidationError('untargetedMacs', `untargetedMacs must be a number >= 0, got ${String(macs)}`);
  return { params, macs };
}

const sum = (xs: readonly Cost[], basis: BudgetBasis): number => xs.reduce((s, c) => s + c[basis], 0);

/**
 * The target layers and the budget; refuses what no ranks can meet: no target layer, a target that
 * is not a ratio > 1, a budget below the smallest model (rank 1 in every target layer).
 */
export function prepare(
  layers: readonly AllocationLayer[],
  target: AllocationTarget,
  opts: AllocationOptions = {},
  field = 'rank.target',
): { spaces: LayerSpace[]; budget: Budget } {
  if (!Array.isArray(layers) || layers.length === 0)
    throw new ValidationError('layers', 'layers: a rank allocation needs at least one target layer');
  const { basis, ratio } = budgetOf(target, field);
  const untargeted = untargetedOf(opts);
  const spaces = layers.map((l, i) => new LayerSpace(l, i, basis));
  const before: Cost = {
    params:
      sum(
        spaces.map((s) => s.before),
        'params',
      ) + untargeted.params,
    macs:
      sum(
        spaces.map((s) => s.before),
        'macs',
      ) + untargeted.macs,
  };
  const budget: Budget = {
    basis,
    ratio,
    before,
    untargeted,
    limit: before[basis] / ratio - untargeted[basis],
  };
  const smallest = sum(
    spaces.map((s) => s.cost(s.ones())),
    basis,
  );
  if (smallest > budget.limit * (1 + 1e-12)) {
    const best = before[basis] / (smallest + untargeted[basis]);
    throw new RankError(
      `${field}.${basis}`,
      `${field}.${basis}: a whole-model ${basis} ratio of ${ratio} is out of reach: the smallest model (rank 1 in every one of the ${spaces.length} target layers) reaches ${best.toFixed(3)}x`,
      { context: { ratio, best, basis } },
    );
  }
  return { spaces, budget };
}

/** The whole-model cost of a choice of free ranks. */
export function modelCost(spaces: readonly LayerSpace[], budget: Budget, frees: readonly number[][]): Cost {
  const c = spaces.map((s, i) => s.cost(frees[i]!));
  return {
    params: sum(c, 'params') + budget.untargeted.params,
    macs: sum(c, 'macs') + budget.untargeted.macs,
  };
}

/** A candidate greedy step of one layer: the free ranks it moves to and what that gains. */
export interface Step {
  next: number[];
  /** The predicted improvement (error or accuracy loss removed); >= 0. */
  gain: number;
}

/**
 * Spends what is left of the budget one step at a time, each time on the step with the largest
 * gain per unit of the budget among those that still fit (ties, zero gains included, go to the
 * layer whose ranks are lowest relative to full, so an unused budget is spread, not piled up).
 * A step to ranks the layer cannot afford (costlier than dense) is never taken. Stops when no
 * step fits: the result is within one rank step below the budget, or every layer is at the edge
 * of what it can afford (a budget looser than that is not spent). Returns the number of steps
 * taken; `frees` is updated in place.
 */
export function greedyFill(
  spaces: readonly LayerSpace[],
  budget: Budget,
  frees: number[][],
  steps: (layer: number, free: readonly number[]) => Step[],
): number {
  const { basis } = budget;
  let used = sum(
    spaces.map((s, i) => s.cost(frees[i]!)),
    basis,
  );
  const limit = budget.limit * (1 + 1e-12);
  let taken = 0;
  for (;;) {
    let best: { layer: number; next: number[]; score: number; position: number; delta: number } | null = null;
    for (let i = 0; i < spaces.length; i++) {
      const s = spaces[i]!;
      const cur = s.cost(frees[i]!)[basis];
      for (const step of steps(i, frees[i]!)) {
        if (!s.affordable(step.next)) continue;
        const delta = s.cost(step.next)[basis] - cur;
        if (used + delta > limit) continue;
        const score = delta > 0 ? Math.max(0, step.gain) / delta : Infinity;
        const position = s.position(frees[i]!);
        if (!best || score > best.score || (score === best.score && position < best.position))
          best = { layer: i, next: step.next, score, position, delta };
      }
    }
    if (!best) return taken;
    frees[best.layer] = best.next;
    used += best.delta;
    taken += 1;
  }
}

/** One target layer of an allocation result. */
export interface AllocatedLayer {
  name: string;
  /** The chosen ranks, as decompose (and LayerRecord.ranks) report them. */
  ranks: number[];
  /** The rank policy that gives exactly these ranks ({kind: 'rank'} or Tucker-2 {kind: 'ranks'}). */
  policy: RankPolicy;
  /** by: error, the predicted relative reconstruction error at these ranks; else null. */
  error: number | null;
  /** What the allocation measured for this layer (plain JSON, per criterion). */
  measured: Record<string, unknown>;
}

/** The result of a rank allocation: the chosen ranks, the budget and what was measured. */
export interface RankAllocation {
  by: AllocationCriterion;
  budget: { kind: BudgetBasis; ratio: number };
  /** Whole-model ratios (before / after) the chosen ranks reach. */
  achieved: { params: number; macs: number };
  paramsBefore: number;
  paramsAfter: number;
  macsBefore: number;
  macsAfter: number;
  /** Every target layer, in the order given. */
  layers: AllocatedLayer[];
  /** What the allocation measured as a whole (plain JSON, per criterion). */
  measured: Record<string, unknown>;
}

export function allocationResult(
  by: AllocationCriterion,
  spaces: readonly LayerSpace[],
  budget: Budget,
  frees: readonly number[][],
  perLayer: (i: number) => { error: number | null; measured: Record<string, unknown> },
  measured: Record<string, unknown>,
): RankAllocation {
  const after = modelCost(spaces, budget, frees as number[][]);
  return {
    by,
    budget: { kind: budget.basis, ratio: budget.ratio },
    achieved: { params: budget.before.params / after.params, macs: budget.before.macs / after.macs },
    paramsBefore: budget.before.params,
    paramsAfter: after.params,
    macsBefore: budget.before.macs,
    macsAfter: after.macs,
    layers: spaces.map((s, i) => ({
      name: s.name,
      ranks: s.ranks(frees[i]!),
      policy: s.policy(frees[i]!),
      ...perLayer(i),
    })),
    measured,
  };
}

/** The kernel of a layer, or a ValidationError saying the criterion needs it. */
export function kernelOf(space: LayerSpace, by: AllocationCriterion): LayerKernel {
  const k = space.layer.kernel;
  if (!k)
    throw new ValidationError(
      `layers[${space.index}].kernel`,
      `allocate by ${by} reads the kernel's singular values: layer ${space.name} was given without its kernel values`,
    );
  return k;
}

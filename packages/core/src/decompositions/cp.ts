import { RankError, ShapeError, UnknownNameError, ValidationError } from '@flatrank/protocol';
import { Tensor } from '../tensor.js';
import { eigSym } from '../linalg/index.js';
import { createRng } from '../random.js';
import {
  contractMode,
  fitSettled,
  khatriRaoRowMajor,
  leadingEigenvectors,
  modeGram,
  mttkrpFrom,
  solveSpdRight,
  sumSquares,
  sweepCallback,
  toFloat64,
  toleranceOption,
  warmFactor,
} from './internal.js';

/** How a fit started: a named initialisation, or 'warm' (from given factors, CpWarmStart). */
export type CpInit = 'svd' | 'random' | 'warm';

export interface CpResult {
  /** lambda: the component weights (length R), sorted descending. */
  weights: Float64Array;
  /** Per mode: I_n x R with unit-norm columns. */
  factors: Tensor[];
  /** ALS sweeps run. */
  iterations: number;
  /** ||t - reconstruction||_F / ||t||_F (computed exactly at the end). */
  relativeError: number;
  /** The change of relative error fell below the tolerance before maxIterations. */
  converged: boolean;
  seed: number;
  init: CpInit;
}

/**
 * Start ALS from these factors instead of an initialisation: a previous fit of a nearby tensor
 * (distortion training refits a kernel that moved a few hundred SGD steps since its last fit), so
 * that a few sweeps reach the tolerance instead of a whole cold fit.
 */
export interface CpWarmStart {
  /** Per mode an I_n x R factor (finite), e.g. a previous CpResult's factors; copied, not modified. */
  factors: readonly Tensor[];
}

export interface CpAlsOptions {
  /** Number of rank-one components R >= 1 (at most prod(dims) / max(dims), the generic rank bound). */
  rank: number;
  /**
   * 'svd' (default): leading left singular vectors of each unfolding; 'random': uniform [0, 1);
   * { factors }: a warm start (the result records init 'warm').
   */
  init?: 'svd' | 'random' | CpWarmStart;
  /** Seed of the random init (and of the random columns padding an svd init when R > I_n). Default 0. */
  seed?: number;
  /** ALS sweeps at most (default 200). */
  maxIterations?: number;
  /** Stop when the relative error changes by less than this between sweeps (default 1e-7). */
  tolerance?: number;
  /**
   * Also stop when the relative error changes by less than this fraction of itself between sweeps
   * (default 0: off). For warm starts, whose small errors creep down by far less than themselves
   * per sweep for hundreds of sweeps: e.g. 1e-3 stops once a sweep improves the fit by < 0.1 %
   * of what is left to fit.
   */
  relativeTolerance?: number;
  /**
   * Called after every sweep with its 1-based number and the relative error tracked by the norm
   * identity (a long fit is one synchronous call: this is where its caller can report progress).
   * An exception thrown here ends the fit and propagates.
   */
  onSweep?: (sweep: number, relativeError: number) => void;
}

export const CP_INITS = ['svd', 'random'] as const;

/** The largest CP rank accepted: prod(dims) / max(dims) bounds the rank of every tensor of that shape. */
export function maxCpRank(shape: readonly number[]): number {
  let prod = 1;
  let max = 0;
  for (const d of shape) {
    prod *= d;
    max = Math.max(max, d);
  }
  return max === 0 ? 0 : prod / max;
}

interface CpSettings {
  rank: number;
  init: CpInit;
  /** The warm start's factors (validated float64 copies), when init is 'warm'. */
  warm: Float64Array[] | null;
  seed: number;
  maxIterations: number;
  tolerance: number;
  relativeTolerance: number;
  onSweep: ((sweep: number, relativeError: number) => void) | null;
}

function validateCp(t: Tensor, opts: CpAlsOptions): CpSettings {
  if (!(t instanceof Tensor)) throw new ValidationError('tensor', 'cpAls: tensor must be a Tensor');
  if (t.rank < 2)
    throw new ShapeError(
      'tensor',
      `cpAls needs a tensor of at least 2 modes, got shape [${t.shape.join(', ')}]`,
    );
  const shape = t.shape;
  const r = opts.rank;
  const maxRank = maxCpRank(shape);
  if (!Number.isInteger(r) || r < 1 || r > maxRank)
    throw new RankError(
      'rank',
      `CP rank must be an integer in [1, ${maxRank}] for shape [${shape.join(', ')}], got ${String(r)}`,
      {
        context: { max: maxRank },
      },
    );
  const given = opts.init ?? 'svd';
  let init: CpInit;
  let warm: Float64Array[] | null = null;
  if (typeof given === 'object' && given !== null) {
    const factors: unknown = given.factors;
    if (!Array.isArray(factors) || factors.length !== shape.length)
      throw new ValidationError(
        'init.factors',
        `init.factors must be an array of ${shape.length} factors (one per mode), got ${Array.isArray(factors) ? factors.length : typeof factors}`,
      );
    warm = factors.map((f: unknown, m) => warmFactor(f, `init.factors[${m}]`, shape[m]!, r));
    init = 'warm';
  } else if (CP_INITS.includes(given)) init = given;
  else throw new UnknownNameError('init', String(given), CP_INITS);
  const maxIterations = opts.maxIterations ?? 200;
  if (!Number.isInteger(maxIterations) || maxIterations < 1)
    throw new ValidationError(
      'maxIterations',
      `maxIterations must be a positive integer, got ${String(maxIterations)}`,
    );
  const tolerance = toleranceOption(opts.tolerance, 'tolerance', 1e-7);
  const relativeTolerance = toleranceOption(opts.relativeTolerance, 'relativeTolerance', 0);
  const seed = opts.seed ?? 0;
  createRng(seed); // validates the seed (recorded even when a warm start leaves it unused)
  const onSweep = sweepCallback<(sweep: number, relativeError: number) => void>(opts.onSweep);
  return { rank: r, init, warm, seed, maxIterations, tolerance, relativeTolerance, onSweep };
}

/** The factors ALS starts from: the warm start's, or the svd / random initialisation's. */
function initialFactors(x: Float64Array, shape: readonly number[], s: CpSettings): Float64Array[] {
  if (s.warm) return s.warm;
  const r = s.rank;
  const rng = createRng(s.seed);
  return shape.map((dim, m) => {
    const f = new Float64Array(dim * r);
    if (s.init === 'random') {
      for (let i = 0; i < f.length; i++) f[i] = rng.next();
      return f;
    }
    const k = Math.min(dim, r);
    const lead = leadingEigenvectors(modeGram(x, shape, m), dim, k, eigSym);
    for (let i = 0; i < dim; i++)
      for (let c = 0; c < r; c++) f[i * r + c] = c < k ? lead[i * k + c]! : rng.next();
    return f;
  });
}

/**
 * CP decomposition by alternating least squares (Kolda & Bader 2009, fig. 3.3): each sweep solves
 * A_n = X_(n) (Khatri-Rao of the others) (Hadamard of their Gram matrices)^-1 for every mode, then
 * normalises A_n's columns into the weights lambda. The fit is tracked through the norm identity
 * ||X - Xh||^2 = ||X||^2 - 2 <X, Xh> + ||Xh||^2, which costs no reconstruction per sweep.
 */
export function cpAls(t: Tensor, opts: CpAlsOptions): CpResult {
  const settings = validateCp(t, opts);
  const shape = t.shape;
  const x = toFloat64(t.data);
  const normX2 = sumSquares(x);
  const factors = initialFactors(x, shape, settings);
  const { weights, iterations, converged } = alsSweeps(x, shape, normX2, factors, settings);

  // Sort the components by weight (deterministic order for export and comparison).
  const r = settings.rank;
  const order = Array.from({ length: r }, (_, c) => c).sort((p, q) => weights[q]! - weights[p]!);
  const sortedWeights = Float64Array.from(order, (c) => weights[c]!);
  const outFactors = factors.map((f, m) => {
    const dim = shape[m]!;
    const out = new Float64Array(dim * r);
    for (let i = 0; i < dim; i++) order.forEach((c, j) => (out[i * r + j] = f[i * r + c]!));
    return new Tensor(out, [dim, r]);
  });
  const rec = cpReconstruct(sortedWeights, outFactors);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff += (x[i]! - rec.data[i]!) ** 2;
  const relativeError = normX2 === 0 ? 0 : Math.sqrt(diff / normX2);
  return {
    weights: sortedWeights,
    factors: outFactors,
    iterations,
    relativeError,
    converged,
    seed: settings.seed,
    init: settings.init,
  };
}

/** The ALS sweeps, updating `factors` in place; returns the weights and how the loop ended. */
function alsSweeps(
  x: Float64Array,
  shape: readonly number[],
  normX2: number,
  factors: Float64Array[],
  s: CpSettings,
): { weights: Float64Array; iterations: number; converged: boolean } {
  const n = shape.length;
  const r = s.rank;
  const versions = shape.map(() => 0);
  let cache: { mode: number; version: number; y: Float64Array } | null = null;
  const grams = factors.map((f, m) => gramOf(f, shape[m]!, r));
  const weights = new Float64Array(r).fill(1);
  let err = Infinity;
  let iterations = 0;
  let converged = false;
  for (let it = 0; it < s.maxIterations; it++) {
    let inner = 0;
    for (let m = 0; m < n; m++) {
      const others = shape.map((_, k) => k).filter((k) => k !== m);
      const dim = shape[m]!;
      // Contract the largest other mode first (one GEMM-sized pass, size * R), ties towards the
      // last mode: that partial result stays valid, and is reused, until that factor changes.
      let c = others[0]!;
      for (const k of others) if (shape[k]! >= shape[c]!) c = k;
      if (cache === null || cache.mode !== c || cache.version !== versions[c]) {
        cache = { mode: c, version: versions[c]!, y: contractMode(x, shape, factors[c]!, c, r) };
      }
      const keep = shape.map((_, k) => k).filter((k) => k !== c);
      const mttkrp = mttkrpFrom(
        cache.y,
        keep,
        keep.map((k) => shape[k]!),
        factors,
        m,
        r,
      );
      const v = new Float64Array(r * r).fill(1);
      for (const k of others) {
        const g = grams[k]!;
        for (let q = 0; q < r * r; q++) v[q] *= g[q]!;
      }
      const a = mttkrp.slice();
      solveSpdRight(a, dim, v, r, eigSym);
      // Normalise columns into lambda.
      for (let c = 0; c < r; c++) {
        let sq = 0;
        for (let i = 0; i < dim; i++) sq += a[i * r + c]! ** 2;
        const nrm = Math.sqrt(sq);
        weights[c] = nrm;
        if (nrm > 0) for (let i = 0; i < dim; i++) a[i * r + c] /= nrm;
      }
      factors[m] = a;
      versions[m]!++;
      grams[m] = gramOf(a, dim, r);
      if (m === n - 1) {
        // <X, Xh> = sum_c lambda_c <mttkrp[:, c], a[:, c]>
        for (let c = 0; c < r; c++) {
          let sq = 0;
          for (let i = 0; i < dim; i++) sq += mttkrp[i * r + c]! * a[i * r + c]!;
          inner += weights[c]! * sq;
        }
      }
    }
    iterations = it + 1;
    const normXh2 = hatNorm2(weights, grams, r);
    const next = normX2 === 0 ? 0 : Math.sqrt(Math.max(0, normX2 - 2 * inner + normXh2) / normX2);
    const settled = fitSettled(err, next, s.tolerance, s.relativeTolerance);
    err = next;
    s.onSweep?.(iterations, err);
    if (settled) {
      converged = true;
      break;
    }
  }
  return { weights, iterations, converged };
}

function gramOf(f: Float64Array, dim: number, r: number): Float64Array {
  const g = new Float64Array(r * r);
  for (let i = 0; i < dim; i++) {
    const o = i * r;
    for (let p = 0; p < r; p++) {
      const fp = f[o + p]!;
      for (let q = p; q < r; q++) g[p * r + q] += fp * f[o + q]!;
    }
  }
  for (let p = 0; p < r; p++) for (let q = 0; q < p; q++) g[p * r + q] = g[q * r + p]!;
  return g;
}

/** ||sum_c lambda_c a_c (x) b_c (x) ...||^2 = lambda^T (Hadamard of the Grams) lambda. */
function hatNorm2(weights: Float64Array, grams: readonly Float64Array[], r: number): number {
  let s = 0;
  for (let p = 0; p < r; p++)
    for (let q = 0; q < r; q++) {
      let h = weights[p]! * weights[q]!;
      for (const g of grams) h *= g[p * r + q]!;
      s += h;
    }
  return s;
}

/** sum_r lambda_r a^(0)_r (x) a^(1)_r (x) ... : the full tensor of a CP form (factors I_n x R). */
export function cpReconstruct(weights: Float64Array, factors: readonly Tensor[]): Tensor {
  if (factors.length < 1) throw new ShapeError('factors', 'cpReconstruct needs at least one factor');
  const r = weights.length;
  factors.forEach((f, m) => {
    if (f.rank !== 2 || f.shape[1] !== r)
      throw new ShapeError(
        `factors[${m}]`,
        `factor ${m} must be [I_${m}, ${r}], got [${f.shape.join(', ')}]`,
      );
  });
  const dims = factors.map((f) => f.shape[0]!);
  // Khatri-Rao of all factors but the first (row-major rest order), times weights, then A_0 * KR^T.
  const rest = factors.slice(1);
  const kr = khatriRaoRowMajor(
    rest.map((f) => toFloat64(f.data)),
    rest.map((f) => f.shape[0]!),
    r,
  );
  const restSize = kr.length / r;
  const a0 = toFloat64(factors[0]!.data);
  const out = new Float64Array(dims[0]! * restSize);
  const row = new Float64Array(r);
  for (let i = 0; i < dims[0]!; i++) {
    for (let c = 0; c < r; c++) row[c] = a0[i * r + c]! * weights[c]!;
    const o = i * restSize;
    for (let j = 0; j < restSize; j++) {
      let s = 0;
      const ko = j * r;
      for (let c = 0; c < r; c++) s += row[c]! * kr[ko + c]!;
      out[o + j] = s;
    }
  }
  return new Tensor(out, dims);
}

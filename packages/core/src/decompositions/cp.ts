import { RankError, ShapeError, UnknownNameError, ValidationError } from '@flatrank/protocol';
import { Tensor } from '../tensor.js';
import { eigSym } from '../linalg/index.js';
import { createRng } from '../random.js';
import {
  contractMode,
  khatriRaoRowMajor,
  leadingEigenvectors,
  modeGram,
  mttkrpFrom,
  solveSpdRight,
  sumSquares,
  toFloat64,
} from './internal.js';

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
  init: 'svd' | 'random';
}

export interface CpAlsOptions {
  /** Number of rank-one components R >= 1 (at most prod(dims) / max(dims), the generic rank bound). */
  rank: number;
  /** 'svd' (default): leading left singular vectors of each unfolding; 'random': uniform [0, 1). */
  init?: 'svd' | 'random';
  /** Seed of the random init (and of the random columns padding an svd init when R > I_n). Default 0. */
  seed?: number;
  /** ALS sweeps at most (default 200). */
  maxIterations?: number;
  /** Stop when the relative error changes by less than this between sweeps (default 1e-7). */
  tolerance?: number;
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

/**
 * CP decomposition by alternating least squares (Kolda & Bader 2009, fig. 3.3): each sweep solves
 * A_n = X_(n) (Khatri-Rao of the others) (Hadamard of their Gram matrices)^-1 for every mode, then
 * normalises A_n's columns into the weights lambda. The fit is tracked through the norm identity
 * ||X - Xh||^2 = ||X||^2 - 2 <X, Xh> + ||Xh||^2, which costs no reconstruction per sweep.
 */
export function cpAls(t: Tensor, opts: CpAlsOptions): CpResult {
  if (!(t instanceof Tensor)) throw new ValidationError('tensor', 'cpAls: tensor must be a Tensor');
  if (t.rank < 2)
    throw new ShapeError(
      'tensor',
      `cpAls needs a tensor of at least 2 modes, got shape [${t.shape.join(', ')}]`,
    );
  const shape = t.shape;
  const n = shape.length;
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
  const init = opts.init ?? 'svd';
  if (!CP_INITS.includes(init)) throw new UnknownNameError('init', String(init), CP_INITS);
  const seed = opts.seed ?? 0;
  const maxIterations = opts.maxIterations ?? 200;
  const tolerance = opts.tolerance ?? 1e-7;
  if (!Number.isInteger(maxIterations) || maxIterations < 1)
    throw new ValidationError(
      'maxIterations',
      `maxIterations must be a positive integer, got ${String(maxIterations)}`,
    );
  if (!(tolerance >= 0))
    throw new ValidationError(
      'tolerance',
      `tolerance must be a non-negative number, got ${String(tolerance)}`,
    );
  const rng = createRng(seed); // validates the seed

  const x = toFloat64(t.data);
  const normX2 = sumSquares(x);
  const versions = shape.map(() => 0);
  let cache: { mode: number; version: number; y: Float64Array } | null = null;

  // Initial factors.
  const factors: Float64Array[] = shape.map((dim, m) => {
    const f = new Float64Array(dim * r);
    if (init === 'random') {
      for (let i = 0; i < f.length; i++) f[i] = rng.next();
      return f;
    }
    const k = Math.min(dim, r);
    const lead = leadingEigenvectors(modeGram(x, shape, m), dim, k, eigSym);
    for (let i = 0; i < dim; i++)
      for (let c = 0; c < r; c++) f[i * r + c] = c < k ? lead[i * k + c]! : rng.next();
    return f;
  });
  const grams = factors.map((f, m) => gramOf(f, shape[m]!, r));
  const weights = new Float64Array(r).fill(1);

  let err = Infinity;
  let iterations = 0;
  let converged = false;
  for (let it = 0; it < maxIterations; it++) {
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
        let s = 0;
        for (let i = 0; i < dim; i++) s += a[i * r + c]! ** 2;
        const nrm = Math.sqrt(s);
        weights[c] = nrm;
        if (nrm > 0) for (let i = 0; i < dim; i++) a[i * r + c] /= nrm;
      }
      factors[m] = a;
      versions[m]!++;
      grams[m] = gramOf(a, dim, r);
      if (m === n - 1) {
        // <X, Xh> = sum_c lambda_c <mttkrp[:, c], a[:, c]>
        for (let c = 0; c < r; c++) {
          let s = 0;
          for (let i = 0; i < dim; i++) s += mttkrp[i * r + c]! * a[i * r + c]!;
          inner += weights[c]! * s;
        }
      }
    }
    iterations = it + 1;
    const normXh2 = hatNorm2(weights, grams, r);
    const next = normX2 === 0 ? 0 : Math.sqrt(Math.max(0, normX2 - 2 * inner + normXh2) / normX2);
    const change = Math.abs(err - next);
    err = next;
    if (change < tolerance) {
      converged = true;
      break;
    }
  }

  // Sort the components by weight (deterministic order for export and comparison).
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
  return { weights: sortedWeights, factors: outFactors, iterations, relativeError, converged, seed, init };
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

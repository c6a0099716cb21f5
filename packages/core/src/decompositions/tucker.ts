import { RankError, ShapeError, UnknownNameError, ValidationError } from '@flatrank/protocol';
import { Tensor } from '../tensor.js';
import { eigSym } from '../linalg/index.js';
import {
  leadingEigenvectors,
  modeGram,
  modeMul,
  sumSquares,
  sweepCallback,
  toFloat64,
  toleranceOption,
} from './internal.js';

export interface TuckerResult {
  /** The core: the input's shape with each decomposed mode n replaced by its rank. */
  core: Tensor;
  /** Per mode: an orthonormal I_n x R_n factor, or null when the mode is not decomposed. */
  factors: (Tensor | null)[];
  /** HOOI sweeps run (0 for HOSVD). */
  iterations: number;
  /** ||t - reconstruction||_F / ||t||_F */
  relativeError: number;
  /** HOOI: the change of relative error fell below the tolerance (HOSVD: always true). */
  converged: boolean;
}

export interface PartialTuckerOptions {
  /** The modes to decompose (distinct, in [0, rank)). */
  modes: readonly number[];
  /** One rank per entry of modes, each in [1, min(I_n, prod(other dims))]. */
  ranks: readonly number[];
  /** 'hooi' (default): HOSVD then alternating refinement; 'hosvd': truncated HOSVD only. */
  algorithm?: 'hooi' | 'hosvd';
  /** HOOI sweeps at most (default 50). */
  maxIterations?: number;
  /** Stop when the relative error changes by less than this between sweeps (default 1e-6). */
  tolerance?: number;
  /**
   * Called after every HOOI sweep with its 1-based number and the relative error (a long fit is one
   * synchronous call: this is where its caller can report progress). An exception thrown here ends
   * the fit and propagates.
   */
  onSweep?: (sweep: number, relativeError: number) => void;
}

export const TUCKER_ALGORITHMS = ['hooi', 'hosvd'] as const;

interface TuckerSettings {
  modes: number[];
  ranks: number[];
  tolerance: number;
  onSweep: ((sweep: number, relativeError: number) => void) | null;
}

function validate(t: Tensor, opts: PartialTuckerOptions): TuckerSettings {
  if (!(t instanceof Tensor)) throw new ValidationError('tensor', 'partialTucker: tensor must be a Tensor');
  const { modes, ranks } = opts;
  if (!Array.isArray(modes) || modes.length === 0)
    throw new ValidationError(
      'modes',
      `modes must be a non-empty array of distinct modes in [0, ${t.rank - 1}]`,
    );
  if (!Array.isArray(ranks) || ranks.length !== modes.length)
    throw new RankError(
      'ranks',
      `ranks must have one entry per mode (${modes.length}), got ${JSON.stringify(ranks)}`,
    );
  const seen = new Set<number>();
  modes.forEach((m) => {
    if (!Number.isInteger(m) || m < 0 || m >= t.rank || seen.has(m))
      throw new ShapeError(
        'modes',
        `modes must be distinct integers in [0, ${t.rank - 1}], got ${JSON.stringify(modes)}`,
      );
    seen.add(m);
  });
  modes.forEach((m, k) => {
    const r = ranks[k]!;
    const other = t.size / t.shape[m]!;
    const full = Math.min(t.shape[m]!, other);
    if (!Number.isInteger(r) || r < 1 || r > full)
      throw new RankError(
        `ranks[${k}]`,
        `rank for mode ${m} must be an integer in [1, ${full}], got ${String(r)}`,
        {
          context: { mode: m, full },
        },
      );
  });
  if (opts.algorithm !== undefined && !TUCKER_ALGORITHMS.includes(opts.algorithm))
    throw new UnknownNameError('algorithm', String(opts.algorithm), TUCKER_ALGORITHMS);
  if (opts.maxIterations !== undefined && (!Number.isInteger(opts.maxIterations) || opts.maxIterations < 1))
    throw new ValidationError(
      'maxIterations',
      `maxIterations must be a positive integer, got ${String(opts.maxIterations)}`,
    );
  const tolerance = toleranceOption(opts.tolerance, 'tolerance', 1e-6);
  const onSweep = sweepCallback<(sweep: number, relativeError: number) => void>(opts.onSweep);
  return { modes: [...modes], ranks: [...ranks], tolerance, onSweep };
}

/** Projects x onto the factor subspaces of the given modes: x x_m P_m^T for each (m, P_m). */
function project(
  x: Float64Array,
  shape: readonly number[],
  modes: readonly number[],
  factors: readonly (Float64Array | null)[],
  ranks: readonly number[],
  skip: number,
): { data: Float64Array; shape: number[] } {
  let cur = { data: x, shape: [...shape] };
  modes.forEach((m, k) => {
    if (m === skip) return;
    cur = modeMul(cur.data, cur.shape, factors[m]!, m, ranks[k]!, true);
  });
  return cur;
}

/**
 * Tucker decomposition of the chosen modes only (Kolda & Bader 2009, sec. 4.2): truncated HOSVD
 * (leading left singular vectors of each mode-n unfolding), optionally refined by HOOI sweeps.
 * Each HOOI mode update maximises ||core|| given the other factors, so HOOI never ends worse than
 * the HOSVD it starts from.
 */
export function partialTucker(t: Tensor, opts: PartialTuckerOptions): TuckerResult {
  const settings = validate(t, opts);
  const { modes, ranks } = settings;
  const algorithm = opts.algorithm ?? 'hooi';
  const maxIterations = opts.maxIterations ?? 50;
  const x = toFloat64(t.data);
  const shape = t.shape;
  const normX2 = sumSquares(x);
  const factors: (Float64Array | null)[] = shape.map(() => null);

  // HOSVD: the leading eigenvectors of X_(n) X_(n)^T are the leading left singular vectors of X_(n).
  modes.forEach((m, k) => {
    factors[m] = leadingEigenvectors(modeGram(x, shape, m), shape[m]!, ranks[k]!, eigSym);
  });
  const errorOf = (coreData: Float64Array): number =>
    normX2 === 0 ? 0 : Math.sqrt(Math.max(0, normX2 - sumSquares(coreData)) / normX2);

  let core = project(x, shape, modes, factors, ranks, -1);
  let err = errorOf(core.data);
  let iterations = 0;
  let converged = true;
  if (algorithm === 'hooi' && normX2 > 0) {
    converged = false;
    for (let it = 0; it < maxIterations; it++) {
      core = hooiSweep(x, shape, modes, factors, ranks);
      iterations = it + 1;
      const next = errorOf(core.data);
      const change = Math.abs(err - next);
      err = next;
      settings.onSweep?.(iterations, err);
      if (change < settings.tolerance) {
        converged = true;
        break;
      }
    }
  }
  const outFactors = factors.map((f, m) => {
    if (f === null) return null;
    const k = modes.indexOf(m);
    return new Tensor(f, [shape[m]!, ranks[k]!]);
  });
  const coreTensor = new Tensor(core.data, core.shape);
  // The exact error (the norm identity above loses digits when the fit is nearly exact).
  const rec = tuckerReconstruct(coreTensor, outFactors);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff += (x[i]! - rec.data[i]!) ** 2;
  const relativeError = normX2 === 0 ? 0 : Math.sqrt(diff / normX2);
  return { core: coreTensor, factors: outFactors, iterations, relativeError, converged };
}

/** One HOOI sweep, updating `factors` in place; returns the core of the updated factors. */
function hooiSweep(
  x: Float64Array,
  shape: readonly number[],
  modes: readonly number[],
  factors: (Float64Array | null)[],
  ranks: readonly number[],
): { data: Float64Array; shape: number[] } {
  let y = { data: x, shape: [...shape] };
  for (let k = 0; k < modes.length; k++) {
    const m = modes[k]!;
    y = project(x, shape, modes, factors, ranks, m);
    factors[m] = leadingEigenvectors(modeGram(y.data, y.shape, m), shape[m]!, ranks[k]!, eigSym);
  }
  // The last update's projection lacks only its own mode: finish the core from it.
  const last = modes.length - 1;
  return modeMul(y.data, y.shape, factors[modes[last]!]!, modes[last]!, ranks[last]!, true);
}

/** core x_n P_n for every non-null factor P_n (I_n x R_n): the tensor the Tucker form represents. */
export function tuckerReconstruct(core: Tensor, factors: readonly (Tensor | null)[]): Tensor {
  if (factors.length !== core.rank)
    throw new ShapeError(
      'factors',
      `need one factor (or null) per core mode (${core.rank}), got ${factors.length}`,
    );
  let cur = { data: toFloat64(core.data), shape: [...core.shape] };
  factors.forEach((f, m) => {
    if (f === null) return;
    if (f.rank !== 2 || f.shape[1] !== cur.shape[m])
      throw new ShapeError(
        `factors[${m}]`,
        `factor ${m} must be [I_${m}, ${cur.shape[m]}], got [${f.shape.join(', ')}]`,
      );
    cur = modeMul(cur.data, cur.shape, toFloat64(f.data), m, f.shape[0]!, false);
  });
  return new Tensor(cur.data, cur.shape);
}

import { ValidationError } from '@flatrank/protocol';
import { assertMatrix, type Tensor } from '../tensor.js';
import { singularValues } from '../linalg/index.js';
import { minimizeBounded } from './minimize.js';

export interface EvbmfResult {
  /** Number of singular values above the EVB threshold: the raw rank estimate (may be 0 or full). */
  rank: number;
  /** The noise variance sigma^2 used (estimated unless given). */
  noiseVariance: number;
  /** All min(L, M) singular values of the input, descending. */
  singularValues: Float64Array;
  /** The EVB posterior mean singular values (zero beyond rank), length min(L, M). */
  posteriorValues: Float64Array;
  /** The EVB truncation threshold on singular values. */
  threshold: number;
  /** The interval of sigma^2 searched (null when sigma2 was given or the matrix is zero). */
  searchInterval: [number, number] | null;
}

/** Lower bound of tau-bar (Nakajima et al. 2013, eq. 31 and Theorem 9): 2.5129 * sqrt(alpha). */
const TAU_BAR_COEF = 2.5129;

/**
 * Empirical variational Bayesian matrix factorisation, analytic global solution (S. Nakajima,
 * M. Sugiyama, S. D. Babacan, R. Tomioka, "Global analytic solution of fully-observed variational
 * Bayesian matrix factorization", JMLR 14, 2013). With the priors' variances estimated too, the
 * solution keeps exactly the singular values above sqrt(M sigma^2 (1 + tau)(1 + alpha / tau)),
 * tau = 2.5129 sqrt(alpha), alpha = L/M (L <= M). When sigma2 is not given, it is the minimiser of
 * the EVB free energy (as a function of sigma^2 alone) over a bracket derived from the spectrum;
 * searched globally over log(sigma^2) (a dense grid refined by Brent's method), since that free
 * energy has several local minima on smoothly decaying spectra.
 */
export function evbmf(y: Tensor, opts: { sigma2?: number } = {}): EvbmfResult {
  assertMatrix(y, 'y');
  let [l, m] = y.shape as [number, number];
  if (l === 0 || m === 0) throw new ValidationError('y', 'evbmf needs a non-empty matrix');
  if (l > m) [l, m] = [m, l]; // the theory takes L <= M; singular values are the same
  const s = singularValues(y);
  const h = s.length; // = L: the full spectrum, so there is no residual term
  const alpha = l / m;
  const tauBar = TAU_BAR_COEF * Math.sqrt(alpha);
  const xBar = (1 + tauBar) * (1 + alpha / tauBar);
  const posteriorValues = new Float64Array(h);
  let total = 0;
  for (const v of s) total += v * v;
  if (total === 0)
    return {
      rank: 0,
      noiseVariance: 0,
      singularValues: s,
      posteriorValues,
      threshold: 0,
      searchInterval: null,
    };

  let sigma2: number;
  let searchInterval: [number, number] | null = null;
  if (opts.sigma2 !== undefined) {
    if (!(opts.sigma2 > 0))
      throw new ValidationError('sigma2', `sigma2 must be a positive number, got ${String(opts.sigma2)}`);
    sigma2 = opts.sigma2;
  } else {
    // Bracket: at most every singular value is noise (upper); at least the ones that cannot be
    // signal under the rank bound ceil(L / (1 + alpha)) - 1 are noise (lower).
    const hUb = Math.min(Math.ceil(l / (1 + alpha)) - 1, h);
    const upper = total / (l * m);
    let tail = 0;
    for (let i = hUb; i < h; i++) tail += s[i]! * s[i]!;
    const lower = Math.max((s[hUb]! * s[hUb]!) / (m * xBar), tail / (h - hUb) / m);
    const freeEnergy = (logSigma2: number): number => evbFreeEnergy(s, l, m, Math.exp(logSigma2));
    if (!(lower < upper)) {
      sigma2 = upper;
      searchInterval = [upper, upper];
    } else {
      const lo = Math.log(Math.max(lower, upper * 1e-30));
      const hi = Math.log(upper);
      sigma2 = Math.exp(minimizeGlobal(freeEnergy, lo, hi));
      searchInterval = [Math.exp(lo), upper];
    }
  }

  const threshold = Math.sqrt(m * sigma2 * xBar);
  let rank = 0;
  for (let i = 0; i < h; i++) {
    const sv = s[i]!;
    if (!(sv > threshold)) continue;
    rank++;
    // Posterior mean (Nakajima et al. 2012, eq. 15).
    const a = 1 - ((l + m) * sigma2) / (sv * sv);
    const disc = Math.max(0, a * a - (4 * l * m * sigma2 * sigma2) / sv ** 4);
    posteriorValues[i] = (sv / 2) * (a + Math.sqrt(disc));
  }
  return { rank, noiseVariance: sigma2, singularValues: s, posteriorValues, threshold, searchInterval };
}

/**
 * The EVB free energy (up to constants) as a function of the noise variance sigma2, for the
 * singular values s of an L x M matrix (L <= M) whose priors' variances are already optimised
 * (Nakajima et al. 2013, eq. 30 and Theorem 5). It is not convex in sigma2: on smoothly decaying
 * spectra it has a local minimum near each place where a singular value crosses the threshold.
 */
export function evbFreeEnergy(s: ArrayLike<number>, l: number, m: number, sigma2: number): number {
  const alpha = l / m;
  const tauBar = TAU_BAR_COEF * Math.sqrt(alpha);
  const xBar = (1 + tauBar) * (1 + alpha / tauBar);
  let obj = 0;
  for (let i = 0; i < s.length; i++) {
    const x = (s[i]! * s[i]!) / (m * sigma2);
    if (x > xBar) {
      const tau = tauOf(x, alpha);
      obj += x - tau + Math.log((tau + 1) / x) + alpha * Math.log(tau / alpha + 1);
    } else {
      obj += x - Math.log(x + 1e-300);
    }
  }
  return obj;
}

/** Grid points of the global search over log(sigma^2) (the free energy costs O(L) per point). */
const GLOBAL_GRID = 2048;

/**
 * Global minimiser of f on [lo, hi]: the best of a dense uniform grid, refined by Brent's method in
 * the two cells around it. A bounded Brent search alone (what the public Python VBMF code does)
 * stops in whichever local minimum its first golden-section steps fall into.
 */
function minimizeGlobal(f: (x: number) => number, lo: number, hi: number): number {
  let best = 0;
  let fBest = Infinity;
  const step = (hi - lo) / (GLOBAL_GRID - 1);
  for (let k = 0; k < GLOBAL_GRID; k++) {
    const fx = f(lo + k * step);
    if (fx < fBest) {
      fBest = fx;
      best = k;
    }
  }
  const a = lo + Math.max(0, best - 1) * step;
  const b = lo + Math.min(GLOBAL_GRID - 1, best + 1) * step;
  const refined = minimizeBounded(f, a, b, { xatol: 1e-10 });
  return refined.fx <= fBest ? refined.x : lo + best * step;
}

/** tau(x) = (x - (1 + alpha) + sqrt((x - (1 + alpha))^2 - 4 alpha)) / 2, for x > x-bar. */
function tauOf(x: number, alpha: number): number {
  const b = x - (1 + alpha);
  return 0.5 * (b + Math.sqrt(Math.max(0, b * b - 4 * alpha)));
}

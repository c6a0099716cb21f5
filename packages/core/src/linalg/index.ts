import {
  BackendUnavailableError,
  FlatrankError,
  RankError,
  ShapeError,
  UnknownNameError,
  ValidationError,
} from '@flatrank/protocol';
import { Tensor, allocate, assertMatrix, type DType } from '../tensor.js';
import { gemm, transposeBuffer } from '../ops.js';
import { createRng } from '../random.js';
import { getNative, nativeLoadError, withThreads, type NativeLinalg } from './native.js';
import { eigSymJs, qrJs, singularValuesJs, svdJs } from './js.js';

export interface SvdResult {
  /** m x k, orthonormal columns. */
  U: Tensor;
  /** k singular values, descending. */
  S: Float64Array;
  /** n x k, orthonormal columns (A ≈ U diag(S) V^T). */
  V: Tensor;
}

export type SvdMethod = 'auto' | 'native' | 'js' | 'randomized';
export const SVD_METHODS: readonly SvdMethod[] = ['auto', 'native', 'js', 'randomized'];

export interface SvdOptions {
  /** Keep the leading `rank` triplets (1..min(m, n)); default all (thin SVD). */
  rank?: number;
  /** auto: native LAPACK when built, else JS. randomized: Halko et al. (needs `rank`). */
  method?: SvdMethod;
  /** Randomized only: extra random directions beyond rank (default 10). */
  oversample?: number;
  /** Randomized only: subspace (power) iterations (default 4). */
  powerIterations?: number;
  /** Randomized only: seed of the Gaussian test matrix (default 0). */
  seed?: number;
}

/** Which implementation `svd` (and the other decompositions) use by default. */
export function linalgBackend(): 'native' | 'js' {
  return getNative() ? 'native' : 'js';
}

/** Details for logs and the benchmark: the backend, OpenBLAS's configuration, or why native is off. */
export function linalgInfo(): {
  backend: 'native' | 'js';
  threads?: number;
  openblas?: string;
  reason?: string;
} {
  const native = getNative();
  if (native) return { backend: 'native', ...native.config() };
  return { backend: 'js', reason: nativeLoadError() ?? 'native addon unavailable' };
}

function toF64(t: Tensor): Float64Array {
  return t.data instanceof Float64Array ? t.data.slice() : Float64Array.from(t.data);
}

function out(data: Float64Array, shape: number[], dtype: DType): Tensor {
  if (dtype === 'float64') return new Tensor(data, shape);
  const f = allocate('float32', data.length);
  f.set(data);
  return new Tensor(f, shape);
}

function checkFinite(a: Tensor, field: string): void {
  const d = a.data;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i]!))
      throw new ValidationError(
        field,
        `${field} contains a non-finite value (NaN or Infinity) at flat index ${i}`,
      );
  }
}

function lapackFailure(routine: string, info: number, context: Record<string, unknown>): FlatrankError {
  return new FlatrankError(
    'LINALG_FAILED',
    `LAPACK ${routine} failed with info=${info}${info > 0 ? ' (did not converge)' : ' (illegal argument)'}`,
    { context: { info, ...context } },
  );
}

function nativeFor(method: 'auto' | 'native' | 'js'): NativeLinalg | null {
  if (method === 'js') return null;
  const native = getNative();
  if (method === 'native' && !native) {
    throw new BackendUnavailableError(
      `method 'native' requested but the LAPACK addon is unavailable: ${nativeLoadError() ?? 'unknown reason'}; use method 'js' or 'auto'`,
    );
  }
  return native;
}

/**
 * Deterministic signs: flip each singular pair so the largest-magnitude entry of the U column is
 * positive (ties: the first). Native and JS paths, and repeated runs, then agree up to rounding.
 */
function normalizeSigns(u: Float64Array, v: Float64Array, m: number, n: number, k: number): void {
  for (let c = 0; c < k; c++) {
    let best = 0;
    let bestAbs = -1;
    for (let i = 0; i < m; i++) {
      const x = Math.abs(u[i * k + c]!);
      if (x > bestAbs * (1 + 1e-12)) {
        bestAbs = x;
        best = i;
      }
    }
    if (u[best * k + c]! < 0) {
      for (let i = 0; i < m; i++) u[i * k + c] = -u[i * k + c]!;
      for (let i = 0; i < n; i++) v[i * k + c] = -v[i * k + c]!;
    }
  }
}

/** Keep the first r columns of a row-major rows x k buffer. */
function leadingColumns(x: Float64Array, rows: number, k: number, r: number): Float64Array {
  if (r === k) return x;
  const o = new Float64Array(rows * r);
  for (let i = 0; i < rows; i++) o.set(x.subarray(i * k, i * k + r), i * r);
  return o;
}

/** Thin SVD of a row-major m x n float64 buffer (not modified): u m x k, s, v n x k. */
export function svdRaw(
  a: Float64Array,
  m: number,
  n: number,
  method: 'auto' | 'native' | 'js',
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  const k = Math.min(m, n);
  const native = nativeFor(method);
  if (k === 0) return { u: new Float64Array(0), s: new Float64Array(0), v: new Float64Array(0) };
  if (native) {
    const work = a.slice();
    const s = new Float64Array(k);
    const u = new Float64Array(m * k);
    const vt = new Float64Array(k * n);
    const info = withThreads(native, m * n * k, () => native.gesdd(work, m, n, s, u, vt));
    if (info !== 0) throw lapackFailure('dgesdd', info, { m, n });
    return { u, s, v: transposeBuffer(vt, k, n) };
  }
  // Scale to max |a_ij| = 1 first: the JS QR iteration's negligibility tests use absolute thresholds
  // (as LINPACK's did) that would misfire on matrices of entries near 1e-300 (LAPACK rescales too).
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) maxAbs = Math.max(maxAbs, Math.abs(a[i]!));
  if (maxAbs === 0 || maxAbs === 1) return svdJs(a, m, n);
  const scaled = new Float64Array(a.length); // a plain loop: TypedArray.prototype.map calls a closure per entry
  for (let i = 0; i < a.length; i++) scaled[i] = a[i]! / maxAbs;
  const r = svdJs(scaled, m, n, true); // the scaled copy is scratch
  for (let i = 0; i < r.s.length; i++) r.s[i] = r.s[i]! * maxAbs;
  return r;
}

/**
 * Singular values only of a row-major m x n float64 buffer (not modified), descending. Native: LAPACK
 * dgesdd with jobz = 'N' (an addon built before it existed runs the full dgesdd and keeps S); JS: the
 * JS SVD's reductions without U and V, scaled like svdRaw.
 */
export function singularValuesRaw(
  a: Float64Array,
  m: number,
  n: number,
  method: 'auto' | 'native' | 'js',
): Float64Array {
  const k = Math.min(m, n);
  const native = nativeFor(method);
  if (k === 0) return new Float64Array(0);
  if (native) {
    if (typeof native.gesddValues !== 'function') return svdRaw(a, m, n, method).s;
    const s = new Float64Array(k);
    // Values-only dgesdd costs ~ 4mn^2 (QR + bidiagonalisation), far less than the full one.
    const info = withThreads(native, m * n * k, () => native.gesddValues!(a.slice(), m, n, s));
    if (info !== 0) throw lapackFailure('dgesdd', info, { m, n, jobz: 'N' });
    return s;
  }
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) maxAbs = Math.max(maxAbs, Math.abs(a[i]!));
  if (maxAbs === 0 || maxAbs === 1) return singularValuesJs(a, m, n);
  const scaled = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) scaled[i] = a[i]! / maxAbs;
  const s = singularValuesJs(scaled, m, n, true);
  for (let i = 0; i < s.length; i++) s[i] = s[i]! * maxAbs;
  return s;
}

/**
 * The singular values of a matrix, descending (length min(m, n)), without U and V: for the callers
 * that need only the spectrum (EVBMF, energy rank policies, rank plans). Computed in float64 like
 * `svd`, and equal to `svd(a).S` up to rounding (bit-identical on the JS path).
 */
export function singularValues(a: Tensor, opts: { method?: 'auto' | 'native' | 'js' } = {}): Float64Array {
  assertMatrix(a, 'a');
  const method = opts.method ?? 'auto';
  const allowed = ['auto', 'native', 'js'] as const;
  if (!allowed.includes(method)) throw new UnknownNameError('method', String(method), allowed);
  checkFinite(a, 'a');
  const [m, n] = a.shape as [number, number];
  const data = a.data instanceof Float64Array ? a.data : Float64Array.from(a.data);
  return singularValuesRaw(data, m, n, method);
}

function checkIntOption(value: unknown, field: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ValidationError(field, `${field} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/**
 * Singular value decomposition A = U diag(S) V^T. Full thin SVD (k = min(m, n)) by default, or the
 * leading `rank` triplets. U and V have A's dtype; S is always float64. Computation is in float64.
 */
export function svd(a: Tensor, opts: SvdOptions = {}): SvdResult {
  assertMatrix(a, 'a');
  const [m, n] = a.shape as [number, number];
  const full = Math.min(m, n);
  const method = opts.method ?? 'auto';
  if (!SVD_METHODS.includes(method)) throw new UnknownNameError('method', String(method), SVD_METHODS);
  let rank = full;
  if (opts.rank !== undefined) {
    if (
      typeof opts.rank !== 'number' ||
      !Number.isSafeInteger(opts.rank) ||
      opts.rank < 1 ||
      opts.rank > full
    ) {
      throw new RankError(
        'rank',
        `rank must be an integer in [1, ${full}] for a ${m}x${n} matrix, got ${String(opts.rank)}`,
        { context: { m, n } },
      );
    }
    rank = opts.rank;
  }
  const oversample = checkIntOption(opts.oversample, 'oversample', 0) ?? 10;
  const powerIterations = checkIntOption(opts.powerIterations, 'powerIterations', 0) ?? 4;
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed))
    throw new ValidationError('seed', `seed must be a safe integer, got ${String(seed)}`);
  if (method === 'randomized' && opts.rank === undefined) {
    throw new RankError('rank', "method 'randomized' computes a truncated SVD: pass rank (1..min(m, n))");
  }
  checkFinite(a, 'a');
  const data = a.data instanceof Float64Array ? a.data : Float64Array.from(a.data);
  let r: { u: Float64Array; s: Float64Array; v: Float64Array };
  let k: number;
  if (method === 'randomized') {
    r = randomizedSvdRaw(data, m, n, rank, oversample, powerIterations, seed);
    k = rank;
  } else {
    r = svdRaw(data, m, n, method);
    k = full;
  }
  let { u, s, v } = r;
  if (rank < k) {
    u = leadingColumns(u, m, k, rank);
    v = leadingColumns(v, n, k, rank);
    s = s.slice(0, rank);
  }
  normalizeSigns(u, v, m, n, rank);
  return { U: out(u, [m, rank], a.dtype), S: s, V: out(v, [n, rank], a.dtype) };
}

/** Orthonormal basis (thin Q) of the columns of a row-major m x l buffer. */
function orthonormalize(y: Float64Array, m: number, l: number): Float64Array {
  const native = getNative();
  if (native) {
    const k = Math.min(m, l);
    const q = new Float64Array(m * k);
    const r = new Float64Array(k * l);
    const info = withThreads(native, m * l * k, () => native.qr(y.slice(), m, l, q, r));
    if (info !== 0) throw lapackFailure('dgeqrf/dorgqr', info, { m, n: l });
    return q;
  }
  return qrJs(y, m, l).q;
}

/**
 * Randomized truncated SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1): a Gaussian sketch of
 * rank + oversample columns, `powerIterations` QR-stabilised subspace iterations, then the exact SVD
 * of the small projected matrix. Returns the leading `rank` triplets.
 */
export function randomizedSvdRaw(
  a: Float64Array,
  m: number,
  n: number,
  rank: number,
  oversample: number,
  powerIterations: number,
  seed: number,
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  const l = Math.min(rank + oversample, m, n);
  if (l >= Math.min(m, n)) {
    // The sketch would be as large as the matrix: the exact SVD is cheaper and exact.
    const r = svdRaw(a, m, n, 'auto');
    const k = Math.min(m, n);
    return { u: leadingColumns(r.u, m, k, rank), s: r.s.slice(0, rank), v: leadingColumns(r.v, n, k, rank) };
  }
  const rng = createRng(seed);
  const omega = new Float64Array(n * l);
  for (let i = 0; i < omega.length; i++) omega[i] = rng.normal();
  let q = orthonormalize(gemm(a, omega, m, l, n) as Float64Array, m, l);
  for (let it = 0; it < powerIterations; it++) {
    const z = orthonormalize(gemm(a, q, n, l, m, true, false) as Float64Array, n, l); // A^T Q
    q = orthonormalize(gemm(a, z, m, l, n) as Float64Array, m, l); // A Z
  }
  const b = gemm(q, a, l, n, m, true, false) as Float64Array; // Q^T A, l x n
  const small = svdRaw(b, l, n, 'auto'); // u l x l, v n x l
  const u = gemm(q, small.u, m, l, l) as Float64Array;
  return {
    u: leadingColumns(u, m, l, rank),
    s: small.s.slice(0, rank),
    v: leadingColumns(small.v, n, l, rank),
  };
}

function checkSquareSymmetric(a: Tensor): number {
  assertMatrix(a, 'a');
  const [n, c] = a.shape as [number, number];
  if (n !== c) throw new ShapeError('a', `eigSym needs a square matrix, got [${n}, ${c}]`);
  let scale = 0;
  for (let i = 0; i < a.size; i++) scale = Math.max(scale, Math.abs(a.data[i]!));
  const tol = 1e-8 * scale + Number.MIN_VALUE;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (Math.abs(a.data[i * n + j]! - a.data[j * n + i]!) > tol) {
        throw new ValidationError(
          'a',
          `eigSym needs a symmetric matrix: a[${i}][${j}] = ${a.data[i * n + j]} but a[${j}][${i}] = ${a.data[j * n + i]}`,
        );
      }
    }
  }
  return n;
}

/**
 * Eigendecomposition of a real symmetric matrix: values descending, vectors as the columns of an
 * orthogonal matrix (a = vectors diag(values) vectors^T). Native dsyevd, or Householder + QL in JS.
 */
export function eigSym(
  a: Tensor,
  opts: { method?: 'auto' | 'native' | 'js' } = {},
): { values: Float64Array; vectors: Tensor } {
  const n = checkSquareSymmetric(a);
  checkFinite(a, 'a');
  const native = nativeFor(opts.method ?? 'auto');
  if (native && n > 0) {
    const w = new Float64Array(n);
    const work = toF64(a);
    // Symmetrise so the result does not depend on which triangle LAPACK reads.
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++)
        work[i * n + j] = work[j * n + i] = 0.5 * (work[i * n + j]! + work[j * n + i]!);
    const info = withThreads(native, n * n * n, () => native.syevd(work, n, w));
    if (info !== 0) throw lapackFailure('dsyevd', info, { n });
    // work rows are eigenvectors (ascending); emit columns, descending.
    const values = new Float64Array(n);
    const vectors = new Float64Array(n * n);
    for (let c = 0; c < n; c++) {
      const src = n - 1 - c;
      values[c] = w[src]!;
      for (let k = 0; k < n; k++) vectors[k * n + c] = work[src * n + k]!;
    }
    normalizeEigSigns(vectors, n);
    return { values, vectors: out(vectors, [n, n], a.dtype) };
  }
  const r = eigSymJs(toF64(a), n);
  normalizeEigSigns(r.vectors, n);
  return { values: r.values, vectors: out(r.vectors, [n, n], a.dtype) };
}

function normalizeEigSigns(v: Float64Array, n: number): void {
  normalizeSigns(v, new Float64Array(0), n, 0, n);
}

/** Thin Householder QR: Q (m x k, orthonormal columns), R (k x n, upper triangular), k = min(m, n). */
export function qr(a: Tensor, opts: { method?: 'auto' | 'native' | 'js' } = {}): { Q: Tensor; R: Tensor } {
  assertMatrix(a, 'a');
  checkFinite(a, 'a');
  const [m, n] = a.shape as [number, number];
  const k = Math.min(m, n);
  const native = nativeFor(opts.method ?? 'auto');
  let q: Float64Array;
  let r: Float64Array;
  if (native && k > 0) {
    q = new Float64Array(m * k);
    r = new Float64Array(k * n);
    const info = withThreads(native, m * n * k, () => native.qr(toF64(a), m, n, q, r));
    if (info !== 0) throw lapackFailure('dgeqrf/dorgqr', info, { m, n });
  } else {
    ({ q, r } = qrJs(toF64(a), m, n));
  }
  return { Q: out(q, [m, k], a.dtype), R: out(r, [k, n], a.dtype) };
}

/**
 * Least squares: the x minimising ||a x - b||_F (b is m x p, or a length-m vector giving x of length n).
 * Full-rank problems use QR (LAPACK dgels natively, Householder QR in JS; for m < n the minimum-norm
 * solution); rank-deficient ones fall back to the SVD pseudo-inverse (minimum-norm solution).
 */
export function lstsq(a: Tensor, b: Tensor, opts: { method?: 'auto' | 'native' | 'js' } = {}): Tensor {
  assertMatrix(a, 'a');
  const [m, n] = a.shape as [number, number];
  const vector = b.rank === 1;
  if (!(b.rank === 1 || b.rank === 2) || b.shape[0] !== m) {
    throw new ShapeError(
      'b',
      `lstsq: b must have ${m} rows (a is ${m}x${n}), got shape [${b.shape.join(', ')}]`,
    );
  }
  checkFinite(a, 'a');
  checkFinite(b, 'b');
  const p = vector ? 1 : b.shape[1]!;
  const method = opts.method ?? 'auto';
  const native = nativeFor(method);
  const dtype = a.dtype === 'float32' && b.dtype === 'float32' ? 'float32' : 'float64';
  const shape = vector ? [n] : [n, p];
  if (m === 0 || n === 0 || p === 0) return Tensor.zeros(shape, dtype);
  const bd = toF64(b);
  if (native) {
    const bb = new Float64Array(Math.max(m, n) * p);
    bb.set(bd);
    const factored = toF64(a);
    const info = withThreads(native, m * n * Math.min(m, n), () => native.gels(factored, m, n, bb, p));
    if (info < 0) throw lapackFailure('dgels', info, { m, n });
    // dgels reports rank deficiency only for an exactly zero diagonal of R (or L when m < n), which
    // rounding rarely leaves: a duplicated column gives ~1e-16 there, and the solve then returns a
    // valid but not minimum-norm x. The same test as the JS path decides the fallback.
    if (info === 0 && wellConditionedTriangle(factored, Math.min(m, n), n))
      return out(bb.slice(0, n * p), shape, dtype);
    // rank deficient: use the pseudo-inverse below.
  } else {
    const x = lstsqQrJs(toF64(a), m, n, bd, p);
    if (x) return out(x, shape, dtype);
  }
  return out(pinvSolve(toF64(a), m, n, bd, p, method === 'js' ? 'js' : 'auto'), shape, dtype);
}

/** QR least squares in JS; null when R is (numerically) singular. */
function lstsqQrJs(a: Float64Array, m: number, n: number, b: Float64Array, p: number): Float64Array | null {
  if (m >= n) {
    const { q, r } = qrJs(a, m, n);
    if (!wellConditionedTriangle(r, n, n)) return null;
    const qtb = gemm(q, b, n, p, m, true, false, 'float64', true) as Float64Array;
    return backSubstitute(r, n, n, qtb, p);
  }
  // Minimum norm for m < n: a^T = QR, a = R^T Q^T, x = Q (R^T)^{-1} b.
  const { q, r } = qrJs(transposeBuffer(a, m, n), n, m);
  if (!wellConditionedTriangle(r, m, m)) return null;
  const y = new Float64Array(m * p);
  for (let c = 0; c < p; c++) {
    for (let i = 0; i < m; i++) {
      let s = b[i * p + c]!;
      for (let j = 0; j < i; j++) s -= r[j * m + i]! * y[j * p + c]!;
      y[i * p + c] = s / r[i * m + i]!;
    }
  }
  return gemm(q, y, n, p, m, false, false, 'float64', true) as Float64Array;
}

function wellConditionedTriangle(r: Float64Array, k: number, ld: number): boolean {
  let max = 0;
  for (let i = 0; i < k; i++) max = Math.max(max, Math.abs(r[i * ld + i]!));
  const tol = max * Math.max(k, 1) * 2 ** -52 * 10;
  for (let i = 0; i < k; i++) if (!(Math.abs(r[i * ld + i]!) > tol)) return false;
  return max > 0;
}

function backSubstitute(r: Float64Array, k: number, ld: number, y: Float64Array, p: number): Float64Array {
  const x = new Float64Array(k * p);
  for (let c = 0; c < p; c++) {
    for (let i = k - 1; i >= 0; i--) {
      let s = y[i * p + c]!;
      for (let j = i + 1; j < k; j++) s -= r[i * ld + j]! * x[j * p + c]!;
      x[i * p + c] = s / r[i * ld + i]!;
    }
  }
  return x;
}

/** Minimum-norm least squares through the SVD, discarding singular values below max(m,n) eps s_max. */
function pinvSolve(
  a: Float64Array,
  m: number,
  n: number,
  b: Float64Array,
  p: number,
  method: 'auto' | 'js',
): Float64Array {
  const { u, s, v } = svdRaw(a, m, n, method);
  const k = s.length;
  const tol = Math.max(m, n) * 2 ** -52 * (s[0] ?? 0);
  const utb = gemm(u, b, k, p, m, true, false, 'float64', method === 'js') as Float64Array;
  for (let i = 0; i < k; i++) {
    const inv = s[i]! > tol ? 1 / s[i]! : 0;
    for (let c = 0; c < p; c++) utb[i * p + c] = utb[i * p + c]! * inv;
  }
  return gemm(v, utb, n, p, k, false, false, 'float64', method === 'js') as Float64Array;
}

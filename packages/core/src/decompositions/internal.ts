// Small row-major kernels shared by Tucker and CP. They work on raw Float64Arrays so that the
// iterative loops (HOOI, ALS) allocate little and never go through generic index arithmetic.
import { ShapeError, ValidationError } from '@flatrank/protocol';
import { Tensor } from '../tensor.js';
import { matmul } from '../ops.js';

/** View of a row-major tensor around one mode: [pre, I_n, post]. */
export function around(shape: readonly number[], mode: number): { pre: number; n: number; post: number } {
  let pre = 1;
  let post = 1;
  for (let i = 0; i < mode; i++) pre *= shape[i]!;
  for (let i = mode + 1; i < shape.length; i++) post *= shape[i]!;
  return { pre, n: shape[mode]!, post };
}

export function toFloat64(data: ArrayLike<number>): Float64Array {
  if (data instanceof Float64Array) return data;
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]!;
  return out;
}

export function sumSquares(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

/**
 * out = X x_mode M for M given row-major as [J, I_n] (transposed = false) or as [I_n, J]
 * (transposed = true, i.e. X x_mode M^T without forming M^T). Returns the new data and shape.
 */
export function modeMul(
  x: Float64Array,
  shape: readonly number[],
  m: Float64Array,
  mode: number,
  j: number,
  transposed: boolean,
): { data: Float64Array; shape: number[] } {
  const { pre, n, post } = around(shape, mode);
  const mt = new Tensor(m, transposed ? [n, j] : [j, n]);
  const newShape = [...shape];
  newShape[mode] = j;
  // Blocks go through core's matmul (BLAS when the native addon is built, blocked JS otherwise).
  if (post === 1) {
    const xs = new Tensor(x, [pre, n]);
    const out = transposed ? matmul(xs, mt) : matmul(xs, mt, { transposeB: true });
    return { data: out.data as Float64Array, shape: newShape };
  }
  const out = new Float64Array(pre * j * post);
  for (let p = 0; p < pre; p++) {
    const xp = new Tensor(x.subarray(p * n * post, (p + 1) * n * post), [n, post]);
    const blk = transposed ? matmul(mt, xp, { transposeA: true }) : matmul(mt, xp);
    out.set(blk.data, p * j * post);
  }
  return { data: out, shape: newShape };
}

/** Gram matrix of the mode-n unfolding, X_(n) X_(n)^T (I_n x I_n, symmetric), without unfolding. */
export function modeGram(x: Float64Array, shape: readonly number[], mode: number): Float64Array {
  const { pre, n, post } = around(shape, mode);
  let g: Float64Array;
  if (post === 1) {
    const y = new Tensor(x, [pre, n]);
    g = matmul(y, y, { transposeA: true }).data as Float64Array;
  } else {
    g = new Float64Array(n * n);
    for (let p = 0; p < pre; p++) {
      const xp = new Tensor(x.subarray(p * n * post, (p + 1) * n * post), [n, post]);
      const blk = matmul(xp, xp, { transposeB: true }).data;
      for (let i = 0; i < n * n; i++) g[i] += blk[i]!;
    }
  }
  // exact symmetry (eigSym checks it; BLAS may differ in the last bit between triangles)
  for (let a = 0; a < n; a++)
    for (let b = 0; b < a; b++) {
      const v = 0.5 * (g[a * n + b]! + g[b * n + a]!);
      g[a * n + b] = v;
      g[b * n + a] = v;
    }
  return g;
}

/**
 * Mode-n unfolding with the remaining modes in row-major order (last mode fastest). Note: this is
 * NOT the Kolda & Bader column order of core's `unfold`; it is only used internally, paired with
 * `khatriRaoRowMajor` which follows the same order.
 */
export function unfoldRowMajor(x: Float64Array, shape: readonly number[], mode: number): Float64Array {
  const { pre, n, post } = around(shape, mode);
  const out = new Float64Array(x.length);
  const rest = pre * post;
  for (let p = 0; p < pre; p++)
    for (let i = 0; i < n; i++) {
      const xo = (p * n + i) * post;
      const oo = i * rest + p * post;
      for (let q = 0; q < post; q++) out[oo + q] = x[xo + q]!;
    }
  return out;
}

/** Khatri-Rao product of [I_k x R] row-major factors, first factor slowest (row index row-major). */
export function khatriRaoRowMajor(
  mats: readonly Float64Array[],
  dims: readonly number[],
  r: number,
): Float64Array {
  let acc = new Float64Array(r).fill(1);
  let rows = 1;
  mats.forEach((m, k) => {
    const d = dims[k]!;
    const next = new Float64Array(rows * d * r);
    for (let a = 0; a < rows; a++)
      for (let b = 0; b < d; b++) {
        const o = (a * d + b) * r;
        for (let c = 0; c < r; c++) next[o + c] = acc[a * r + c]! * m[b * r + c]!;
      }
    acc = next;
    rows *= d;
  });
  return acc;
}

/** Top-k eigenvectors (columns of an n x k row-major matrix) of a symmetric n x n matrix. */
export function leadingEigenvectors(
  g: Float64Array,
  n: number,
  k: number,
  eigSym: (a: Tensor) => { values: Float64Array; vectors: Tensor },
): Float64Array {
  const { vectors } = eigSym(new Tensor(g, [n, n]));
  const v = vectors.data;
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) out[i * k + c] = v[i * n + c]!;
  return out;
}

/**
 * Solves X V = B for X given symmetric positive semi-definite V (r x r), B (m x r), in place of B.
 * Cholesky first; when V is singular (collinear CP components), falls back to the pseudo-inverse.
 */
export function solveSpdRight(
  b: Float64Array,
  m: number,
  v: Float64Array,
  r: number,
  eigSym: (a: Tensor) => { values: Float64Array; vectors: Tensor },
): void {
  const l = new Float64Array(r * r);
  let ok = true;
  let maxDiag = 0;
  for (let i = 0; i < r; i++) maxDiag = Math.max(maxDiag, v[i * r + i]!);
  outer: for (let i = 0; i < r; i++) {
    for (let j = 0; j <= i; j++) {
      let s = v[i * r + j]!;
      for (let k = 0; k < j; k++) s -= l[i * r + k]! * l[j * r + k]!;
      if (i === j) {
        if (!(s > 1e-13 * maxDiag)) {
          ok = false;
          break outer;
        }
        l[i * r + i] = Math.sqrt(s);
      } else l[i * r + j] = s / l[j * r + j]!;
    }
  }
  if (ok) {
    // each row x of X: x V = b  <=>  V x^T = b^T  <=>  L L^T x^T = b^T
    const y = new Float64Array(r);
    for (let row = 0; row < m; row++) {
      const o = row * r;
      for (let i = 0; i < r; i++) {
        let s = b[o + i]!;
        for (let k = 0; k < i; k++) s -= l[i * r + k]! * y[k]!;
        y[i] = s / l[i * r + i]!;
      }
      for (let i = r - 1; i >= 0; i--) {
        let s = y[i]!;
        for (let k = i + 1; k < r; k++) s -= l[k * r + i]! * b[o + k]!;
        b[o + i] = s / l[i * r + i]!;
      }
    }
    return;
  }
  const { values, vectors } = eigSym(new Tensor(v.slice(), [r, r]));
  const q = vectors.data;
  const cutoff = Math.max(1e-300, Math.abs(values[0] ?? 0) * r * 1e-14);
  const pinv = new Float64Array(r * r);
  for (let k = 0; k < r; k++) {
    const lam = values[k]!;
    if (Math.abs(lam) <= cutoff) continue;
    for (let i = 0; i < r; i++)
      for (let j = 0; j < r; j++) pinv[i * r + j] += (q[i * r + k]! * q[j * r + k]!) / lam;
  }
  const tmp = new Float64Array(r);
  for (let row = 0; row < m; row++) {
    const o = row * r;
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let i = 0; i < r; i++) s += b[o + i]! * pinv[i * r + j]!;
      tmp[j] = s;
    }
    b.set(tmp, o);
  }
}

/**
 * Contracts mode c of x with a [I_c, R] factor: y[..., r] = sum_i x[..., i (at c), ...] a[i, r].
 * The result is row-major over the remaining modes, then r (shape: shape without c, plus [R]).
 */
export function contractMode(
  x: Float64Array,
  shape: readonly number[],
  a: Float64Array,
  c: number,
  r: number,
): Float64Array {
  const { pre, n, post } = around(shape, c);
  const at = new Tensor(a, [n, r]);
  if (post === 1) return matmul(new Tensor(x, [pre, n]), at).data as Float64Array;
  const y = new Float64Array(pre * post * r);
  for (let p = 0; p < pre; p++) {
    const xp = new Tensor(x.subarray(p * n * post, (p + 1) * n * post), [n, post]);
    y.set(matmul(xp, at, { transposeA: true }).data, p * post * r);
  }
  return y;
}

/**
 * MTTKRP from a partially contracted tensor y (row-major over `modes`, then r): for mode m in
 * `modes`, out[i, r] = sum over the other indices of y[..., r] * prod_k factors[k][i_k, r].
 */
export function mttkrpFrom(
  y: Float64Array,
  modes: readonly number[],
  dims: readonly number[],
  factors: readonly Float64Array[],
  m: number,
  r: number,
): Float64Array {
  const pm = modes.indexOf(m);
  const out = new Float64Array(dims[pm]! * r);
  const nd = modes.length;
  const idx = new Array<number>(nd).fill(0);
  const w = new Float64Array(r);
  const total = dims.reduce((a, b) => a * b, 1);
  for (let e = 0; e < total; e++) {
    w.fill(1);
    for (let k = 0; k < nd; k++) {
      if (k === pm) continue;
      const f = factors[modes[k]!]!;
      const fo = idx[k]! * r;
      for (let q = 0; q < r; q++) w[q] *= f[fo + q]!;
    }
    const oo = idx[pm]! * r;
    const yo = e * r;
    for (let q = 0; q < r; q++) out[oo + q] += y[yo + q]! * w[q]!;
    for (let k = nd - 1; k >= 0; k--) {
      if (++idx[k]! < dims[k]!) break;
      idx[k] = 0;
    }
  }
  return out;
}

/**
 * A warm-start factor given at an API boundary: a finite [rows, cols] Tensor. Returns a float64
 * copy, so that the fit never shares memory with (a previous result held by) the caller.
 */
export function warmFactor(f: unknown, field: string, rows: number, cols: number): Float64Array {
  if (!(f instanceof Tensor)) throw new ValidationError(field, `${field} must be a Tensor`);
  if (f.rank !== 2 || f.shape[0] !== rows || f.shape[1] !== cols)
    throw new ShapeError(field, `${field} must be [${rows}, ${cols}], got [${f.shape.join(', ')}]`, {
      context: { expected: [rows, cols], got: [...f.shape] },
    });
  const out = Float64Array.from(f.data);
  for (let i = 0; i < out.length; i++)
    if (!Number.isFinite(out[i]!))
      throw new ValidationError(field, `${field} has a non-finite value at flat index ${i}`);
  return out;
}

/** A progress callback given at an API boundary: a function or absent. */
export function sweepCallback<F extends (...args: never[]) => void>(f: unknown): F | null {
  if (f === undefined) return null;
  if (typeof f !== 'function')
    throw new ValidationError('onSweep', `onSweep must be a function, got ${typeof f}`);
  return f as F;
}

/**
 * The stop rule of the iterative fits: the relative error changed by less than `tolerance`, or by
 * less than `relativeTolerance` times itself (the scale-free rule a warm start needs: its errors
 * are small, and ALS keeps creeping down by amounts far below them for hundreds of sweeps).
 */
export function fitSettled(
  previous: number,
  next: number,
  tolerance: number,
  relativeTolerance: number,
): boolean {
  const change = Math.abs(previous - next);
  return change < tolerance || change < relativeTolerance * next;
}

/** A non-negative stop tolerance given at an API boundary, or its default when absent. */
export function toleranceOption(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0))
    throw new ValidationError(field, `${field} must be a non-negative number, got ${String(value)}`);
  return value;
}

// Over 500 lines on purpose: the pure-JS fallback keeps QR, SVD and eig beside the blocked GEMM and reflector code they share.
// Pure-JavaScript dense linear algebra on raw row-major Float64Array buffers: the fallback when the
// native LAPACK addon is missing (and the reference it is tested against). Inner loops run down
// contiguous columns, so the working copies are kept column-major (a column-major m x n matrix is a
// row-major n x m buffer).
import { FlatrankError } from '@flatrank/protocol';
import { norm2, transposeBuffer } from '../ops.js';
import { gemmAcc } from './kernels.js';

const EPS = 2 ** -52;
const TINY = 2 ** -966;

function hypot(a: number, b: number): number {
  const x = Math.abs(a);
  const y = Math.abs(b);
  if (x > y) {
    const r = y / x;
    return x * Math.sqrt(1 + r * r);
  }
  if (y === 0) return 0;
  const r = x / y;
  return y * Math.sqrt(1 + r * r);
}

/**
 * x[xo..xo+len) . y[yo..yo+len) with four partial sums: a single running sum waits for each add to
 * finish (a latency chain), four keep several adds in flight.
 */
function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    s0 += x[xo + i]! * y[yo + i]!;
    s1 += x[xo + i + 1]! * y[yo + i + 1]!;
    s2 += x[xo + i + 2]! * y[yo + i + 2]!;
    s3 += x[xo + i + 3]! * y[yo + i + 3]!;
  }
  for (; i < len; i++) s0 += x[xo + i]! * y[yo + i]!;
  return s0 + s1 + (s2 + s3);
}

/**
 * Panel width of the blocked Householder QR and of the reflector products, for k reflectors: wide
 * enough for the GEMM updates to dominate, narrow enough that the column-by-column (level-2) panel
 * work stays small. Measured: 16 is ~5 % faster than 32 for k <= 128 (64x576, 128x1152), 32 is as
 * fast or faster from k = 256 on.
 */
function qrBlock(k: number): number {
  return k <= 128 ? 16 : 32;
}

/** One panel of reflectors in compact WY form: H_p0 ... H_{p0+b-1} = I - V T V^T. */
interface Panel {
  p0: number;
  b: number;
  /** V^T, b x (m - p0) row-major (unit diagonal, zeros left of it). */
  vt: Float64Array;
  /** b x b upper triangular. */
  T: Float64Array;
}

/**
 * Blocked Householder QR of a row-major m x n matrix (LAPACK dgeqrf's scheme): each panel of
 * qrBlock(k) columns is factored column by column on a contiguous copy, and its compact-WY block
 * reflector is applied to the trailing columns as GEMMs (X -= V (T^T (V^T X))), so most of the work
 * runs at matrix-multiply speed. Returns R (k x n) and the panels for applying Q.
 */
function householderJs(
  a: Float64Array,
  m: number,
  n: number,
  overwrite = false,
): { r: Float64Array; panels: Panel[]; k: number } {
  const k = Math.min(m, n);
  const w = overwrite ? a : Float64Array.from(a); // a scratch copy unless the caller's may be used

  const r = new Float64Array(k * n);
  const panels: Panel[] = [];
  const nb = qrBlock(k);
  for (let p0 = 0; p0 < k; p0 += nb) {
    const b = Math.min(nb, k - p0);
    const L = m - p0;
    // Panel columns p0..p0+b-1, rows p0..m-1, column-major (column i at pc[i*L ..]).
    const pc = new Float64Array(b * L);
    for (let rr = 0; rr < L; rr++) {
      const row = (p0 + rr) * n + p0;
      for (let i = 0; i < b; i++) pc[i * L + rr] = w[row + i]!;
    }
    const tau = new Float64Array(b);
    for (let i = 0; i < b; i++) {
      const ci = i * L;
      const alpha = pc[ci + i]!;
      const nrm = norm2(pc, ci + i, ci + L);
      if (nrm === 0) {
        tau[i] = 0;
        continue;
      }
      const beta = alpha >= 0 ? -nrm : nrm;
      const scale = 1 / (alpha - beta);
      for (let q = ci + i + 1; q < ci + L; q++) pc[q] = pc[q]! * scale;
      pc[ci + i] = beta;
      const t = (beta - alpha) / beta;
      tau[i] = t;
      for (let j = i + 1; j < b; j++) {
        const cj = j * L;
        const d = t * (pc[cj + i]! + dot(pc, ci + i + 1, pc, cj + i + 1, L - i - 1));
        if (d !== 0) {
          pc[cj + i] = pc[cj + i]! - d;
          for (let q = i + 1; q < L; q++) pc[cj + q] = pc[cj + q]! - d * pc[ci + q]!;
        }
      }
    }
    // R rows p0..p0+b-1 within the panel.
    for (let i = 0; i < b; i++) for (let j = i; j < b; j++) r[(p0 + i) * n + p0 + j] = pc[j * L + i]!;
    const vt = new Float64Array(b * L);
    for (let i = 0; i < b; i++) {
      vt[i * L + i] = 1;
      vt.set(pc.subarray(i * L + i + 1, i * L + L), i * L + i + 1);
    }
    const panel: Panel = { p0, b, vt, T: blockT(vt, tau, b, L) };
    panels.push(panel);
    const nc = n - p0 - b;
    if (nc > 0) {
      // Trailing columns updated in place; their rows p0..p0+b-1 are final rows of R.
      applyPanel(panel, w, p0 * n + p0 + b, n, nc, true);
      for (let i = 0; i < b; i++)
        r.set(w.subarray((p0 + i) * n + p0 + b, (p0 + i + 1) * n), (p0 + i) * n + p0 + b);
    }
  }
  return { r, panels, k };
}

/** T of the compact WY form (LAPACK dlarft, forward, columnwise). */
function blockT(vt: Float64Array, tau: Float64Array, b: number, L: number): Float64Array {
  const T = new Float64Array(b * b);
  const z = new Float64Array(b);
  for (let i = 0; i < b; i++) {
    const ti = tau[i]!;
    T[i * b + i] = ti;
    if (ti === 0) continue;
    const vi = i * L;
    for (let j = 0; j < i; j++) z[j] = dot(vt, j * L + i, vt, vi + i, L - i);
    for (let j = 0; j < i; j++) {
      let d = 0;
      for (let q = j; q < i; q++) d += T[j * b + q]! * z[q]!;
      T[j * b + i] = -ti * d;
    }
  }
  return T;
}

/**
 * The L x cols block of x at xOff (row stride ldx; the rows p0..m-1 of the operand) := H^T x when
 * `transpose` (the QR sweep), else H x (applying Q), with H = I - V T V^T: three products, the last
 * accumulated into x in place.
 */
function applyPanel(
  panel: Panel,
  x: Float64Array,
  xOff: number,
  ldx: number,
  cols: number,
  transpose: boolean,
): void {
  const { vt, T, b } = panel;
  const L = vt.length / b;
  const w = new Float64Array(b * cols);
  gemmAcc(b, cols, L, 1, vt, 0, L, false, x, xOff, ldx, false, w, 0, cols); // V^T x
  const w2 = new Float64Array(b * cols);
  gemmAcc(b, cols, b, 1, T, 0, b, transpose, w, 0, cols, false, w2, 0, cols); // T^T or T times it
  gemmAcc(L, cols, b, -1, vt, 0, L, true, w2, 0, cols, false, x, xOff, ldx); // x -= V (...)
}

/** x (row-major m x cols) := Q x, the reflectors applied last to first. */
function applyQ(panels: Panel[], x: Float64Array, cols: number): void {
  for (let i = panels.length - 1; i >= 0; i--) {
    const p = panels[i]!;
    applyPanel(p, x, p.p0 * cols, cols, cols, false);
  }
}

/** Householder QR of a row-major m x n matrix: thin Q (m x k) and R (k x n), k = min(m, n), row-major. */
export function qrJs(a: Float64Array, m: number, n: number): { q: Float64Array; r: Float64Array } {
  const { r, panels, k } = householderJs(a, m, n);
  const q = new Float64Array(m * k);
  for (let j = 0; j < k; j++) q[j * k + j] = 1;
  applyQ(panels, q, k);
  return { q, r };
}

/**
 * Row-major rows x cols matrix H_0 H_1 ... H_{r-1} [I; 0] (rows >= cols) for LINPACK-style reflectors
 * kept in the columns of the column-major buffer src (column k at src[k*ld ..]): H_k = I - w w^T / w_0
 * with w = src[k*ld + k+off .. k*ld + rows-1], or the identity where active[k] is 0. In LAPACK terms
 * v = w / w_0 (unit leading entry) and tau = w_0. Blocked like applyQ: panels of qrBlock(r) reflectors
 * in compact WY form, last panel first, each applied as GEMMs to the columns it can change only (the
 * columns left of its first row are still unit vectors there), which is LAPACK dorgqr's saving.
 */
function formReflectorProduct(
  src: Float64Array,
  ld: number,
  rows: number,
  cols: number,
  r: number,
  off: number,
  active: Float64Array,
): Float64Array {
  const x = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) x[j * cols + j] = 1;
  const nb = qrBlock(r);
  for (let p0 = Math.floor((r - 1) / nb) * nb; p0 >= 0; p0 -= nb) {
    const b = Math.min(nb, r - p0);
    const top = p0 + off;
    const L = rows - top;
    const vt = new Float64Array(b * L);
    const tau = new Float64Array(b);
    for (let i = 0; i < b; i++) {
      const k = p0 + i;
      vt[i * L + i] = 1;
      if (active[k] === 0) continue;
      const c = k * ld;
      const piv = src[c + k + off]!;
      tau[i] = piv;
      const inv = 1 / piv;
      for (let q = k + off + 1; q < rows; q++) vt[i * L + q - top] = src[c + q]! * inv;
    }
    applyPanel({ p0: top, b, vt, T: blockT(vt, tau, b, L) }, x, top * cols + top, cols, cols - top, false);
  }
  return x;
}

/** Rotates columns j and l of a column-major matrix (column length len): (x_j, x_l) := (c x_j + s x_l, c x_l - s x_j). */
function rotateColumns(X: Float64Array, len: number, j: number, l: number, c: number, s: number): void {
  const cj = j * len;
  const cl = l * len;
  for (let i = 0; i < len; i++) {
    const xj = X[cj + i]!;
    const xl = X[cl + i]!;
    X[cj + i] = c * xj + s * xl;
    X[cl + i] = c * xl - s * xj;
  }
}

/**
 * The rotation chain of one QR sweep, (k, k+1), (k+1, k+2), ..., (last-1, last) with cosines c[j] and
 * sines s[j], applied to the columns of a column-major matrix six rotations at a time: each row's seven
 * entries stay in registers through six rotations, so a rotation costs ~2.3 memory accesses per row
 * instead of 4 (the arithmetic, and so the rounding, is that of one rotation after the other).
 */
function rotateChain(
  X: Float64Array,
  len: number,
  k: number,
  last: number,
  c: Float64Array,
  s: Float64Array,
): void {
  let j = k;
  for (; j + 6 <= last; j += 6) {
    const c0 = c[j]!,
      s0 = s[j]!,
      c1 = c[j + 1]!,
      s1 = s[j + 1]!;
    const c2 = c[j + 2]!,
      s2 = s[j + 2]!,
      c3 = c[j + 3]!,
      s3 = s[j + 3]!;
    const c4 = c[j + 4]!,
      s4 = s[j + 4]!,
      c5 = c[j + 5]!,
      s5 = s[j + 5]!;
    const o0 = j * len;
    for (let i = o0; i < o0 + len; i++) {
      const x0 = X[i]!;
      let x1 = X[i + len]!;
      X[i] = c0 * x0 + s0 * x1;
      x1 = c0 * x1 - s0 * x0;
      let x2 = X[i + 2 * len]!;
      X[i + len] = c1 * x1 + s1 * x2;
      x2 = c1 * x2 - s1 * x1;
      let x3 = X[i + 3 * len]!;
      X[i + 2 * len] = c2 * x2 + s2 * x3;
      x3 = c2 * x3 - s2 * x2;
      let x4 = X[i + 4 * len]!;
      X[i + 3 * len] = c3 * x3 + s3 * x4;
      x4 = c3 * x4 - s3 * x3;
      let x5 = X[i + 5 * len]!;
      X[i + 4 * len] = c4 * x4 + s4 * x5;
      x5 = c4 * x5 - s4 * x4;
      const x6 = X[i + 6 * len]!;
      X[i + 5 * len] = c5 * x5 + s5 * x6;
      X[i + 6 * len] = c5 * x6 - s5 * x5;
    }
  }
  for (; j < last; j++) rotateColumns(X, len, j, j + 1, c[j]!, s[j]!);
}

/**
 * Golub-Kahan-Reinsch SVD (Householder bidiagonalisation, then implicit-shift QR on the bidiagonal;
 * the algorithm of LINPACK dsvdc / JAMA) of a column-major m x n matrix with m >= n, destroyed.
 * Returns row-major u (m x n), v (n x n) and descending s. With `vectors` false, u and v are empty:
 * the reflectors are not accumulated and the QR sweeps rotate nothing but the bidiagonal (the same
 * arithmetic on s and e, so the same values as the full SVD, at a fraction of the work).
 */
function gkrColumnMajor(
  A: Float64Array,
  m: number,
  n: number,
  vectors = true,
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  const nu = n;
  const s = new Float64Array(Math.min(m + 1, n));
  const VH = new Float64Array(vectors ? n * n : 0); // right reflectors, one per column
  const e = new Float64Array(n);
  // Right-reflector products: `work` collects this step's, `pend` holds the previous step's until its
  // update (A_j += tc[j] pend, j > k) is applied, which happens column by column inside the next step's
  // pass, fused with that step's left dot product: one pass over the trailing matrix per step.
  let work = new Float64Array(m);
  let pend = new Float64Array(m);
  const tc = new Float64Array(n);
  let pk = -1; // the step whose right update is pending, or -1
  const nct = Math.min(m - 1, n);
  const nrt = Math.max(0, Math.min(n - 2, m));
  for (let k = 0; k < Math.max(nct, nrt); k++) {
    const ck = k * m;
    if (pk >= 0) {
      // pk = k - 1: its update covers rows k..m-1 of the columns from k on; column k is needed whole.
      const tp = tc[k]!;
      for (let i = k; i < m; i++) A[ck + i] = A[ck + i]! + tp * pend[i]!;
    }
    if (k < nct) {
      let sk = norm2(A, ck + k, ck + m);
      if (sk !== 0) {
        if (A[ck + k]! < 0) sk = -sk;
        const inv = 1 / sk;
        for (let i = ck + k; i < ck + m; i++) A[i] = A[i]! * inv;
        A[ck + k] = A[ck + k]! + 1;
      }
      s[k] = -sk;
    }
    const left = k < nct && s[k] !== 0;
    // This step's right-reflector product work = A[k+1.., k+1..] e' is accumulated in the same pass as
    // the left reflector's update: with e' = e / ek + e_{k+1} (unit vector), work = (sum_j e_j A_j) / ek
    // + A_{k+1}, so the raw sum is what the pass collects.
    const right = k < nrt && k + 1 < m;
    if (right) work.fill(0, k + 1, m);
    for (let j = k + 1; j < n; j++) {
      const cj = j * m;
      let t = 0;
      if (pk >= 0) {
        const tp = tc[j]!;
        if (left) {
          let d0 = 0;
          let d1 = 0;
          let i = k;
          for (; i + 1 < m; i += 2) {
            const x0 = A[cj + i]! + tp * pend[i]!;
            const x1 = A[cj + i + 1]! + tp * pend[i + 1]!;
            A[cj + i] = x0;
            A[cj + i + 1] = x1;
            d0 += A[ck + i]! * x0;
            d1 += A[ck + i + 1]! * x1;
          }
          for (; i < m; i++) {
            const x0 = A[cj + i]! + tp * pend[i]!;
            A[cj + i] = x0;
            d0 += A[ck + i]! * x0;
          }
          t = -(d0 + d1) / A[ck + k]!;
        } else {
          for (let i = k; i < m; i++) A[cj + i] = A[cj + i]! + tp * pend[i]!;
        }
      } else if (left) {
        t = -dot(A, ck + k, A, cj + k, m - k) / A[ck + k]!;
      }
      if (left) {
        const ej = A[cj + k]! + t * A[ck + k]!;
        A[cj + k] = ej;
        if (right) {
          for (let i = k + 1; i < m; i++) {
            const x = A[cj + i]! + t * A[ck + i]!;
            A[cj + i] = x;
            work[i] = work[i]! + ej * x;
          }
        } else {
          for (let i = k + 1; i < m; i++) A[cj + i] = A[cj + i]! + t * A[ck + i]!;
        }
      } else if (right) {
        const ej = A[cj + k]!;
        for (let i = k + 1; i < m; i++) work[i] = work[i]! + ej * A[cj + i]!;
      }
      e[j] = A[cj + k]!;
    }
    pk = -1;
    if (k < nrt) {
      let ek = norm2(e, k + 1, n);
      if (ek !== 0) {
        if (e[k + 1]! < 0) ek = -ek;
        const inv = 1 / ek;
        for (let i = k + 1; i < n; i++) e[i] = e[i]! * inv;
        e[k + 1] = e[k + 1]! + 1;
      }
      e[k] = -ek;
      if (right && ek !== 0) {
        const inv = 1 / ek;
        const c1 = (k + 1) * m;
        for (let i = k + 1; i < m; i++) work[i] = work[i]! * inv + A[c1 + i]!;
        for (let j = k + 1; j < n; j++) tc[j] = -e[j]! / e[k + 1]!;
        pk = k;
        const w = pend;
        pend = work;
        work = w;
      }
      if (vectors) for (let i = k + 1; i < n; i++) VH[k * n + i] = e[i]!;
    }
  }
  if (pk >= 0) {
    for (let j = pk + 1; j < n; j++) {
      const tp = tc[j]!;
      const cj = j * m;
      for (let i = pk + 1; i < m; i++) A[cj + i] = A[cj + i]! + tp * pend[i]!;
    }
  }
  let p = Math.min(n, m + 1);
  if (nct < n) s[nct] = A[nct * m + nct]!;
  if (m < p) s[p - 1] = 0;
  if (nrt + 1 < p) e[nrt] = A[(p - 1) * m + nrt]!;
  e[p - 1] = 0;
  // U = H_0 ... H_{nct-1} [I; 0] and V = G_0 ... G_{nrt-1} from the reflectors left in A and V.
  // The QR iteration rotates columns: column-major copies keep each column contiguous. A sweep's
  // rotations are collected and applied afterwards as chains (rotateChain).
  const none = new Float64Array(0);
  const U = vectors ? transposeBuffer(formReflectorProduct(A, m, m, nu, nct, 0, s), m, nu) : none;
  const V = vectors ? transposeBuffer(formReflectorProduct(VH, n, n, n, nrt, 1, e), n, n) : none;
  const cv = new Float64Array(n);
  const sv = new Float64Array(n);
  const cu = new Float64Array(n);
  const su = new Float64Array(n);
  let iter = 0;
  const maxIter = 75 * n + 100;
  while (p > 0) {
    if (iter > maxIter)
      throw new FlatrankError('LINALG_FAILED', `SVD (JS) did not converge after ${iter} QR sweeps`, {
        context: { m, n },
      });
    let k: number;
    let kase: number;
    for (k = p - 2; k >= 0; k--) {
      if (Math.abs(e[k]!) <= TINY + EPS * (Math.abs(s[k]!) + Math.abs(s[k + 1]!))) {
        e[k] = 0;
        break;
      }
    }
    if (k === p - 2) {
      kase = 4;
    } else {
      let ks: number;
      for (ks = p - 1; ks > k; ks--) {
        const t = (ks !== p ? Math.abs(e[ks]!) : 0) + (ks !== k + 1 ? Math.abs(e[ks - 1]!) : 0);
        if (Math.abs(s[ks]!) <= TINY + EPS * t) {
          s[ks] = 0;
          break;
        }
      }
      if (ks === k) kase = 3;
      else if (ks === p - 1) kase = 1;
      else {
        kase = 2;
        k = ks;
      }
    }
    k++;
    if (kase === 1) {
      // Deflate a negligible s(p).
      let f = e[p - 2]!;
      e[p - 2] = 0;
      for (let j = p - 2; j >= k; j--) {
        const t = hypot(s[j]!, f);
        const cs = s[j]! / t;
        const sn = f / t;
        s[j] = t;
        if (j !== k) {
          f = -sn * e[j - 1]!;
          e[j - 1] = cs * e[j - 1]!;
        }
        if (vectors) rotateColumns(V, n, j, p - 1, cs, sn);
      }
    } else if (kase === 2) {
      // Split at a negligible s(k).
      let f = e[k - 1]!;
      e[k - 1] = 0;
      for (let j = k; j < p; j++) {
        const t = hypot(s[j]!, f);
        const cs = s[j]! / t;
        const sn = f / t;
        s[j] = t;
        f = -sn * e[j]!;
        e[j] = cs * e[j]!;
        if (vectors) rotateColumns(U, m, j, k - 1, cs, sn);
      }
    } else if (kase === 3) {
      // One implicit-shift QR step (Wilkinson-like shift from the trailing 2x2).
      const scale = Math.max(
        Math.abs(s[p - 1]!),
        Math.abs(s[p - 2]!),
        Math.abs(e[p - 2]!),
        Math.abs(s[k]!),
        Math.abs(e[k]!),
      );
      const sp = s[p - 1]! / scale;
      const spm1 = s[p - 2]! / scale;
      const epm1 = e[p - 2]! / scale;
      const sk = s[k]! / scale;
      const ek = e[k]! / scale;
      const b = ((spm1 + sp) * (spm1 - sp) + epm1 * epm1) / 2;
      const c = sp * epm1 * (sp * epm1);
      let shift = 0;
      if (b !== 0 || c !== 0) {
        shift = Math.sqrt(b * b + c);
        if (b < 0) shift = -shift;
        shift = c / (b + shift);
      }
      let f = (sk + sp) * (sk - sp) + shift;
      let g = sk * ek;
      for (let j = k; j < p - 1; j++) {
        let t = hypot(f, g);
        let cs = f / t;
        let sn = g / t;
        if (j !== k) e[j - 1] = t;
        f = cs * s[j]! + sn * e[j]!;
        e[j] = cs * e[j]! - sn * s[j]!;
        g = sn * s[j + 1]!;
        s[j + 1] = cs * s[j + 1]!;
        cv[j] = cs;
        sv[j] = sn;
        t = hypot(f, g);
        cs = f / t;
        sn = g / t;
        s[j] = t;
        f = cs * e[j]! + sn * s[j + 1]!;
        s[j + 1] = -sn * e[j]! + cs * s[j + 1]!;
        g = sn * e[j + 1]!;
        e[j + 1] = cs * e[j + 1]!;
        cu[j] = cs;
        su[j] = sn;
      }
      e[p - 2] = f;
      if (vectors) {
        rotateChain(V, n, k, p - 1, cv, sv);
        rotateChain(U, m, k, p - 1, cu, su);
      }
      iter++;
    } else {
      // Convergence: make s(k) non-negative. Sorting waits for the end (one permutation instead of
      // bubbling columns through U and V).
      if (s[k]! <= 0) {
        s[k] = s[k]! < 0 ? -s[k]! : 0;
        if (vectors) for (let i = k * n; i < (k + 1) * n; i++) V[i] = -V[i]!;
      }
      iter = 0;
      p--;
    }
  }
  // Descending order; a stable sort keeps ties in place.
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => s[y]! - s[x]! || x - y);
  const sOut = new Float64Array(n);
  if (!vectors) {
    for (let c = 0; c < n; c++) sOut[c] = s[order[c]!]!;
    return { u: none, s: sOut, v: none };
  }
  const uOut = new Float64Array(m * n);
  const vOut = new Float64Array(n * n);
  for (let c = 0; c < n; c++) sOut[c] = s[order[c]!]!;
  for (let c = 0; c < n; c++) {
    const uc = order[c]! * m;
    const vc = order[c]! * n;
    for (let i = 0; i < m; i++) uOut[i * n + c] = U[uc + i]!;
    for (let i = 0; i < n; i++) vOut[i * n + c] = V[vc + i]!;
  }
  return { u: uOut, s: sOut, v: vOut };
}

/**
 * Thin SVD of a row-major m x n matrix in pure JS: U (m x k), s (k, descending), V (n x k), row-major,
 * k = min(m, n). Wide matrices are handled through the transpose; clearly tall ones are first reduced
 * by QR (A = QR, R = U_R S V^T, U = Q U_R), which halves the work of the bidiagonalisation.
 */
export function svdJs(
  a: Float64Array,
  m: number,
  n: number,
  /** a may be destroyed (the caller's scratch copy): saves a copy of the matrix. */
  overwrite = false,
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  if (m < n) {
    const r = svdJs(transposeBuffer(a, m, n), n, m, true);
    return { u: r.v, s: r.s, v: r.u };
  }
  if (n === 0) return { u: new Float64Array(0), s: new Float64Array(0), v: new Float64Array(0) };
  if (m >= 2 * n && n > 1) {
    // U = Q [U_R; 0]: applying the reflectors costs less than forming Q and multiplying.
    const { r, panels } = householderJs(a, m, n, overwrite);
    const inner = gkrColumnMajor(transposeBuffer(r, n, n), n, n);
    const u = new Float64Array(m * n);
    u.set(inner.u);
    applyQ(panels, u, n);
    return { u, s: inner.s, v: inner.v };
  }
  return gkrColumnMajor(transposeBuffer(a, m, n), m, n);
}

/**
 * Singular values only (descending, k = min(m, n)) of a row-major m x n matrix in pure JS: the routes
 * of svdJs (transpose when wide, QR first when clearly tall) without forming Q, U or V. For a tall
 * m x n that is the QR's 2mn^2 - 2n^3/3 flops plus the n x n bidiagonalisation, against ~4x that for
 * the full SVD, and the values are those the full SVD computes (the same arithmetic on s and e).
 */
export function singularValuesJs(a: Float64Array, m: number, n: number, overwrite = false): Float64Array {
  if (m < n) return singularValuesJs(transposeBuffer(a, m, n), n, m, true);
  if (n === 0) return new Float64Array(0);
  if (m >= 2 * n && n > 1) {
    const { r } = householderJs(a, m, n, overwrite);
    return gkrColumnMajor(transposeBuffer(r, n, n), n, n, false).s;
  }
  return gkrColumnMajor(transposeBuffer(a, m, n), m, n, false).s;
}

/**
 * Symmetric eigendecomposition in pure JS: Householder tridiagonalisation and the implicit QL algorithm
 * (EISPACK tred2 / tql2, as in JAMA). Returns eigenvalues descending and the eigenvectors as the columns
 * of a row-major n x n matrix.
 */
export function eigSymJs(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const V = Float64Array.from(a); // row-major, V[i*n+j]
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 0) return { values: d, vectors: V };
  // tred2
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        V[j * n + i] = f;
        g = e[j]! + V[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j]! * d[k]!;
          e[k] = e[k]! + V[k * n + j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k * n + j] = V[k * n + j]! - (f * e[k]! + g * d[k]!);
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i]!;
    V[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1]! * V[k * n + j]!;
        for (let k = 0; k <= i; k++) V[k * n + j] = V[k * n + j]! - g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j]!;
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
  // tql2, rotating rows of Vt (= columns of V) so the inner loop is contiguous.
  const Vt = transposeBuffer(V, n, n);
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= EPS * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 30 * n + 100)
          throw new FlatrankError('LINALG_FAILED', 'symmetric eigendecomposition (JS) did not converge', {
            context: { n },
          });
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          const ri = i * n;
          const ri1 = ri + n;
          for (let k = 0; k < n; k++) {
            const hk = Vt[ri1 + k]!;
            const vk = Vt[ri + k]!;
            Vt[ri1 + k] = s * vk + c * hk;
            Vt[ri + k] = c * vk - s * hk;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > EPS * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
  // Descending order; row i of Vt is the eigenvector of d[i].
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y]! - d[x]!);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, col) => {
    values[col] = d[src]!;
    for (let k = 0; k < n; k++) vectors[k * n + col] = Vt[src * n + k]!;
  });
  return { values, vectors };
}

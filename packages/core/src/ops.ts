import { ShapeError, ValidationError } from '@flatrank/protocol';
import {
  Tensor,
  allocate,
  assertMatrix,
  checkShape,
  resultDType,
  shapeSize,
  type DType,
  type TypedArray,
} from './tensor.js';
import { getNative, withThreads } from './linalg/native.js';

/** Below this many multiply-adds the native call overhead outweighs BLAS. */
const NATIVE_GEMM_MIN_FLOPS = 32 * 32 * 32;

/** Row-major out-of-place transpose of an r x c buffer, in cache-friendly tiles. */
export function transposeBuffer<T extends TypedArray>(src: T, rows: number, cols: number, dst?: T): T {
  const out =
    dst ??
    ((src instanceof Float32Array ? new Float32Array(rows * cols) : new Float64Array(rows * cols)) as T);
  const B = 32;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) {
        const row = i * cols;
        for (let j = j0; j < j1; j++) out[j * rows + i] = src[row + j]!;
      }
    }
  }
  return out;
}

/**
 * C (m x n, zero-filled, row-major) += A (m x k) B (k x n), pure JS. Blocked over k and j so a panel of B
 * stays in cache, and unrolled four k's at a time so each C element is loaded and stored once per four
 * multiply-adds.
 */
function gemmJsKernel(a: TypedArray, b: TypedArray, c: TypedArray, m: number, n: number, k: number): void {
  const KB = 128;
  const NB = 512;
  for (let j0 = 0; j0 < n; j0 += NB) {
    const j1 = Math.min(n, j0 + NB);
    for (let k0 = 0; k0 < k; k0 += KB) {
      const k1 = Math.min(k, k0 + KB);
      for (let i = 0; i < m; i++) {
        const ci = i * n;
        const ai = i * k;
        let p = k0;
        for (; p + 3 < k1; p += 4) {
          const a0 = a[ai + p]!,
            a1 = a[ai + p + 1]!,
            a2 = a[ai + p + 2]!,
            a3 = a[ai + p + 3]!;
          const b0 = p * n,
            b1 = b0 + n,
            b2 = b1 + n,
            b3 = b2 + n;
          for (let j = j0; j < j1; j++) {
            c[ci + j] = c[ci + j]! + a0 * b[b0 + j]! + a1 * b[b1 + j]! + a2 * b[b2 + j]! + a3 * b[b3 + j]!;
          }
        }
        for (; p < k1; p++) {
          const a0 = a[ai + p]!;
          if (a0 === 0) continue;
          const b0 = p * n;
          for (let j = j0; j < j1; j++) c[ci + j] = c[ci + j]! + a0 * b[b0 + j]!;
        }
      }
    }
  }
}

/**
 * op(A) op(B) on raw row-major buffers; A is stored m x k (k x m when transA), B k x n (n x k when
 * transB). Uses BLAS when the addon is loaded and the product is big enough, unless `forceJs`.
 */
export function gemm(
  a: TypedArray,
  b: TypedArray,
  m: number,
  n: number,
  k: number,
  transA = false,
  transB = false,
  dtype: DType = 'float64',
  forceJs = false,
): TypedArray {
  const c = allocate(dtype, m * n);
  if (m === 0 || n === 0 || k === 0) return c;
  const native = forceJs ? null : getNative();
  if (native && m * n * k >= NATIVE_GEMM_MIN_FLOPS) {
    const conv = (x: TypedArray): TypedArray =>
      dtype === 'float32'
        ? x instanceof Float32Array
          ? x
          : Float32Array.from(x)
        : x instanceof Float64Array
          ? x
          : Float64Array.from(x);
    const work = m * n * k;
    const call = (): void =>
      native.gemm(transA, transB, m, n, k, conv(a), transA ? m : k, conv(b), transB ? k : n, c, n);
    // OpenBLAS already runs products under 2^18 on one thread; between that and 2^24 one thread is
    // also what we want (withThreads), and toggling costs ~5 us, so skip it for the small ones.
    if (work < 2 ** 18) call();
    else withThreads(native, work, call);
    return c;
  }
  const aa = transA ? transposeBuffer(a, k, m) : a;
  const bb = transB ? transposeBuffer(b, n, k) : b;
  gemmJsKernel(aa, bb, c, m, n, k);
  return c;
}

/** Matrix product of 2-D tensors: op(a) op(b), op = transpose when the option is set. */
export function matmul(
  a: Tensor,
  b: Tensor,
  opts: { transposeA?: boolean; transposeB?: boolean } = {},
): Tensor {
  assertMatrix(a, 'a');
  assertMatrix(b, 'b');
  const ta = opts.transposeA === true;
  const tb = opts.transposeB === true;
  const [ar, ac] = a.shape as [number, number];
  const [br, bc] = b.shape as [number, number];
  const m = ta ? ac : ar;
  const k = ta ? ar : ac;
  const kb = tb ? bc : br;
  const n = tb ? br : bc;
  if (k !== kb) {
    throw new ShapeError('b', `matmul: inner dimensions differ: op(a) is ${m}x${k}, op(b) is ${kb}x${n}`, {
      context: { a: [...a.shape], b: [...b.shape], transposeA: ta, transposeB: tb },
    });
  }
  const dtype = resultDType(a, b);
  return new Tensor(gemm(a.data, b.data, m, n, k, ta, tb, dtype), [m, n]);
}

/** Transpose of a 2-D tensor (a new buffer). */
export function transpose(a: Tensor): Tensor {
  assertMatrix(a, 'a');
  const [r, c] = a.shape as [number, number];
  return new Tensor(transposeBuffer(a.data, r, c), [c, r]);
}

function checkPerm(perm: readonly number[], rank: number): void {
  const seen = new Set<number>();
  if (!Array.isArray(perm) || perm.length !== rank) {
    throw new ShapeError('perm', `perm must list each of the ${rank} axes once, got [${String(perm)}]`);
  }
  for (const p of perm) {
    if (!Number.isInteger(p) || p < 0 || p >= rank || seen.has(p)) {
      throw new ShapeError('perm', `perm must be a permutation of 0..${rank - 1}, got [${perm.join(', ')}]`);
    }
    seen.add(p);
  }
}

/** Axis permutation: result.shape[i] = t.shape[perm[i]] (numpy.transpose semantics). */
export function permute(t: Tensor, perm: readonly number[]): Tensor {
  checkPerm(perm, t.rank);
  const rank = t.rank;
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= t.shape[i]!;
  }
  const outShape = perm.map((p) => t.shape[p]!);
  const out = allocate(t.dtype, t.size);
  if (t.size === 0) return new Tensor(out, outShape);
  if (rank === 2 && perm[0] === 1)
    return new Tensor(transposeBuffer(t.data, t.shape[0]!, t.shape[1]!), outShape);
  const strides = perm.map((p) => inStrides[p]!);
  // Odometer over the output; the innermost output axis is run as a strided copy loop.
  const last = rank - 1;
  const innerN = outShape[last] ?? 1;
  const innerS = rank > 0 ? strides[last]! : 0;
  const idx = new Array<number>(rank).fill(0);
  const src = t.data;
  let o = 0;
  let base = 0;
  const outer = t.size / innerN;
  for (let q = 0; q < outer; q++) {
    for (let j = 0, off = base; j < innerN; j++, off += innerS) out[o++] = src[off]!;
    for (let d = last - 1; d >= 0; d--) {
      idx[d]!++;
      base += strides[d]!;
      if (idx[d]! < outShape[d]!) break;
      base -= strides[d]! * outShape[d]!;
      idx[d] = 0;
    }
  }
  return new Tensor(out, outShape);
}

function checkMode(mode: number, rank: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode >= rank) {
    throw new ShapeError(
      'mode',
      `mode must be an integer in [0, ${rank - 1}] for a rank-${rank} tensor, got ${mode}`,
    );
  }
}

/** Kolda & Bader order of the axes in a mode-n unfolding: n first, then the others with the lowest fastest. */
function unfoldPerm(rank: number, mode: number): number[] {
  const perm = [mode];
  for (let k = rank - 1; k >= 0; k--) if (k !== mode) perm.push(k);
  return perm;
}

/**
 * Mode-n unfolding (Kolda & Bader 2009): shape [I_n, prod of the others]; element (i_1..i_N) goes to
 * column sum_{k != n} i_k J_k with J_k = prod_{m < k, m != n} I_m (the lowest other mode varies fastest).
 */
export function unfold(t: Tensor, mode: number): Tensor {
  checkMode(mode, t.rank);
  const rows = t.shape[mode]!;
  const p = permute(t, unfoldPerm(t.rank, mode));
  return p.reshape([rows, rows === 0 ? 0 : t.size / rows]);
}

/** Inverse of unfold: the tensor of `shape` whose mode-n unfolding is m. */
export function fold(m: Tensor, mode: number, shape: readonly number[]): Tensor {
  assertMatrix(m, 'm');
  checkShape(shape);
  checkMode(mode, shape.length);
  const rows = shape[mode]!;
  const size = shapeSize(shape);
  if (m.shape[0] !== rows || m.size !== size) {
    throw new ShapeError(
      'm',
      `fold: matrix [${m.shape.join(', ')}] is not a mode-${mode} unfolding of [${shape.join(', ')}] (expected [${rows}, ${rows === 0 ? 0 : size / rows}])`,
    );
  }
  const perm = unfoldPerm(shape.length, mode);
  const permutedShape = perm.map((p) => shape[p]!);
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return permute(m.reshape(permutedShape), inverse);
}

/**
 * Mode-n product t x_n M with M of shape [J, I_n]: I_n is replaced by J and
 * out[.., j, ..] = sum_i M[j, i] t[.., i, ..]. Computed as one GEMM per leading index, without unfolding.
 */
export function modeProduct(t: Tensor, m: Tensor, mode: number): Tensor {
  checkMode(mode, t.rank);
  assertMatrix(m, 'm');
  const In = t.shape[mode]!;
  const [J, mc] = m.shape as [number, number];
  if (mc !== In) {
    throw new ShapeError(
      'm',
      `modeProduct: matrix must be [J, ${In}] for mode ${mode} of [${t.shape.join(', ')}], got [${m.shape.join(', ')}]`,
    );
  }
  let L = 1;
  for (let i = 0; i < mode; i++) L *= t.shape[i]!;
  let R = 1;
  for (let i = mode + 1; i < t.rank; i++) R *= t.shape[i]!;
  const dtype = resultDType(t, m);
  const outShape = [...t.shape];
  outShape[mode] = J;
  const out = allocate(dtype, L * J * R);
  if (L === 1) {
    out.set(gemm(m.data, t.data, J, R, In, false, false, dtype));
  } else if (R === 1) {
    // Last mode: out (L x J) = t (L x In) M^T.
    out.set(gemm(t.data, m.data, L, J, In, false, true, dtype));
  } else {
    for (let l = 0; l < L; l++) {
      const slice = t.data.subarray(l * In * R, (l + 1) * In * R);
      out.set(gemm(m.data, slice, J, R, In, false, false, dtype), l * J * R);
    }
  }
  return new Tensor(out, outShape);
}

/**
 * Column-wise Kronecker product mats[0] ⊙ mats[1] ⊙ ... : every matrix has R columns; row index is
 * i_0 (I_1 ... I_last) + ... + i_last (the last matrix's index varies fastest), column r is
 * mats[0][:, r] ⊗ mats[1][:, r] ⊗ ... . With Kolda unfoldings, X_(n) = A_n (A_N ⊙ .. ⊙ A_{n+1} ⊙ A_{n-1} ⊙ .. ⊙ A_1)^T.
 */
export function khatriRao(mats: readonly Tensor[]): Tensor {
  if (!Array.isArray(mats) || mats.length === 0)
    throw new ValidationError('mats', 'khatriRao needs at least one matrix');
  mats.forEach((m, i) => assertMatrix(m, `mats[${i}]`));
  const R = mats[0]!.shape[1]!;
  mats.forEach((m, i) => {
    if (m.shape[1] !== R)
      throw new ShapeError(
        `mats[${i}]`,
        `khatriRao: every matrix needs ${R} columns, mats[${i}] has ${m.shape[1]}`,
      );
  });
  const dtype = resultDType(...mats);
  let cur: TypedArray = allocate(dtype, mats[0]!.size);
  cur.set(mats[0]!.data);
  let rows = mats[0]!.shape[0]!;
  for (let q = 1; q < mats.length; q++) {
    const b = mats[q]!.data;
    const br = mats[q]!.shape[0]!;
    const next = allocate(dtype, rows * br * R);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < br; j++) {
        const o = (i * br + j) * R;
        for (let r = 0; r < R; r++) next[o + r] = cur[i * R + r]! * b[j * R + r]!;
      }
    }
    cur = next;
    rows *= br;
  }
  return new Tensor(cur, [rows, R]);
}

/** Gram matrix a^T a (n x n for an m x n matrix). */
export function gram(a: Tensor): Tensor {
  assertMatrix(a, 'a');
  return matmul(a, a, { transposeA: true });
}

/** sqrt(sum of squares), accumulated in float64 with scaling so huge/tiny values neither overflow nor underflow. */
export function frobeniusNorm(t: Tensor): number {
  return norm2(t.data);
}

export function norm2(x: ArrayLike<number>, start = 0, end = x.length, stride = 1): number {
  let scale = 0;
  for (let i = start; i < end; i += stride) {
    const v = Math.abs(x[i]!);
    if (v > scale) scale = v;
  }
  if (scale === 0 || !Number.isFinite(scale)) return scale;
  let ssq = 0;
  const inv = 1 / scale;
  for (let i = start; i < end; i += stride) {
    const v = x[i]! * inv;
    ssq += v * v;
  }
  return scale * Math.sqrt(ssq);
}

/** ||reference - approx||_F / ||reference||_F (0 when both are zero, Infinity when only the reference is). */
export function relativeError(reference: Tensor, approx: Tensor): number {
  if (
    reference.size !== approx.size ||
    reference.shape.length !== approx.shape.length ||
    reference.shape.some((d, i) => d !== approx.shape[i])
  ) {
    throw new ShapeError(
      'approx',
      `relativeError: shapes differ: reference [${reference.shape.join(', ')}] vs approx [${approx.shape.join(', ')}]`,
    );
  }
  const diff = new Float64Array(reference.size);
  for (let i = 0; i < diff.length; i++) diff[i] = reference.data[i]! - approx.data[i]!;
  const num = norm2(diff);
  const den = norm2(reference.data);
  if (den === 0) return num === 0 ? 0 : Infinity;
  return num / den;
}

import { ShapeError, UnknownNameError, ValidationError, type LoweringOrder } from '@flatrank/protocol';
import { Tensor } from '@flatrank/core';

/**
 * A conv kernel in TensorFlow.js layout HWIO: [kh, kw, S, T] = [height, width, in channels, out
 * channels] (the method's d x d x S x T). Checked at runtime by `assertHwio`.
 */
export type HwioKernel = Tensor;
/** A PyTorch conv kernel, OIHW: [T, S, kh, kw]. Convert with `oihwToHwio`. */
export type OihwKernel = Tensor;
/** A dense (fully connected) kernel in TensorFlow.js layout [in, out]. */
export type DenseKernel = Tensor;
/** What the decomposers accept: a 4-D HWIO conv kernel or a 2-D [in, out] dense kernel. */
export type LayerKernel = HwioKernel | DenseKernel;

export const KERNEL_LAYOUTS = ['hwio', 'oihw'] as const;
export type KernelLayout = (typeof KERNEL_LAYOUTS)[number];

export interface KernelDims {
  kind: 'conv' | 'dense';
  kh: number;
  kw: number;
  /** Input channels S (dense: in). */
  s: number;
  /** Output channels T (dense: out). */
  t: number;
}

function describe(k: unknown): string {
  return k instanceof Tensor ? `[${k.shape.join(', ')}]` : typeof k;
}

/** Throws ShapeError unless k is a non-empty 4-D HWIO kernel [kh, kw, S, T]. */
export function assertHwio(k: unknown, field = 'kernel'): asserts k is HwioKernel {
  if (!(k instanceof Tensor) || k.rank !== 4 || k.shape.some((d) => d < 1))
    throw new ShapeError(
      field,
      `${field} must be a 4-D HWIO conv kernel [kh, kw, S, T] with positive dims, got ${describe(k)}`,
    );
}

/** Kernel dims of a 4-D HWIO conv kernel or a 2-D [in, out] dense kernel (ShapeError otherwise). */
export function kernelDims(k: unknown, field = 'kernel'): KernelDims {
  if (k instanceof Tensor && k.rank === 2 && k.shape.every((d) => d >= 1))
    return { kind: 'dense', kh: 1, kw: 1, s: k.shape[0]!, t: k.shape[1]! };
  if (k instanceof Tensor && k.rank === 4 && k.shape.every((d) => d >= 1)) {
    const [kh, kw, s, t] = k.shape as [number, number, number, number];
    return { kind: 'conv', kh, kw, s, t };
  }
  throw new ShapeError(
    field,
    `${field} must be a 4-D HWIO conv kernel [kh, kw, S, T] or a 2-D dense kernel [in, out] with positive dims, got ${describe(k)}`,
  );
}

/** kernelDims from a shape alone ([kh, kw, S, T] or [in, out]). */
export function kernelDimsFromShape(shape: readonly number[], field = 'kernelShape'): KernelDims {
  const ok = Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 1);
  if (ok && shape.length === 2) return { kind: 'dense', kh: 1, kw: 1, s: shape[0]!, t: shape[1]! };
  if (ok && shape.length === 4)
    return { kind: 'conv', kh: shape[0]!, kw: shape[1]!, s: shape[2]!, t: shape[3]! };
  throw new ShapeError(
    field,
    `${field} must be [kh, kw, S, T] (HWIO) or [in, out] with positive dims, got ${JSON.stringify(shape)}`,
  );
}

/** Permutes a tensor (small helper so decomposers need no core op beyond Tensor). */
function permute4(k: Tensor, perm: readonly [number, number, number, number]): Tensor {
  const src = k.shape;
  const dst = perm.map((p) => src[p]!);
  const srcStrides = [src[1]! * src[2]! * src[3]!, src[2]! * src[3]!, src[3]!, 1];
  const out = k.dtype === 'float32' ? new Float32Array(k.size) : new Float64Array(k.size);
  const st = perm.map((p) => srcStrides[p]!);
  let o = 0;
  for (let a = 0; a < dst[0]!; a++)
    for (let b = 0; b < dst[1]!; b++)
      for (let c = 0; c < dst[2]!; c++)
        for (let d = 0; d < dst[3]!; d++)
          out[o++] = k.data[a * st[0]! + b * st[1]! + c * st[2]! + d * st[3]!]!;
  return new Tensor(out, dst);
}

/** PyTorch OIHW [T, S, kh, kw] -> TF.js HWIO [kh, kw, S, T]. */
export function oihwToHwio(k: OihwKernel): HwioKernel {
  if (!(k instanceof Tensor) || k.rank !== 4)
    throw new ShapeError('kernel', `an OIHW kernel must be 4-D [T, S, kh, kw], got ${describe(k)}`);
  return permute4(k, [2, 3, 1, 0]);
}

/** TF.js HWIO [kh, kw, S, T] -> PyTorch OIHW [T, S, kh, kw]. */
export function hwioToOihw(k: HwioKernel): OihwKernel {
  assertHwio(k);
  return permute4(k, [3, 2, 0, 1]);
}

/** Reads a kernel given in either layout as HWIO (dense 2-D kernels pass through). */
export function toHwio(k: Tensor, layout: KernelLayout | string = 'hwio'): LayerKernel {
  if (!KERNEL_LAYOUTS.includes(layout as KernelLayout))
    throw new UnknownNameError('layout', String(layout), KERNEL_LAYOUTS);
  if (layout === 'oihw' && k.rank === 4) return oihwToHwio(k);
  return k;
}

/**
 * The 2-D matrices the SVD schemes factor. For K[i, j, s, t] (HWIO, row-major):
 * - lowered: T x (kh*kw*S). Order 'hwc' (default): W = reshape(K, [kh*kw*S, T])^T,
 *   W[t, (i*kw + j)*S + s] = K[i, j, s, t]; order 'chw': W[t, s*kh*kw + i*kw + j] = K[i, j, s, t]
 *   (dense: W = K^T, out x in, in both). This column order is what tiles follow.
 * - spatial: (kh*S) x (kw*T), M[i*S + s, j*T + t] = K[i, j, s, t]
 * - input:   S x (kh*kw*T),    M[s, (i*kw + j)*T + t] = K[i, j, s, t]
 */
export type MatrixScheme = 'lowered' | 'spatial' | 'input';

export function matrixShape(dims: KernelDims, scheme: MatrixScheme): [number, number] {
  const { kh, kw, s, t } = dims;
  switch (scheme) {
    case 'lowered':
      return [t, kh * kw * s];
    case 'spatial':
      return [kh * s, kw * t];
    case 'input':
      return [s, kh * kw * t];
  }
}

/** Index into the matrix of a scheme for kernel element (i, j, s, t). */
function matrixIndex(
  dims: KernelDims,
  scheme: MatrixScheme,
  i: number,
  j: number,
  s: number,
  t: number,
  order: LoweringOrder,
): number {
  const { kh, kw, s: S, t: T } = dims;
  switch (scheme) {
    case 'lowered':
      return t * (kh * kw * S) + (order === 'chw' ? s * kh * kw + i * kw + j : (i * kw + j) * S + s);
    case 'spatial':
      return (i * S + s) * (kw * T) + j * T + t;
    case 'input':
      return s * (kh * kw * T) + (i * kw + j) * T + t;
  }
}

/** The scheme's matrix of a kernel (float64); `order` applies to the lowered scheme only. */
export function kernelToMatrix(k: LayerKernel, scheme: MatrixScheme, order: LoweringOrder = 'hwc'): Tensor {
  const dims = kernelDims(k);
  const [rows, cols] = matrixShape(dims, scheme);
  const out = new Float64Array(rows * cols);
  const src = k.data;
  const { kh, kw, s: S, t: T } = dims;
  let o = 0;
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++)
      for (let s = 0; s < S; s++)
        for (let t = 0; t < T; t++) out[matrixIndex(dims, scheme, i, j, s, t, order)] = src[o++]!;
  return new Tensor(out, [rows, cols]);
}

/** Inverse of kernelToMatrix: the kernel (shape of `dims`) a scheme's matrix stands for. */
export function matrixToKernel(
  m: Tensor,
  dims: KernelDims,
  scheme: MatrixScheme,
  order: LoweringOrder = 'hwc',
): Tensor {
  const [rows, cols] = matrixShape(dims, scheme);
  if (m.rank !== 2 || m.shape[0] !== rows || m.shape[1] !== cols)
    throw new ShapeError(
      'matrix',
      `matrix must be [${rows}, ${cols}] for scheme ${scheme}, got [${m.shape.join(', ')}]`,
    );
  const { kh, kw, s: S, t: T } = dims;
  const out = new Float64Array(kh * kw * S * T);
  let o = 0;
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++)
      for (let s = 0; s < S; s++)
        for (let t = 0; t < T; t++) out[o++] = m.data[matrixIndex(dims, scheme, i, j, s, t, order)]!;
  return new Tensor(out, dims.kind === 'dense' ? [S, T] : [kh, kw, S, T]);
}

/** Casts a float64 result back to the input kernel's dtype. */
export function likeInput(result: Tensor, input: Tensor): Tensor {
  return input.dtype === result.dtype ? result : result.astype(input.dtype);
}

export function assertPositiveInt(v: unknown, field: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new ValidationError(field, `${field} must be a positive integer, got ${JSON.stringify(v)}`);
}

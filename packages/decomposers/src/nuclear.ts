/**
 * The nuclear norm of a kernel's SVD matrix and its subgradient, for nuclear-norm regularised
 * training (Trained Rank Pruning, Xu et al. 2020: lambda * sum ||W||_* over the target kernels,
 * minimised by stochastic subgradient descent).
 *
 * The subgradient of ||M||_* at M = U diag(s) V^T is U V^T plus anything of spectral norm <= 1 on
 * the null spaces. flatrank takes the minimum-norm one: singular values at float rounding level
 * count as zero and their (arbitrary) singular vectors are left out. Right after a projection a
 * kernel is exactly low-rank up to float32 rounding, and a step along the rounding noise's singular
 * vectors would give every discarded direction a singular value of lr * lambda again.
 */
import { Tensor, matmul, svd } from '@flatrank/core';
import type { LoweringOrder } from '@flatrank/protocol';
import {
  kernelDims,
  kernelDimsFromShape,
  kernelToMatrix,
  matrixToKernel,
  type LayerKernel,
  type MatrixScheme,
} from './kernel.js';
import type { SvdDecomposition } from './types.js';

export interface NuclearSubgradient {
  /** U_+ V_+^T over the singular values above the tolerance, in the kernel's layout and shape (float64). */
  subgradient: Tensor;
  /** ||M||_*: the sum of the singular values of the scheme's matrix. */
  nuclearNorm: number;
  /** Singular values above the tolerance (the numerical rank). */
  rank: number;
}

/** Machine epsilon of the kernel's storage: float32 kernels carry float32 rounding. */
function epsilonOf(k: Tensor): number {
  return k.dtype === 'float64' ? Number.EPSILON : 2 ** -23;
}

/** The first k columns of a rows x cols matrix. */
function leadingColumns(m: Tensor, k: number): Tensor {
  const [rows, cols] = m.shape as [number, number];
  if (k === cols) return m;
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = m.data[i * cols + j]!;
  return new Tensor(out, [rows, k]);
}

/** U V^T of the leading k singular pairs, mapped back to the kernel layout. */
function subgradientKernel(
  u: Tensor,
  v: Tensor,
  k: number,
  kernelShape: readonly number[],
  scheme: MatrixScheme,
  order: LoweringOrder,
): Tensor {
  const dims = kernelDimsFromShape(kernelShape);
  const m = matmul(leadingColumns(u, k), leadingColumns(v, k), { transposeB: true });
  return matrixToKernel(m, dims, scheme, order);
}

/**
 * The nuclear norm of the kernel's matrix under `scheme` (svd's reshapings: lowered T x kh*kw*S,
 * spatial kh*S x kw*T, input S x kh*kw*T; a dense kernel's lowered matrix is K^T) and its
 * minimum-norm subgradient. The tolerance is numpy's matrix_rank default, max(rows, cols) * eps *
 * s_1, with eps that of the kernel's dtype. A plain SVD does not depend on the lowered column
 * order, so none is taken.
 */
export function nuclearSubgradient(
  kernel: LayerKernel,
  scheme: MatrixScheme = 'lowered',
): NuclearSubgradient {
  kernelDims(kernel);
  const m = kernelToMatrix(kernel, scheme);
  const [rows, cols] = m.shape as [number, number];
  const res = svd(m);
  const tolerance = Math.max(rows, cols) * epsilonOf(kernel) * (res.S[0] ?? 0);
  let rank = 0;
  let nuclearNorm = 0;
  for (const s of res.S) {
    nuclearNorm += s;
    if (s > tolerance) rank += 1;
  }
  const subgradient =
    rank === 0
      ? new Tensor(new Float64Array(kernel.size), [...kernel.shape])
      : subgradientKernel(res.U, res.V, rank, kernel.shape, scheme, 'hwc');
  return { subgradient, nuclearNorm, rank };
}

/**
 * U_r V_r^T of a truncated SVD decomposition (svd method), in the kernel's layout: the subgradient
 * of the nuclear norm at the reconstruction it stands for, which TRP's authors add right after a
 * projection (no second SVD needed).
 */
export function truncatedSvdSubgradient(d: SvdDecomposition): Tensor {
  return subgradientKernel(d.U, d.V, d.U.shape[1]!, d.kernelShape, d.scheme!, d.order ?? 'hwc');
}

import { describe, expect, it } from 'vitest';
import { Tensor, svd } from '@flatrank/core';
import {
  decompose,
  kernelToMatrix,
  matrixToKernel,
  nuclearSubgradient,
  reconstruct,
  truncatedSvdSubgradient,
  type SvdDecomposition,
} from '../src/index.js';
import { maxAbsDiff, randn } from './helpers.js';

const dot = (a: Tensor, b: Tensor): number => a.data.reduce((s, x, i) => s + x * b.data[i]!, 0);

function nuclearNormOf(k: Tensor, scheme: 'lowered' | 'spatial' | 'input'): number {
  return svd(kernelToMatrix(k, scheme)).S.reduce((s, x) => s + x, 0);
}

/** A [3, 3, S, T] kernel whose `scheme` matrix is exactly rank r (float32 storage). */
function lowRankKernel(r: number, scheme: 'lowered' | 'spatial', seed: number): Tensor {
  const dims = { kind: 'conv' as const, kh: 3, kw: 3, s: 8, t: 6 };
  const rows = scheme === 'lowered' ? 6 : 24;
  const cols = scheme === 'lowered' ? 72 : 18;
  const a = randn([rows, r], seed);
  const b = randn([r, cols], seed + 1);
  const m = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let k = 0; k < r; k++)
      for (let j = 0; j < cols; j++) m[i * cols + j] += a.data[i * r + k]! * b.data[k * cols + j]!;
  return matrixToKernel(new Tensor(m, [rows, cols]), dims, scheme).astype('float32');
}

describe('nuclear-norm subgradient', () => {
  for (const scheme of ['lowered', 'spatial', 'input'] as const)
    it(`is the gradient of the nuclear norm of the ${scheme} matrix where the kernel has full rank`, () => {
      const k = randn([3, 3, 5, 4], 7);
      const { subgradient, nuclearNorm, rank } = nuclearSubgradient(k, scheme);
      expect(subgradient.shape).toEqual([3, 3, 5, 4]);
      expect(rank).toBe({ lowered: 4, spatial: 12, input: 5 }[scheme]);
      // Central differences along a random direction: d||K + tD||_* / dt = <U V^T, D>.
      const d = randn([3, 3, 5, 4], 8);
      const h = 1e-5;
      const plus = new Tensor(
        k.data.map((x, i) => x + h * d.data[i]!),
        k.shape,
      );
      const minus = new Tensor(
        k.data.map((x, i) => x - h * d.data[i]!),
        k.shape,
      );
      const numeric = (nuclearNormOf(plus, scheme) - nuclearNormOf(minus, scheme)) / (2 * h);
      expect(dot(subgradient, d)).toBeCloseTo(numeric, 5);
      expect(nuclearNorm).toBeCloseTo(nuclearNormOf(k, scheme), 10);
    });

  it('leaves out the rounding-level directions of an exactly low-rank float32 kernel', () => {
    for (const scheme of ['lowered', 'spatial'] as const) {
      const k = lowRankKernel(3, scheme, 11);
      const { subgradient, nuclearNorm, rank } = nuclearSubgradient(k, scheme);
      expect(rank).toBe(3);
      // <U V^T, U S V^T> = trace(S) = ||K||_*, and U V^T itself has rank 3 and spectral norm 1.
      expect(dot(subgradient, new Tensor(Float64Array.from(k.data), k.shape))).toBeCloseTo(nuclearNorm, 4);
      const s = svd(kernelToMatrix(subgradient, scheme)).S;
      expect(s[0]).toBeCloseTo(1, 10);
      expect(s[2]).toBeCloseTo(1, 10);
      expect(s[3]!).toBeLessThan(1e-10);
    }
  });

  it('is zero for a zero kernel', () => {
    const r = nuclearSubgradient(new Tensor(new Float32Array(3 * 3 * 2 * 2), [3, 3, 2, 2]));
    expect(r.rank).toBe(0);
    expect(r.nuclearNorm).toBe(0);
    expect(r.subgradient.data.every((x) => x === 0)).toBe(true);
  });

  it('takes a dense kernel through its lowered matrix K^T', () => {
    const k = randn([6, 4], 3);
    const { subgradient, rank } = nuclearSubgradient(k);
    expect(subgradient.shape).toEqual([6, 4]);
    expect(rank).toBe(4);
    const s = svd(subgradient).S;
    expect(Math.max(...s.map((x) => Math.abs(x - 1)))).toBeLessThan(1e-10);
  });

  it('after a truncation, U_r V_r^T of the decomposition is the subgradient at its reconstruction', () => {
    for (const scheme of ['lowered', 'spatial'] as const) {
      const k = randn([3, 3, 8, 6], 21).astype('float32');
      const d = decompose(k, {
        method: 'svd',
        scheme,
        rank: { kind: 'energy', threshold: 0.7 },
      }) as SvdDecomposition;
      expect(d.ranks[0]).toBeLessThan(scheme === 'lowered' ? 6 : 18);
      const fromFactors = truncatedSvdSubgradient(d);
      const fresh = nuclearSubgradient(reconstruct(d), scheme);
      expect(fresh.rank).toBe(d.ranks[0]);
      expect(maxAbsDiff(fromFactors, fresh.subgradient)).toBeLessThan(1e-5);
    }
  });
});

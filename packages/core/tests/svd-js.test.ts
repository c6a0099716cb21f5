// The pure-JS SVD's internal routes (wide through the transpose, tall through a blocked QR first when
// m >= 2n, Golub-Kahan-Reinsch directly otherwise) and the packed GEMM kernel under them.
import { describe, expect, it } from 'vitest';
import { Tensor, frobeniusNorm, linalgBackend, matmul, qr, svd } from '../src/index.js';
import { gemmAcc } from '../src/linalg/kernels.js';
import { maxAbsDiff, orthogonalityError, randomMatrix, reconstruct, withLinalgEnv } from './helpers.js';

const jsSvd = (a: Tensor, rank?: number) =>
  withLinalgEnv('js', () => svd(a, rank === undefined ? { method: 'js' } : { method: 'js', rank }));

function relativeReconstructionError(a: Tensor, r: { U: Tensor; S: Float64Array; V: Tensor }): number {
  const rec = reconstruct(r.U, r.S, r.V).data;
  return (
    frobeniusNorm(
      new Tensor(
        a.data.map((x, i) => x - rec[i]!),
        a.shape,
      ),
    ) / frobeniusNorm(a)
  );
}

/** Q1 diag(s) Q2^T with random orthonormal Q1 (m x k), Q2 (n x k). */
function withSpectrum(m: number, n: number, s: number[], seed: number): Tensor {
  const q1 = qr(randomMatrix(m, s.length, seed), { method: 'js' }).Q;
  const q2 = qr(randomMatrix(n, s.length, seed + 1), { method: 'js' }).Q;
  return reconstruct(q1, s, q2);
}

describe('gemmAcc (packed 4x4 kernel)', () => {
  /** C0 + alpha op(A) op(B) by the definition, on the same strided layout. */
  function reference(
    m: number,
    n: number,
    k: number,
    alpha: number,
    A: Float64Array,
    aOff: number,
    lda: number,
    aT: boolean,
    B: Float64Array,
    bOff: number,
    ldb: number,
    bT: boolean,
    C: Float64Array,
    cOff: number,
    ldc: number,
  ): Float64Array {
    const out = C.slice();
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++)
          acc +=
            (aT ? A[aOff + p * lda + i]! : A[aOff + i * lda + p]!) *
            (bT ? B[bOff + j * ldb + p]! : B[bOff + p * ldb + j]!);
        out[cOff + i * ldc + j] = out[cOff + i * ldc + j]! + alpha * acc;
      }
    return out;
  }

  // Edges (not multiples of 4), depth beyond one packed block (KC = 256), more rows than MC = 128 and
  // more columns than NC = 512, transposed operands, offsets and row strides wider than the operand.
  it.each([
    [1, 1, 1, false, false],
    [5, 7, 3, false, false],
    [13, 6, 300, true, false],
    [9, 11, 17, false, true],
    [130, 9, 5, true, true],
    [6, 515, 20, false, false],
  ])(
    '%ix%ix%i (transA %s, transB %s) accumulates alpha op(A) op(B) into a strided block',
    (m, n, k, aT, bT) => {
      const pad = 3;
      const lda = (aT ? m : k) + pad;
      const ldb = (bT ? k : n) + pad;
      const ldc = n + pad;
      const A = randomMatrix(1, 2 + lda * (aT ? k : m), 1).data as Float64Array;
      const B = randomMatrix(1, 5 + ldb * (bT ? n : k), 2).data as Float64Array;
      const C = randomMatrix(1, 1 + ldc * m, 3).data as Float64Array;
      const want = reference(m, n, k, -0.75, A, 2, lda, aT, B, 5, ldb, bT, C, 1, ldc);
      const got = C.slice();
      gemmAcc(m, n, k, -0.75, A, 2, lda, aT, B, 5, ldb, bT, got, 1, ldc);
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-12 * Math.sqrt(k));
      // Entries outside the m x n block (padding, before the offset) are untouched.
      for (let i = 0; i < got.length; i++) {
        const r = Math.floor((i - 1) / ldc);
        const c = (i - 1) % ldc;
        if (i < 1 || r >= m || c >= n) expect(got[i]).toBe(C[i]);
      }
    },
  );
});

describe('pure-JS SVD routes', () => {
  const nativeBuilt = linalgBackend() === 'native';

  // 2n - 1 rows: Golub-Kahan-Reinsch directly; 2n rows and more: QR first. Wide shapes go through the
  // transpose, so the same boundary holds for n = 2m. 40 and 70 columns span several QR and
  // reflector panels (16 wide up to 128 reflectors, 32 wide beyond: 140 columns); 576x64 is a lowered
  // 3x3x64 conv kernel.
  it.each([
    [79, 40],
    [80, 40],
    [40, 79],
    [40, 80],
    [576, 64],
    [64, 576],
    [70, 70],
    [33, 31],
    [150, 70],
    [300, 140],
    [140, 140],
  ])('%ix%i: reconstruction ~1e-15 relative, orthonormal U and V, S as LAPACK computes it', (m, n) => {
    const a = randomMatrix(m, n, m * 31 + n);
    const r = jsSvd(a);
    const k = Math.min(m, n);
    expect(r.U.shape).toEqual([m, k]);
    expect(r.V.shape).toEqual([n, k]);
    for (let i = 1; i < k; i++) expect(r.S[i - 1]!).toBeGreaterThanOrEqual(r.S[i]!);
    expect(relativeReconstructionError(a, r)).toBeLessThan(1e-13);
    expect(orthogonalityError(r.U)).toBeLessThan(1e-13);
    expect(orthogonalityError(r.V)).toBeLessThan(1e-13);
    if (nativeBuilt) {
      const ref = svd(a, { method: 'native' });
      expect(maxAbsDiff(r.S, ref.S) / ref.S[0]!).toBeLessThan(1e-13);
      // Same sign convention, so the vectors agree too (the spectrum of a gaussian is well separated).
      expect(maxAbsDiff(r.U.data, ref.U.data)).toBeLessThan(1e-8);
      expect(maxAbsDiff(r.V.data, ref.V.data)).toBeLessThan(1e-8);
    }
  });

  it('rank-deficient tall and wide matrices on the QR route: exactly r nonzero values, orthonormal U, V', () => {
    for (const [m, n] of [
      [120, 40],
      [40, 120],
    ] as const) {
      const a = matmul(randomMatrix(m, 5, 8), randomMatrix(5, n, 9));
      const r = jsSvd(a);
      expect(r.S[4]!).toBeGreaterThan(1e-2 * r.S[0]!);
      for (let i = 5; i < 40; i++) expect(r.S[i]!).toBeLessThan(1e-14 * r.S[0]!);
      expect(relativeReconstructionError(a, r)).toBeLessThan(1e-14);
      expect(orthogonalityError(r.U)).toBeLessThan(1e-13);
      expect(orthogonalityError(r.V)).toBeLessThan(1e-13);
    }
  });

  it('ill-conditioned (s from 1 to 1e-12) on both routes: every value to ~eps s_max, as LAPACK gets it', () => {
    const s = Array.from({ length: 30 }, (_, i) => Math.pow(10, (-12 * i) / 29));
    for (const [m, n] of [
      [200, 30],
      [45, 30],
    ] as const) {
      const a = withSpectrum(m, n, s, m);
      const r = jsSvd(a);
      s.forEach((x, i) => expect(Math.abs(r.S[i]! - x)).toBeLessThan(1e-14));
      expect(relativeReconstructionError(a, r)).toBeLessThan(1e-14);
      expect(orthogonalityError(r.U)).toBeLessThan(1e-13);
      expect(orthogonalityError(r.V)).toBeLessThan(1e-13);
      if (nativeBuilt) expect(maxAbsDiff(r.S, svd(a, { method: 'native' }).S)).toBeLessThan(1e-14);
    }
  });

  it('zero matrices, single rows and columns on the QR route', () => {
    const z = jsSvd(Tensor.zeros([64, 20]));
    expect(Array.from(z.S)).toEqual(new Array(20).fill(0));
    expect(orthogonalityError(z.U)).toBeLessThan(1e-15);
    expect(orthogonalityError(z.V)).toBeLessThan(1e-15);
    for (const [m, n] of [
      [1, 50],
      [50, 1],
    ] as const) {
      const a = randomMatrix(m, n, 3);
      const r = jsSvd(a);
      expect(r.S[0]).toBeCloseTo(frobeniusNorm(a), 13);
      expect(relativeReconstructionError(a, r)).toBeLessThan(1e-15);
      expect(orthogonalityError(r.U)).toBeLessThan(1e-15);
      expect(orthogonalityError(r.V)).toBeLessThan(1e-15);
    }
  });

  it('truncated SVD on the QR route keeps the leading triplets of the full one', () => {
    const a = randomMatrix(300, 70, 5);
    const full = jsSvd(a);
    const t = jsSvd(a, 10);
    expect(maxAbsDiff(t.S, full.S.slice(0, 10))).toBe(0);
    expect(t.U.shape).toEqual([300, 10]);
    for (let i = 0; i < 300; i++) for (let c = 0; c < 10; c++) expect(t.U.get(i, c)).toBe(full.U.get(i, c));
  });
});

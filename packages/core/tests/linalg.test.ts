import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import {
  BackendUnavailableError,
  RankError,
  ShapeError,
  UnknownNameError,
  ValidationError,
} from '@flatrank/protocol';
import {
  Tensor,
  eigSym,
  frobeniusNorm,
  linalgBackend,
  linalgInfo,
  lstsq,
  matmul,
  qr,
  svd,
  transpose,
} from '../src/index.js';
import { diag, maxAbsDiff, orthogonalityError, randomMatrix, reconstruct, withLinalgEnv } from './helpers.js';

/** Singular values of the 6x6 Hilbert matrix (= its eigenvalues; LAPACK dgesdd via numpy). */
const HILBERT6 = [
  1.6188998589243393, 0.2423608705752095, 0.016321521319875812, 0.0006157483541826381, 1.257075712264247e-5,
  1.0827994844117585e-7,
];

function hilbert(n: number): Tensor {
  const t = Tensor.zeros([n, n]);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t.data[i * n + j] = 1 / (i + j + 1);
  return t;
}

/** m x n matrix of exact rank r: (m x r gaussian)(r x n gaussian). */
function lowRank(m: number, n: number, r: number, seed: number): Tensor {
  return matmul(randomMatrix(m, r, seed), randomMatrix(r, n, seed + 100));
}

/** A matrix with prescribed singular values: Q1 diag(s) Q2^T with random orthonormal Q1, Q2. */
function withSpectrum(m: number, n: number, s: number[], seed: number): Tensor {
  const q1 = qr(randomMatrix(m, s.length, seed), { method: 'js' }).Q;
  const q2 = qr(randomMatrix(n, s.length, seed + 1), { method: 'js' }).Q;
  return reconstruct(q1, s, q2);
}

const nativeBuilt = linalgBackend() === 'native';

// Skipped when the whole run is forced onto the JS path (FLATRANK_LINALG=js npx vitest ...).
it.skipIf(process.env.FLATRANK_LINALG === 'js')(
  'builds and loads the native addon wherever OpenBLAS and LAPACKE headers are installed',
  () => {
    if (existsSync('/usr/include/lapacke.h')) expect(linalgInfo()).toMatchObject({ backend: 'native' });
    else expect(linalgInfo().backend).toBe('js');
  },
);

for (const backend of ['js', 'native'] as const) {
  describe.skipIf(backend === 'native' && !nativeBuilt)(`linear algebra, ${backend} path`, () => {
    const prev = process.env.FLATRANK_LINALG;
    beforeAll(() => {
      // The JS run also routes every matmul through JS, so it tests the fallback on its own.
      if (backend === 'js') process.env.FLATRANK_LINALG = 'js';
    });
    afterAll(() => {
      if (prev === undefined) delete process.env.FLATRANK_LINALG;
      else process.env.FLATRANK_LINALG = prev;
    });
    const method = backend;

    it('reports the backend in use', () => {
      expect(linalgBackend()).toBe(backend);
    });

    it.each([
      [7, 4],
      [4, 7],
      [30, 30],
      [64, 576],
      [200, 9],
      [300, 70], // tall: blocked QR first, several panels
    ])('SVD of a random %ix%i matrix: orthonormal U, V, descending S, exact reconstruction', (m, n) => {
      const a = randomMatrix(m, n, m * 1000 + n);
      const { U, S, V } = svd(a, { method });
      const k = Math.min(m, n);
      expect(U.shape).toEqual([m, k]);
      expect(V.shape).toEqual([n, k]);
      expect(S.length).toBe(k);
      for (let i = 1; i < k; i++) expect(S[i - 1]!).toBeGreaterThanOrEqual(S[i]!);
      expect(orthogonalityError(U)).toBeLessThan(1e-12);
      expect(orthogonalityError(V)).toBeLessThan(1e-12);
      expect(frobeniusNorm(a.clone()) - Math.hypot(...S)).toBeLessThan(1e-10);
      const rec = reconstruct(U, S, V);
      expect(maxAbsDiff(rec.data, a.data)).toBeLessThan(1e-11);
    });

    it('SVD edge cases: zero, 1x1, single row and column, empty, entries near 1e-300 and 1e300', () => {
      const z = svd(Tensor.zeros([5, 3]), { method });
      expect(Array.from(z.S)).toEqual([0, 0, 0]);
      expect(orthogonalityError(z.U)).toBeLessThan(1e-15);
      expect(Array.from(svd(Tensor.from([[-2]]), { method }).S)).toEqual([2]);
      expect(svd(Tensor.from([[3, 4, 0]]), { method }).S[0]).toBeCloseTo(5, 14);
      const col = svd(Tensor.from([[3], [4]]), { method });
      expect(Array.from(col.U.data).map((x) => Math.abs(x))).toEqual(
        [0.6, 0.8].map((x) => expect.closeTo(x, 14)),
      );
      const e = svd(Tensor.zeros([0, 3]), { method });
      expect([e.U.shape, e.V.shape, e.S.length]).toEqual([[0, 0], [3, 0], 0]);
      // [[1, 2], [3, 4]] has singular values sqrt(15 +- sqrt(221)).
      const s1 = Math.sqrt(15 + Math.sqrt(221));
      const s2 = Math.sqrt(15 - Math.sqrt(221));
      for (const scale of [1e-300, 1e300]) {
        const { S } = svd(
          Tensor.from([
            [1 * scale, 2 * scale],
            [3 * scale, 4 * scale],
          ]),
          { method },
        );
        expect(S[0]! / scale).toBeCloseTo(s1, 12);
        expect(S[1]! / scale).toBeCloseTo(s2, 12);
      }
    });

    it('SVD of a diagonal matrix gives |d| sorted, with signed unit vectors', () => {
      const { U, S, V } = svd(diag([3, -5, 1, 0]), { method });
      expect(Array.from(S)).toEqual([5, 3, 1, 0]);
      // sigma_0 = 5 from d_1 = -5: u and v are +-e_1 with opposite signs.
      expect(Math.abs(U.get(1, 0))).toBeCloseTo(1, 14);
      expect(U.get(1, 0) * V.get(1, 0)).toBeCloseTo(-1, 14);
    });

    it('SVD of a rank-deficient matrix has exactly r nonzero singular values', () => {
      const a = lowRank(12, 9, 3, 7);
      const { S, U, V } = svd(a, { method });
      expect(S[2]!).toBeGreaterThan(1e-2);
      for (let i = 3; i < 9; i++) expect(S[i]!).toBeLessThan(1e-13 * S[0]!);
      expect(orthogonalityError(U)).toBeLessThan(1e-12);
      expect(orthogonalityError(V)).toBeLessThan(1e-12);
    });

    it('SVD of the 6x6 Hilbert matrix matches LAPACK within the backward-stable bound ~ eps sigma_max', () => {
      const { S } = svd(hilbert(6), { method });
      // Absolute error 1e-14 (= 1e-14 relative at the top, ~1e-7 relative at sigma = 1e-7).
      HILBERT6.forEach((s, i) => expect(Math.abs(S[i]! - s)).toBeLessThan(1e-14));
    });

    it('truncated SVD error equals the Eckart-Young optimum sqrt(sum of discarded sigma^2)', () => {
      const a = randomMatrix(40, 25, 3);
      const full = svd(a, { method }).S;
      for (const r of [1, 5, 24]) {
        const t = svd(a, { method, rank: r });
        expect(t.U.shape).toEqual([40, r]);
        expect(t.S.length).toBe(r);
        const rec = reconstruct(t.U, t.S, t.V).data;
        const err = frobeniusNorm(
          new Tensor(
            a.data.map((x, i) => x - rec[i]!),
            a.shape,
          ),
        );
        const optimum = Math.sqrt(full.slice(r).reduce((s, x) => s + x * x, 0));
        expect(Math.abs(err - optimum) / optimum).toBeLessThan(1e-10);
      }
    });

    it('randomized SVD is seeded and reaches the Eckart-Young optimum on a decaying spectrum', () => {
      const s = Array.from({ length: 60 }, (_, i) => Math.pow(0.8, i));
      const a = withSpectrum(150, 90, s, 11);
      const r = 10;
      const t = svd(a, { method: 'randomized', rank: r, seed: 5 });
      const again = svd(a, { method: 'randomized', rank: r, seed: 5 });
      expect(Array.from(again.S)).toEqual(Array.from(t.S));
      for (let i = 0; i < r; i++) expect(Math.abs(t.S[i]! - s[i]!) / s[i]!).toBeLessThan(1e-6);
      const rec = reconstruct(t.U, t.S, t.V);
      const err = frobeniusNorm(
        new Tensor(
          a.data.map((x, i) => x - rec.data[i]!),
          a.shape,
        ),
      );
      const optimum = Math.sqrt(s.slice(r).reduce((q, x) => q + x * x, 0));
      expect(err / optimum).toBeLessThan(1 + 1e-6);
      expect(orthogonalityError(t.U)).toBeLessThan(1e-12);
      expect(orthogonalityError(t.V)).toBeLessThan(1e-12);
    });

    it('keeps float32 inputs float32 in U and V', () => {
      const a = randomMatrix(8, 5, 2).astype('float32');
      const { U, V, S } = svd(a, { method });
      expect(U.dtype).toBe('float32');
      expect(V.dtype).toBe('float32');
      expect(S).toBeInstanceOf(Float64Array);
      expect(maxAbsDiff(reconstruct(U.astype('float64'), S, V.astype('float64')).data, a.data)).toBeLessThan(
        1e-5,
      );
    });

    it('eigSym of a 2x2 and of the path-graph Laplacian (analytic spectrum)', () => {
      const e = eigSym(
        Tensor.from([
          [2, 1],
          [1, 2],
        ]),
        { method },
      );
      expect(e.values[0]).toBeCloseTo(3, 14);
      expect(e.values[1]).toBeCloseTo(1, 14);
      expect(Math.abs(e.vectors.get(0, 0))).toBeCloseTo(Math.SQRT1_2, 14);
      expect(e.vectors.get(0, 1) * e.vectors.get(1, 1)).toBeCloseTo(-0.5, 14);
      // Tridiagonal (2, -1): eigenvalues 2 - 2 cos(k pi / (n + 1)), k = 1..n.
      const n = 12;
      const l = Tensor.zeros([n, n]);
      for (let i = 0; i < n; i++) {
        l.set(2, i, i);
        if (i + 1 < n) {
          l.set(-1, i, i + 1);
          l.set(-1, i + 1, i);
        }
      }
      const { values, vectors } = eigSym(l, { method });
      const expected = Array.from(
        { length: n },
        (_, k) => 2 - 2 * Math.cos(((k + 1) * Math.PI) / (n + 1)),
      ).sort((x, y) => y - x);
      expect(maxAbsDiff(values, expected)).toBeLessThan(1e-13);
      expect(orthogonalityError(vectors)).toBeLessThan(1e-13);
      expect(maxAbsDiff(matmul(l, vectors).data, matmul(vectors, diag(values)).data)).toBeLessThan(1e-13);
    });

    it('eigSym of a random Gram matrix reproduces the squared singular values', () => {
      const a = randomMatrix(50, 20, 9);
      const { values } = eigSym(matmul(a, a, { transposeA: true }), { method });
      const { S } = svd(a, { method });
      expect(
        maxAbsDiff(
          values,
          S.map((x) => x * x),
        ),
      ).toBeLessThan(1e-10);
    });

    it.each([
      [9, 5],
      [5, 9],
      [6, 6],
      [100, 70], // several QR panels
      [40, 90],
    ])('QR of a %ix%i matrix: orthonormal Q, upper-triangular R, A = QR', (m, n) => {
      const a = randomMatrix(m, n, 4);
      const { Q, R } = qr(a, { method });
      const k = Math.min(m, n);
      expect(Q.shape).toEqual([m, k]);
      expect(R.shape).toEqual([k, n]);
      expect(orthogonalityError(Q)).toBeLessThan(1e-13);
      for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) expect(R.get(i, j)).toBe(0);
      expect(maxAbsDiff(matmul(Q, R).data, a.data)).toBeLessThan(1e-13);
    });

    it('lstsq: an overdetermined line fit solved by hand, a vector right-hand side', () => {
      // Normal equations [[3,3],[3,5]] x = [7,10] give x = (5/6, 3/2).
      const a = Tensor.from([
        [1, 0],
        [1, 1],
        [1, 2],
      ]);
      const x = lstsq(a, Tensor.from([1, 2, 4]), { method });
      expect(x.shape).toEqual([2]);
      expect(x.data[0]).toBeCloseTo(5 / 6, 13);
      expect(x.data[1]).toBeCloseTo(1.5, 13);
    });

    it('lstsq: residual orthogonal to the columns (several right-hand sides), min-norm when wide or rank deficient', () => {
      const a = randomMatrix(30, 6, 8);
      const b = randomMatrix(30, 3, 9);
      const x = lstsq(a, b, { method });
      expect(x.shape).toEqual([6, 3]);
      const ax = matmul(a, x).data;
      const resid = new Tensor(
        b.data.map((v, i) => v - ax[i]!),
        b.shape,
      );
      expect(maxAbsDiff(matmul(a, resid, { transposeA: true }).data, new Float64Array(18))).toBeLessThan(
        1e-12,
      );
      // Wide: the minimum-norm solution x = A^T (A A^T)^{-1} b solves exactly and lies in the row space.
      const w = randomMatrix(3, 7, 10);
      const bw = Tensor.from([1, -2, 0.5]);
      const xw = lstsq(w, bw, { method });
      expect(maxAbsDiff(matmul(w, xw.reshape([7, 1])).data, bw.data)).toBeLessThan(1e-12);
      const coeff = lstsq(transpose(w), xw, { method });
      expect(maxAbsDiff(matmul(transpose(w), coeff.reshape([3, 1])).data, xw.data)).toBeLessThan(1e-12);
      // Rank deficient (duplicate column): the minimum-norm solution splits the weight equally.
      const d = Tensor.from([
        [1, 1, 0],
        [1, 1, 1],
        [1, 1, 2],
        [1, 1, 3],
      ]);
      const xd = lstsq(d, Tensor.from([1, 3, 5, 7]), { method });
      expect(xd.data[0]).toBeCloseTo(0.5, 10);
      expect(xd.data[1]).toBeCloseTo(0.5, 10);
      expect(xd.data[2]).toBeCloseTo(2, 10);
    });
  });
}

describe('native and JS paths agree', () => {
  it.skipIf(!nativeBuilt)('on singular values and vectors of a 70x300 matrix', () => {
    const a = randomMatrix(70, 300, 21);
    const n = svd(a, { method: 'native' });
    const j = withLinalgEnv('js', () => svd(a, { method: 'js' }));
    expect(maxAbsDiff(n.S, j.S) / n.S[0]!).toBeLessThan(1e-12);
    // Deterministic sign convention: vectors agree, not just up to sign.
    expect(maxAbsDiff(n.U.data, j.U.data)).toBeLessThan(1e-9);
    expect(maxAbsDiff(n.V.data, j.V.data)).toBeLessThan(1e-9);
  });
});

describe('bad inputs', () => {
  it('raise typed errors that name the field', () => {
    expect(() => svd(Tensor.zeros([2, 2, 2]))).toThrow(ShapeError);
    expect(() => svd(randomMatrix(4, 3), { rank: 0 })).toThrow(RankError);
    expect(() => svd(randomMatrix(4, 3), { rank: 4 })).toThrow(/\[1, 3\]/);
    expect(() => svd(randomMatrix(4, 3), { rank: 1.5 })).toThrow(RankError);
    expect(() => svd(randomMatrix(4, 3), { method: 'lapack' as never })).toThrow(UnknownNameError);
    expect(() => svd(randomMatrix(4, 3), { method: 'randomized' })).toThrow(RankError);
    expect(() => svd(randomMatrix(4, 3), { rank: 2, method: 'randomized', oversample: -1 })).toThrow(
      ValidationError,
    );
    expect(() =>
      svd(
        Tensor.from([
          [1, NaN],
          [0, 1],
        ]),
      ),
    ).toThrow(/non-finite/);
    expect(() =>
      eigSym(
        Tensor.from([
          [1, 2],
          [3, 4],
        ]),
      ),
    ).toThrow(/symmetric/);
    expect(() => eigSym(Tensor.zeros([2, 3]))).toThrow(ShapeError);
    expect(() => lstsq(Tensor.zeros([3, 2]), Tensor.zeros([4]))).toThrow(ShapeError);
    expect(() => withLinalgEnv('js', () => svd(randomMatrix(3, 3), { method: 'native' }))).toThrow(
      BackendUnavailableError,
    );
  });
});

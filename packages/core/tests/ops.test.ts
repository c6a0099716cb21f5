import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShapeError, ValidationError } from '@flatrank/protocol';
import {
  Tensor,
  fold,
  frobeniusNorm,
  gram,
  khatriRao,
  matmul,
  modeProduct,
  permute,
  relativeError,
  transpose,
  unfold,
  linalgBackend,
} from '../src/index.js';
import { maxAbsDiff, naiveMatmul, randomMatrix } from './helpers.js';
import { createRng } from '../src/random.js';

/** Kolda & Bader (2009) example: X in R^{3x4x2}, X(i,j,k) = 1 + i + 3j + 12k (0-based), values 1..24. */
function koldaExample(): Tensor {
  const t = Tensor.zeros([3, 4, 2]);
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 4; j++) for (let k = 0; k < 2; k++) t.set(1 + i + 3 * j + 12 * k, i, j, k);
  return t;
}

function randomTensor(shape: number[], seed: number): Tensor {
  const rng = createRng(seed);
  const t = Tensor.zeros(shape);
  for (let i = 0; i < t.size; i++) t.data[i] = rng.normal();
  return t;
}

for (const backend of ['js', 'native'] as const) {
  describe(`matmul (${backend} path)`, () => {
    const prev = process.env.FLATRANK_LINALG;
    beforeAll(() => {
      if (backend === 'js') process.env.FLATRANK_LINALG = 'js';
    });
    afterAll(() => {
      if (prev === undefined) delete process.env.FLATRANK_LINALG;
      else process.env.FLATRANK_LINALG = prev;
    });

    it.skipIf(backend === 'native' && linalgBackend() !== 'native')(
      'multiplies a hand example and honours transposes',
      () => {
        const a = Tensor.from([
          [1, 2],
          [3, 4],
        ]);
        const b = Tensor.from([
          [5, 6],
          [7, 8],
        ]);
        expect(Array.from(matmul(a, b).data)).toEqual([19, 22, 43, 50]);
        expect(Array.from(matmul(a, b, { transposeA: true }).data)).toEqual([26, 30, 38, 44]);
        expect(Array.from(matmul(a, b, { transposeB: true }).data)).toEqual([17, 23, 39, 53]);
      },
    );

    it.skipIf(backend === 'native' && linalgBackend() !== 'native')(
      'agrees with the triple-loop definition on odd sizes past the blocking',
      () => {
        const a = randomMatrix(37, 301, 1);
        const b = randomMatrix(301, 45, 2);
        const ref = naiveMatmul(a, b);
        expect(maxAbsDiff(matmul(a, b).data, ref.data)).toBeLessThan(1e-10);
        expect(maxAbsDiff(matmul(transpose(a), b, { transposeA: true }).data, ref.data)).toBeLessThan(1e-10);
        expect(maxAbsDiff(matmul(a, transpose(b), { transposeB: true }).data, ref.data)).toBeLessThan(1e-10);
        const f = matmul(a.astype('float32'), b.astype('float32'));
        expect(f.dtype).toBe('float32');
        expect(maxAbsDiff(f.data, ref.data)).toBeLessThan(1e-3);
      },
    );
  });
}

describe('tensor ops', () => {
  it('rejects mismatched and non-2-D matmul operands', () => {
    expect(() => matmul(Tensor.zeros([2, 3]), Tensor.zeros([2, 3]))).toThrow(ShapeError);
    expect(() => matmul(Tensor.zeros([2, 3, 1]), Tensor.zeros([3, 1]))).toThrow(/2-D/);
  });

  it('transpose and permute follow numpy.transpose', () => {
    const t = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(transpose(t).toArray()).toEqual([
      [1, 4],
      [2, 5],
      [3, 6],
    ]);
    const x = randomTensor([2, 3, 4, 5], 3);
    const p = permute(x, [2, 0, 3, 1]);
    expect(p.shape).toEqual([4, 2, 5, 3]);
    for (let a = 0; a < 2; a++)
      for (let b = 0; b < 3; b++)
        for (let c = 0; c < 4; c++)
          for (let d = 0; d < 5; d++) {
            expect(p.get(c, a, d, b)).toBe(x.get(a, b, c, d));
          }
    expect(() => permute(x, [0, 1, 1, 2])).toThrow(ShapeError);
  });

  it('unfolds in the Kolda & Bader order (their 3x4x2 example)', () => {
    const x = koldaExample();
    expect(unfold(x, 0).toArray()).toEqual([
      [1, 4, 7, 10, 13, 16, 19, 22],
      [2, 5, 8, 11, 14, 17, 20, 23],
      [3, 6, 9, 12, 15, 18, 21, 24],
    ]);
    expect(unfold(x, 1).toArray()).toEqual([
      [1, 2, 3, 13, 14, 15],
      [4, 5, 6, 16, 17, 18],
      [7, 8, 9, 19, 20, 21],
      [10, 11, 12, 22, 23, 24],
    ]);
    expect(unfold(x, 2).toArray()).toEqual([
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
      [13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
    ]);
  });

  it('fold inverts unfold along every mode', () => {
    const x = randomTensor([3, 4, 2, 5], 4);
    for (let n = 0; n < 4; n++) {
      const back = fold(unfold(x, n), n, x.shape);
      expect(back.shape).toEqual(x.shape);
      expect(Array.from(back.data)).toEqual(Array.from(x.data));
    }
    expect(() => unfold(x, 4)).toThrow(ShapeError);
    expect(() => fold(unfold(x, 0), 1, x.shape)).toThrow(ShapeError);
  });

  it('mode-n product matches its definition and Y_(n) = M X_(n)', () => {
    const x = randomTensor([3, 4, 5], 5);
    for (let n = 0; n < 3; n++) {
      const In = x.shape[n]!;
      const m = randomMatrix(2, In, 10 + n);
      const y = modeProduct(x, m, n);
      const shape = [...x.shape];
      shape[n] = 2;
      expect(y.shape).toEqual(shape);
      // Definition: y[.., j, ..] = sum_i m[j, i] x[.., i, ..].
      for (let a = 0; a < shape[0]!; a++)
        for (let b = 0; b < shape[1]!; b++)
          for (let c = 0; c < shape[2]!; c++) {
            const idx = [a, b, c];
            let s = 0;
            for (let i = 0; i < In; i++) {
              const xi = [...idx];
              xi[n] = i;
              s += m.get(idx[n]!, i) * x.get(...xi);
            }
            expect(y.get(a, b, c)).toBeCloseTo(s, 12);
          }
      expect(maxAbsDiff(unfold(y, n).data, matmul(m, unfold(x, n)).data)).toBeLessThan(1e-12);
    }
    expect(() => modeProduct(x, randomMatrix(2, 5, 1), 0)).toThrow(ShapeError);
  });

  it('Khatri-Rao of a hand example, and the CP identity X_(0) = A (C ⊙ B)^T', () => {
    const a = Tensor.from([
      [1, 2],
      [3, 4],
    ]);
    const b = Tensor.from([
      [5, 6],
      [7, 8],
      [9, 10],
    ]);
    expect(khatriRao([a, b]).toArray()).toEqual([
      [5, 12],
      [7, 16],
      [9, 20],
      [15, 24],
      [21, 32],
      [27, 40],
    ]);
    // A rank-2 CP tensor x[i,j,k] = sum_r A[i,r] B[j,r] C[k,r].
    const A = randomMatrix(3, 2, 1);
    const B = randomMatrix(4, 2, 2);
    const C = randomMatrix(5, 2, 3);
    const x = Tensor.zeros([3, 4, 5]);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 4; j++)
        for (let k = 0; k < 5; k++) {
          let s = 0;
          for (let r = 0; r < 2; r++) s += A.get(i, r) * B.get(j, r) * C.get(k, r);
          x.set(s, i, j, k);
        }
    const kr = khatriRao([C, B]);
    expect(maxAbsDiff(unfold(x, 0).data, matmul(A, kr, { transposeB: true }).data)).toBeLessThan(1e-12);
    expect(() => khatriRao([a, Tensor.zeros([2, 3])])).toThrow(ShapeError);
    expect(() => khatriRao([])).toThrow(ValidationError);
  });

  it('gram, Frobenius norm and relative error', () => {
    const a = Tensor.from([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    expect(gram(a).toArray()).toEqual([
      [35, 44],
      [44, 56],
    ]);
    expect(frobeniusNorm(Tensor.from([3, 4]))).toBe(5);
    expect(frobeniusNorm(Tensor.from([3e200, 4e200]))).toBeCloseTo(5e200, -190);
    expect(relativeError(Tensor.from([3, 4]), Tensor.from([3, 4]))).toBe(0);
    expect(relativeError(Tensor.from([3, 4]), Tensor.from([0, 0]))).toBe(1);
    expect(relativeError(Tensor.from([0, 0]), Tensor.from([0, 0]))).toBe(0);
    expect(() => relativeError(Tensor.zeros([2]), Tensor.zeros([3]))).toThrow(ShapeError);
  });
});

// singularValues (no U, V): LAPACK dgesdd jobz='N' natively, the JS SVD's reductions without vectors
// in JS. Checked against the full SVD and against matrices of known spectrum, on every route of the
// JS path (wide, tall through QR, tall without) and on ill-conditioned and rank-deficient matrices.
import { describe, expect, it } from 'vitest';
import { ShapeError, UnknownNameError, ValidationError } from '@flatrank/protocol';
import { Tensor, evbmf, linalgBackend, matmul, qr, singularValues, svd } from '../src/index.js';
import { randomMatrix, reconstruct, withLinalgEnv } from './helpers.js';

const nativeBuilt = linalgBackend() === 'native';

/** Q1 diag(s) Q2^T with random orthonormal Q1 (m x k), Q2 (n x k). */
function withSpectrum(m: number, n: number, s: number[], seed: number): Tensor {
  const q1 = qr(randomMatrix(m, s.length, seed), { method: 'js' }).Q;
  const q2 = qr(randomMatrix(n, s.length, seed + 1), { method: 'js' }).Q;
  return reconstruct(q1, s, q2);
}

/** max_i |s_i - ref_i| / ref_0: the accuracy a backward-stable SVD guarantees. */
function errorRelativeToLargest(s: Float64Array, ref: ArrayLike<number>): number {
  expect(s.length).toBe(ref.length);
  let d = 0;
  for (let i = 0; i < s.length; i++) d = Math.max(d, Math.abs(s[i]! - ref[i]!));
  return ref[0]! === 0 ? d : d / ref[0]!;
}

function isDescending(s: Float64Array): boolean {
  for (let i = 1; i < s.length; i++) if (!(s[i - 1]! >= s[i]!)) return false;
  return true;
}

// Each shape takes one route of the JS path (the QR-first route needs m >= 2n) or is a ResNet
// lowered kernel ([T, kh kw S]: 16x144, 32x288, 64x576).
const SHAPES: Array<[number, number]> = [
  [40, 25], // tall, m < 2n: bidiagonalised directly
  [90, 20], // tall, m >= 2n: QR first
  [20, 90], // wide: through the transpose
  [33, 33],
  [16, 144],
  [32, 288],
  [64, 576],
  [1, 7],
  [7, 1],
];

for (const method of ['js', 'native'] as const) {
  describe.skipIf(method === 'native' && !nativeBuilt)(`singularValues, ${method} path`, () => {
    const run = <T>(fn: () => T): T => (method === 'js' ? withLinalgEnv('js', fn) : fn());

    it.each(SHAPES)('matches the full SVD of a gaussian %ix%i to 1e-13 of S[0]', (m, n) => {
      const a = randomMatrix(m, n, m * 31 + n);
      const s = run(() => singularValues(a, { method }));
      const full = run(() => svd(a, { method }).S);
      expect(s).toBeInstanceOf(Float64Array);
      expect(isDescending(s)).toBe(true);
      expect(errorRelativeToLargest(s, full)).toBeLessThan(1e-13);
      if (method === 'js') expect(Array.from(s)).toEqual(Array.from(full)); // same arithmetic on s and e
    });

    it('recovers a known spectrum spanning 12 decades (ill-conditioned), tall and wide', () => {
      const spectrum = Array.from({ length: 24 }, (_, i) => 10 ** (-i / 2)); // 1 .. 3e-12
      for (const [m, n] of [
        [100, 24],
        [24, 100],
        [30, 24],
      ] as const) {
        const a = withSpectrum(m, n, spectrum, m + n);
        const s = run(() => singularValues(a, { method }));
        expect(errorRelativeToLargest(s, spectrum)).toBeLessThan(1e-13);
        // The large values to full relative accuracy, not only relative to S[0].
        for (let i = 0; i < 6; i++) expect(Math.abs(s[i]! - spectrum[i]!) / spectrum[i]!).toBeLessThan(1e-12);
      }
    });

    it('returns zeros beyond the rank of a rank-deficient matrix, and all zeros for the zero matrix', () => {
      for (const [m, n, r] of [
        [60, 25, 4],
        [25, 60, 4],
        [30, 20, 1],
      ] as const) {
        const a = matmul(randomMatrix(m, r, m), randomMatrix(r, n, n));
        const s = run(() => singularValues(a, { method }));
        const full = run(() => svd(a, { method }).S);
        expect(errorRelativeToLargest(s, full)).toBeLessThan(1e-13);
        for (let i = 0; i < r; i++) expect(s[i]!).toBeGreaterThan(1e-3 * s[0]!);
        for (let i = r; i < s.length; i++) expect(s[i]!).toBeLessThan(1e-13 * s[0]!);
      }
      expect(Array.from(run(() => singularValues(Tensor.zeros([5, 3]), { method })))).toEqual([0, 0, 0]);
    });

    it('keeps relative accuracy at extreme scales and takes float32 input', () => {
      const spectrum = [3, 2, 1, 0.5];
      const a = withSpectrum(12, 4, spectrum, 5);
      for (const scale of [1e-300, 1e300]) {
        const scaled = new Tensor(
          a.data.map((x) => x * scale),
          a.shape,
        );
        const s = run(() => singularValues(scaled, { method }));
        expect(
          errorRelativeToLargest(
            s,
            spectrum.map((x) => x * scale),
          ),
        ).toBeLessThan(1e-13);
      }
      const f32 = new Tensor(Float32Array.from(a.data), a.shape);
      const s32 = run(() => singularValues(f32, { method }));
      expect(errorRelativeToLargest(s32, spectrum)).toBeLessThan(1e-6); // the float32 rounding of a
    });

    it('does not modify its input', () => {
      const a = randomMatrix(50, 12, 9);
      const copy = a.data.slice();
      run(() => singularValues(a, { method }));
      expect(Array.from(a.data)).toEqual(Array.from(copy));
    });
  });
}

describe('singularValues across paths and callers', () => {
  it.skipIf(!nativeBuilt)('native (jobz N) and JS agree on a 64x576 lowered-kernel shape', () => {
    const a = randomMatrix(64, 576, 3);
    const n = singularValues(a, { method: 'native' });
    const j = withLinalgEnv('js', () => singularValues(a, { method: 'js' }));
    expect(errorRelativeToLargest(n, j)).toBeLessThan(1e-13);
  });

  it('gives evbmf the spectrum of the full SVD', () => {
    const a = withSpectrum(40, 60, [50, 30, 20, ...Array.from({ length: 37 }, () => 1)], 17);
    const r = evbmf(a);
    expect(errorRelativeToLargest(r.singularValues, svd(a).S)).toBeLessThan(1e-13);
    expect(r.rank).toBe(3);
  });

  it('refuses bad input with typed errors naming the field', () => {
    expect(() => singularValues(Tensor.zeros([2, 2, 2]))).toThrow(ShapeError);
    expect(() => singularValues(randomMatrix(3, 3), { method: 'randomized' as never })).toThrow(
      UnknownNameError,
    );
    const bad = randomMatrix(3, 3);
    bad.data[4] = Number.NaN;
    expect(() => singularValues(bad)).toThrow(ValidationError);
    expect(() => singularValues(bad)).toThrow(/flat index 4/);
    expect(singularValues(Tensor.zeros([0, 4])).length).toBe(0);
  });
});

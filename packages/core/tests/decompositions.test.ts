import { describe, expect, it } from 'vitest';
import { RankError, ShapeError, UnknownNameError, ValidationError } from '@flatrank/protocol';
import {
  Tensor,
  createRng,
  cpAls,
  cpReconstruct,
  evbFreeEnergy,
  evbmf,
  minimizeBounded,
  partialTucker,
  qr,
  relativeError,
  svd,
  tuckerReconstruct,
} from '../src/index.js';

function randn(shape: number[], seed: number, scale = 1): Tensor {
  const rng = createRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor(
    Float64Array.from({ length: n }, () => rng.normal() * scale),
    shape,
  );
}

function add(a: Tensor, b: Tensor): Tensor {
  return new Tensor(
    Float64Array.from(a.data, (v, i) => v + b.data[i]!),
    a.shape,
  );
}

function norm(t: Tensor): number {
  let s = 0;
  for (const v of t.data) s += v * v;
  return Math.sqrt(s);
}

function maxOrthoError(f: Tensor): number {
  const [n, r] = f.shape as [number, number];
  let worst = 0;
  for (let p = 0; p < r; p++)
    for (let q = 0; q < r; q++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += f.data[i * r + p]! * f.data[i * r + q]!;
      worst = Math.max(worst, Math.abs(s - (p === q ? 1 : 0)));
    }
  return worst;
}

describe('partialTucker', () => {
  it('recovers a planted multilinear-rank tensor exactly and returns orthonormal factors', () => {
    const core = randn([3, 3, 4, 5], 1);
    const ps = svd(randn([10, 4], 2)).U;
    const pt = svd(randn([12, 5], 3)).U;
    const x = tuckerReconstruct(core, [null, null, ps, pt]);
    expect(x.shape).toEqual([3, 3, 10, 12]);
    for (const algorithm of ['hosvd', 'hooi'] as const) {
      const r = partialTucker(x, { modes: [2, 3], ranks: [4, 5], algorithm });
      expect(r.core.shape).toEqual([3, 3, 4, 5]);
      expect(r.factors[0]).toBeNull();
      expect(r.factors[2]!.shape).toEqual([10, 4]);
      expect(maxOrthoError(r.factors[2]!)).toBeLessThan(1e-10);
      expect(maxOrthoError(r.factors[3]!)).toBeLessThan(1e-10);
      expect(r.relativeError).toBeLessThan(1e-10);
      expect(relativeError(x, tuckerReconstruct(r.core, r.factors))).toBeLessThan(1e-10);
    }
  });

  it('HOOI is never worse than HOSVD (several random tensors and ranks)', () => {
    for (let seed = 0; seed < 4; seed++) {
      const x = randn([3, 3, 16, 12], 10 + seed);
      for (const ranks of [
        [2, 3],
        [5, 4],
        [8, 8],
      ]) {
        const hosvd = partialTucker(x, { modes: [2, 3], ranks, algorithm: 'hosvd' });
        const hooi = partialTucker(x, {
          modes: [2, 3],
          ranks,
          algorithm: 'hooi',
          maxIterations: 30,
          tolerance: 1e-10,
        });
        expect(hosvd.iterations).toBe(0);
        expect(hooi.iterations).toBeGreaterThan(0);
        expect(hooi.relativeError).toBeLessThanOrEqual(hosvd.relativeError + 1e-12);
      }
    }
    // and strictly better on some input (HOOI does refine)
    const x = randn([4, 9, 10, 11], 99);
    const a = partialTucker(x, { modes: [0, 1, 2, 3], ranks: [2, 3, 3, 3], algorithm: 'hosvd' });
    const b = partialTucker(x, {
      modes: [0, 1, 2, 3],
      ranks: [2, 3, 3, 3],
      algorithm: 'hooi',
      tolerance: 1e-12,
    });
    expect(b.relativeError).toBeLessThan(a.relativeError - 1e-6);
  });

  it('a single mode with HOSVD equals the truncated SVD of that unfolding (Eckart-Young)', () => {
    const x = randn([2, 3, 7], 5);
    const r = partialTucker(x, { modes: [2], ranks: [3], algorithm: 'hosvd' });
    // mode-2 unfolding of a row-major [6, 7] matrix is its transpose: error = tail singular values
    const s = svd(new Tensor(x.data as Float64Array, [6, 7])).S;
    const tail = Math.sqrt(s.slice(3).reduce((a, v) => a + v * v, 0));
    expect(r.relativeError).toBeCloseTo(tail / norm(x), 10);
  });

  it('calls onSweep after every HOOI sweep without changing the fit; a throw there ends it', () => {
    const x = randn([3, 3, 10, 12], 8);
    const seen: Array<[number, number]> = [];
    const r = partialTucker(x, {
      modes: [2, 3],
      ranks: [4, 5],
      tolerance: 0,
      maxIterations: 7,
      onSweep: (s, e) => seen.push([s, e]),
    });
    expect(seen.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    for (let i = 1; i < seen.length; i++) expect(seen[i]![1]).toBeLessThanOrEqual(seen[i - 1]![1] + 1e-12);
    expect(seen.at(-1)![1]).toBeCloseTo(r.relativeError, 8);
    const plain = partialTucker(x, { modes: [2, 3], ranks: [4, 5], tolerance: 0, maxIterations: 7 });
    expect(Array.from(r.core.data)).toEqual(Array.from(plain.core.data));
    const stop = new Error('stop');
    expect(() =>
      partialTucker(x, {
        modes: [2, 3],
        ranks: [4, 5],
        tolerance: 0,
        onSweep: () => {
          throw stop;
        },
      }),
    ).toThrow(stop);
    expect(() =>
      partialTucker(x, { modes: [2, 3], ranks: [4, 5], onSweep: 1 as unknown as () => void }),
    ).toThrow(ValidationError);
  });

  it('rejects bad modes, ranks and options with typed errors', () => {
    const x = randn([3, 3, 4, 5], 1);
    expect(() => partialTucker(x, { modes: [2, 3], ranks: [0, 2] })).toThrow(RankError);
    expect(() => partialTucker(x, { modes: [2, 3], ranks: [5, 2] })).toThrow(/\[1, 4\]/);
    expect(() => partialTucker(x, { modes: [2, 3], ranks: [2] })).toThrow(RankError);
    expect(() => partialTucker(x, { modes: [4], ranks: [1] })).toThrow(ShapeError);
    expect(() => partialTucker(x, { modes: [2, 2], ranks: [1, 1] })).toThrow(ShapeError);
    expect(() => partialTucker(x, { modes: [2], ranks: [2], algorithm: 'als' as 'hooi' })).toThrow(
      UnknownNameError,
    );
    expect(() => partialTucker(x, { modes: [2], ranks: [2], maxIterations: 0 })).toThrow(ValidationError);
    expect(() => tuckerReconstruct(x, [null, null])).toThrow(ShapeError);
  });
});

function plantedCp(
  shape: number[],
  rank: number,
  seed: number,
): { x: Tensor; factors: Tensor[]; weights: Float64Array } {
  const factors = shape.map((d, m) => randn([d, rank], seed + m));
  const weights = Float64Array.from({ length: rank }, (_, r) => 1 + r);
  return { x: cpReconstruct(weights, factors), factors, weights };
}

describe('cpAls', () => {
  it('reconstructs sum_r lambda_r a_r (x) b_r (x) c_r elementwise', () => {
    const a = Tensor.from([
      [1, 2],
      [3, 4],
    ]);
    const b = Tensor.from([
      [1, 0],
      [0, 1],
      [1, 1],
    ]);
    const c = Tensor.from([[2, 1]]);
    const w = Float64Array.from([1, 10]);
    const x = cpReconstruct(w, [a, b, c]);
    expect(x.shape).toEqual([2, 3, 1]);
    // x[i, j, 0] = 1*a[i,0]b[j,0]*2 + 10*a[i,1]b[j,1]*1
    expect(x.get(1, 2, 0)).toBeCloseTo(1 * 3 * 1 * 2 + 10 * 4 * 1 * 1);
    expect(x.get(0, 1, 0)).toBeCloseTo(10 * 2);
  });

  it('recovers a planted low-rank 4-D tensor to the noise level', () => {
    const { x } = plantedCp([3, 3, 10, 12], 4, 7);
    const noise = randn(x.shape as number[], 77, (1e-3 * norm(x)) / Math.sqrt(x.size));
    const noisy = add(x, noise);
    const noiseLevel = norm(noise) / norm(noisy);
    for (const init of ['svd', 'random'] as const) {
      const r = cpAls(noisy, { rank: 4, init, seed: 3, maxIterations: 1000, tolerance: 1e-12 });
      expect(r.relativeError).toBeLessThan(1.01 * noiseLevel);
      expect(r.relativeError).toBeGreaterThan(0.5 * noiseLevel); // cannot fit the noise with 4 components
      expect(relativeError(x, cpReconstruct(r.weights, r.factors))).toBeLessThan(noiseLevel);
      expect(r.init).toBe(init);
      expect(r.seed).toBe(3);
      for (const f of r.factors) {
        for (let c = 0; c < 4; c++) {
          let s = 0;
          for (let i = 0; i < f.shape[0]!; i++) s += f.data[i * 4 + c]! ** 2;
          expect(Math.sqrt(s)).toBeCloseTo(1, 10);
        }
      }
      for (let c = 1; c < 4; c++) expect(r.weights[c - 1]!).toBeGreaterThanOrEqual(r.weights[c]!);
    }
  });

  it('is deterministic for a seed and stops on the relative-fit change', () => {
    const x = randn([3, 3, 6, 6], 21);
    const a = cpAls(x, { rank: 5, init: 'random', seed: 11, maxIterations: 50, tolerance: 0 });
    const b = cpAls(x, { rank: 5, init: 'random', seed: 11, maxIterations: 50, tolerance: 0 });
    expect(Array.from(a.weights)).toEqual(Array.from(b.weights));
    expect(a.iterations).toBe(50);
    expect(a.converged).toBe(false);
    const c = cpAls(x, { rank: 5, init: 'random', seed: 11, maxIterations: 5000, tolerance: 1e-3 });
    expect(c.converged).toBe(true);
    expect(c.iterations).toBeLessThan(5000);
  });

  it('warm-starts from the factors of a slightly perturbed tensor: far fewer sweeps, as good a fit', () => {
    // The distortion-training case: the tensor is exactly CP rank R plus a 1 % perturbation (the
    // kernel moved a little since the fit that gave the factors).
    const { x, factors } = plantedCp([3, 3, 16, 16], 12, 41);
    const noise = randn(x.shape as number[], 42);
    const y = add(
      x,
      new Tensor(
        noise.data.map((v) => (v * 0.01 * norm(x)) / norm(noise)),
        x.shape,
      ),
    );
    const cold = cpAls(y, { rank: 12 });
    expect(cold.init).toBe('svd');
    expect(cold.iterations).toBeGreaterThan(50);
    // the default tolerance alone
    const warm = cpAls(y, { rank: 12, init: { factors } });
    expect(warm.init).toBe('warm');
    expect(warm.converged).toBe(true);
    expect(warm.iterations).toBeLessThan(cold.iterations / 4);
    expect(warm.relativeError).toBeLessThanOrEqual(cold.relativeError + 1e-6);
    // with the scale-free stop a warm refit uses
    const quick = cpAls(y, { rank: 12, init: { factors }, relativeTolerance: 1e-3 });
    expect(quick.iterations).toBeLessThanOrEqual(5);
    expect(quick.iterations).toBeLessThan(cold.iterations / 10);
    expect(quick.relativeError).toBeLessThanOrEqual(cold.relativeError * 1.01);
    // the warm factors are copied, not refined in place
    expect(Array.from(factors[0]!.data)).toEqual(
      Array.from(plantedCp([3, 3, 16, 16], 12, 41).factors[0]!.data),
    );
  });

  it('calls onSweep after every sweep with the tracked relative error; a throw there ends the fit', () => {
    const x = randn([3, 3, 6, 6], 21);
    const seen: Array<[number, number]> = [];
    const r = cpAls(x, { rank: 5, maxIterations: 30, tolerance: 0, onSweep: (s, e) => seen.push([s, e]) });
    expect(seen.map(([s]) => s)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    for (let i = 1; i < seen.length; i++) expect(seen[i]![1]).toBeLessThanOrEqual(seen[i - 1]![1] + 1e-12);
    expect(seen.at(-1)![1]).toBeCloseTo(r.relativeError, 8);
    // the callback does not change the fit
    const plain = cpAls(x, { rank: 5, maxIterations: 30, tolerance: 0 });
    expect(Array.from(r.weights)).toEqual(Array.from(plain.weights));
    const stop = new Error('stop');
    let calls = 0;
    expect(() =>
      cpAls(x, {
        rank: 5,
        onSweep: () => {
          if (++calls === 3) throw stop;
        },
      }),
    ).toThrow(stop);
    expect(calls).toBe(3);
  });

  it('rejects bad warm starts, callbacks and relative tolerances with typed errors', () => {
    const x = randn([3, 3, 6, 6], 21);
    const { factors } = plantedCp([3, 3, 6, 6], 4, 5);
    expect(() => cpAls(x, { rank: 4, init: { factors: factors.slice(1) } })).toThrow(ValidationError);
    expect(() =>
      cpAls(x, { rank: 4, init: { factors: [factors[0]!, factors[1]!, factors[3]!, factors[2]!] } }),
    ).not.toThrow();
    expect(() => cpAls(x, { rank: 3, init: { factors } })).toThrow(ShapeError);
    expect(() =>
      cpAls(x, { rank: 4, init: { factors: [factors[0]!, factors[1]!, factors[2]!, randn([5, 4], 1)] } }),
    ).toThrow(/init\.factors\[3\] must be \[6, 4\]/);
    const bad = new Tensor(factors[2]!.data.slice(), [6, 4]);
    bad.data[5] = NaN;
    expect(() =>
      cpAls(x, { rank: 4, init: { factors: [factors[0]!, factors[1]!, bad, factors[3]!] } }),
    ).toThrow(/init\.factors\[2\] has a non-finite value/);
    expect(() => cpAls(x, { rank: 4, init: { factors: [1, 2, 3, 4] as unknown as Tensor[] } })).toThrow(
      ValidationError,
    );
    expect(() => cpAls(x, { rank: 4, onSweep: 'log' as unknown as () => void })).toThrow(
      /onSweep must be a function/,
    );
    expect(() => cpAls(x, { rank: 4, relativeTolerance: -1 })).toThrow(ValidationError);
  });

  it('rejects bad ranks and options', () => {
    const x = randn([2, 3, 4], 1);
    expect(() => cpAls(x, { rank: 0 })).toThrow(RankError);
    expect(() => cpAls(x, { rank: 7 })).toThrow(/\[1, 6\]/);
    expect(() => cpAls(x, { rank: 2, init: 'nvecs' as 'svd' })).toThrow(UnknownNameError);
    expect(() => cpAls(x, { rank: 2, seed: 0.5 })).toThrow(ValidationError);
    expect(() => cpAls(randn([5], 1), { rank: 1 })).toThrow(ShapeError);
  });
});

describe('evbmf', () => {
  it('finds the planted rank of a low-rank-plus-noise matrix', () => {
    for (const [l, m, rank, seed] of [
      [40, 60, 5, 1],
      [64, 576, 10, 2],
      [80, 30, 3, 3],
    ] as const) {
      const a = randn([l, rank], seed);
      const b = randn([rank, m], seed + 100);
      const y = new Tensor(new Float64Array(l * m), [l, m]);
      for (let i = 0; i < l; i++)
        for (let j = 0; j < m; j++) {
          let s = 0;
          for (let k = 0; k < rank; k++) s += a.data[i * rank + k]! * b.data[k * m + j]!;
          y.data[i * m + j] = s;
        }
      const sigma = 0.1;
      const noisy = add(y, randn([l, m], seed + 200, sigma));
      const r = evbmf(noisy);
      expect(r.rank).toBe(rank);
      expect(r.noiseVariance).toBeGreaterThan(0.5 * sigma * sigma);
      expect(r.noiseVariance).toBeLessThan(2 * sigma * sigma);
      expect(r.singularValues.length).toBe(Math.min(l, m));
      for (let k = 0; k < rank; k++) {
        expect(r.posteriorValues[k]!).toBeGreaterThan(0);
        expect(r.posteriorValues[k]!).toBeLessThan(r.singularValues[k]!); // shrinkage
      }
      expect(r.posteriorValues[rank]).toBe(0);
      // the estimate is scale-equivariant (kernels are small numbers)
      const scaled = new Tensor(
        Float64Array.from(noisy.data, (v) => v * 1e-3),
        noisy.shape,
      );
      expect(evbmf(scaled).rank).toBe(rank);
    }
  });

  it('returns 0 on pure noise and uses a given sigma2', () => {
    const noise = randn([30, 50], 9);
    expect(evbmf(noise).rank).toBe(0);
    expect(evbmf(noise, { sigma2: 1e-6 }).rank).toBe(30); // a tiny assumed noise keeps everything
    expect(evbmf(noise, { sigma2: 1e-6 }).noiseVariance).toBe(1e-6);
    expect(() => evbmf(noise, { sigma2: -1 })).toThrow(ValidationError);
    expect(() => evbmf(randn([2, 2, 2], 1))).toThrow(ShapeError);
  });
});

describe('evbmf noise-variance search', () => {
  // A 3x3x32x32 kernel's lowered 32 x 288 matrix with the smoothly decaying spectrum (k+1)^-0.8:
  // its EVB free energy (a function of sigma^2) has ~10 local minima, one near each singular value
  // that crosses the threshold, and a bounded Brent search alone stops in one that is not global.
  const [l, m] = [32, 288];
  const spectrum = Array.from({ length: l }, (_, k) => (k + 1) ** -0.8);
  const orthonormal = (rows: number, seed: number): Tensor => qr(randn([rows, l], seed)).Q;
  const u = orthonormal(l, 3);
  const v = orthonormal(m, 4);
  const y = new Tensor(new Float64Array(l * m), [l, m]);
  for (let i = 0; i < l; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < l; k++) s += u.data[i * l + k]! * spectrum[k]! * v.data[j * l + k]!;
      y.data[i * m + j] = s;
    }

  it('picks the global minimiser of the free energy, not a local one', () => {
    const r = evbmf(y);
    const [lo, hi] = r.searchInterval!;
    const energy = (s2: number): number => evbFreeEnergy(r.singularValues, l, m, s2);
    const n = 20_000;
    const grid = Array.from({ length: n }, (_, k) =>
      Math.exp(Math.log(lo) + ((Math.log(hi) - Math.log(lo)) * k) / (n - 1)),
    );
    const f = grid.map(energy);
    let localMinima = 0;
    for (let k = 1; k < n - 1; k++) if (f[k]! < f[k - 1]! && f[k]! <= f[k + 1]!) localMinima++;
    expect(localMinima).toBeGreaterThanOrEqual(3);
    let g = 0;
    for (let k = 1; k < n; k++) if (f[k]! < f[g]!) g = k;
    // Ours is at least as low as the dense grid's best point and lies in the same basin.
    expect(energy(r.noiseVariance)).toBeLessThanOrEqual(f[g]! + 1e-9);
    expect(Math.abs(Math.log(r.noiseVariance / grid[g]!))).toBeLessThan(
      2 * (Math.log(hi / lo) / (n - 1)) + 1e-6,
    );
    // The search this replaced (Brent over the same log interval) ends in a worse local minimum.
    const brent = minimizeBounded((x) => energy(Math.exp(x)), Math.log(lo), Math.log(hi), { xatol: 1e-10 });
    expect(brent.fx).toBeGreaterThan(f[g]! + 1e-3);
  });
});

describe('minimizeBounded', () => {
  it('finds interior and boundary minima', () => {
    expect(minimizeBounded((x) => (x - 1.234) ** 2 + 3, -10, 10).x).toBeCloseTo(1.234, 7);
    expect(minimizeBounded((x) => Math.cos(x), 0, 2 * Math.PI).x).toBeCloseTo(Math.PI, 6);
    expect(minimizeBounded((x) => x, 2, 5).x).toBeCloseTo(2, 4);
  });
});

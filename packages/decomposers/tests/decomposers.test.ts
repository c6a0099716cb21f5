import { describe, expect, it } from 'vitest';
import { RankError, ShapeError, UnknownNameError, ValidationError } from '@flatrank/protocol';
import { Tensor, svd } from '@flatrank/core';
import {
  chainShapes,
  decompose,
  factorTensors,
  factoredLayer,
  hwioToOihw,
  kernelDims,
  kernelToMatrix,
  layerCosts,
  layerRecord,
  lowRankApproximation,
  matrixToKernel,
  modelRatioFraction,
  oihwToHwio,
  planDecomposition,
  reconstruct,
  type DecomposeOptions,
  type KernelDecomposition,
} from '../src/index.js';
import { maxAbsDiff, norm, randn, refConv } from './helpers.js';

const K = randn([3, 3, 8, 12], 1); // d=3, S=8, T=12

describe('kernel conventions', () => {
  it('lowered W = reshape(K, [d*d*S, T])^T with column (i*d + j)*S + s', () => {
    const w = kernelToMatrix(K, 'lowered');
    expect(w.shape).toEqual([12, 72]);
    for (const [i, j, s, t] of [
      [0, 0, 0, 0],
      [2, 1, 5, 7],
      [1, 2, 7, 11],
    ] as const) {
      expect(w.get(t, (i * 3 + j) * 8 + s)).toBe(K.get(i, j, s, t));
      // reshape(K, [72, 12]) row (i*3+j)*8+s, column t is the same element
      expect(K.data[((i * 3 + j) * 8 + s) * 12 + t]).toBe(K.get(i, j, s, t));
    }
    expect(kernelToMatrix(K, 'spatial').shape).toEqual([24, 36]);
    expect(kernelToMatrix(K, 'spatial').get(2 * 8 + 5, 1 * 12 + 7)).toBe(K.get(2, 1, 5, 7));
    expect(kernelToMatrix(K, 'input').shape).toEqual([8, 108]);
    expect(kernelToMatrix(K, 'input').get(5, (2 * 3 + 1) * 12 + 7)).toBe(K.get(2, 1, 5, 7));
    for (const scheme of ['lowered', 'spatial', 'input'] as const)
      expect(maxAbsDiff(matrixToKernel(kernelToMatrix(K, scheme), kernelDims(K), scheme), K)).toBe(0);
  });

  it('lowered order chw: column s*d*d + i*d + j, i.e. the OIHW kernel read as T x (S*d*d)', () => {
    const w = kernelToMatrix(K, 'lowered', 'chw');
    expect(w.shape).toEqual([12, 72]);
    // PyTorch's weight.view(T, -1) is the channel-major im2col matrix: an independent construction.
    expect(Array.from(w.data)).toEqual(Array.from(hwioToOihw(K).data));
    expect(w.get(7, 5 * 9 + 2 * 3 + 1)).toBe(K.get(2, 1, 5, 7));
    expect(maxAbsDiff(matrixToKernel(w, kernelDims(K), 'lowered', 'chw'), K)).toBe(0);
  });

  it('converts PyTorch OIHW [T, S, kh, kw] to HWIO and back', () => {
    const o = hwioToOihw(K);
    expect(o.shape).toEqual([12, 8, 3, 3]);
    expect(o.get(7, 5, 2, 1)).toBe(K.get(2, 1, 5, 7));
    expect(maxAbsDiff(oihwToHwio(o), K)).toBe(0);
    expect(() => oihwToHwio(randn([3, 3, 3], 1))).toThrow(ShapeError);
  });
});

function tailRelError(m: Tensor, r: number): number {
  const s = svd(m).S;
  let tail = 0;
  let all = 0;
  s.forEach((v, i) => {
    all += v * v;
    if (i >= r) tail += v * v;
  });
  return Math.sqrt(tail / all);
}

describe('svd and tiled-svd', () => {
  it('truncated SVD error equals the Eckart-Young optimum for every scheme', () => {
    for (const scheme of ['lowered', 'spatial', 'input'] as const) {
      for (const r of [1, 3, 6]) {
        const d = decompose(K, { method: 'svd', scheme, rank: r });
        const opt = tailRelError(kernelToMatrix(K, scheme), r);
        expect(d.relativeError).toBeCloseTo(opt, 12);
        expect(
          norm(
            new Tensor(
              Float64Array.from(K.data, (v, i) => v - reconstruct(d).data[i]!),
              K.shape,
            ),
          ) / norm(K),
        ).toBeCloseTo(opt, 12);
        expect(d.ranks).toEqual([r]);
      }
    }
    const full = decompose(K, { method: 'svd', rank: 12 });
    expect(full.relativeError).toBeLessThan(1e-12);
  });

  it('svd lowered gives the same approximation in both column orders (a permutation of columns)', () => {
    const hwc = decompose(K, { method: 'svd', rank: 4 });
    const chw = decompose(K, { method: 'svd', rank: 4, order: 'chw' });
    expect(hwc.order).toBe('hwc');
    expect(chw.order).toBe('chw');
    expect(chw.relativeError).toBeCloseTo(hwc.relativeError, 12);
    expect(maxAbsDiff(reconstruct(chw), reconstruct(hwc))).toBeLessThan(1e-12);
    expect(layerRecord('c', chw, { inputSize: 8 }).order).toBe('chw');
    expect(layerRecord('c', decompose(K, { method: 'tucker2', rank: 3 }), { inputSize: 8 }).order).toBeNull();
  });

  it('tiled-svd with order chw is the optimal tiled error of the channel-major lowering', () => {
    // 64 -> 64 3x3 kernel as in the paper's Table 1: with 64-wide tiles hwc puts one spatial tap of
    // all channels in a tile, chw ~7 channels x 9 taps, so the errors differ.
    const k = randn([3, 3, 64, 64], 11);
    // Independent lowering: the OIHW kernel's rows are the channel-major im2col rows.
    const oihw = hwioToOihw(k).data;
    const [rows, cols] = [64, 576];
    for (const [a, b, r] of [
      [64, 64, 16],
      [16, 16, 2],
      [8, 8, 1],
    ] as const) {
      let tail = 0;
      for (let p = 0; p < rows / a; p++)
        for (let q = 0; q < cols / b; q++) {
          const t = new Float64Array(a * b);
          for (let i = 0; i < a; i++)
            for (let j = 0; j < b; j++) t[i * b + j] = oihw[(p * a + i) * cols + q * b + j]!;
          const s = svd(new Tensor(t, [a, b])).S;
          for (let x = r; x < s.length; x++) tail += s[x]! ** 2;
        }
      const optimal = Math.sqrt(tail) / norm(k);
      const d = decompose(k, { method: 'tiled-svd', tile: [a, b], rank: r, order: 'chw' });
      expect(d.relativeError).toBeCloseTo(optimal, 12);
      const rec = reconstruct(d);
      const diff = Float64Array.from(k.data, (v, i) => v - rec.data[i]!);
      expect(norm(diff) / norm(k)).toBeCloseTo(optimal, 12);
      const hwc = decompose(k, { method: 'tiled-svd', tile: [a, b], rank: r });
      expect(Math.abs(hwc.relativeError - optimal)).toBeGreaterThan(1e-4);
    }
  });

  it('tiled ratios equal a*b / (r*(a+b)) and each tile is its own optimal truncation', () => {
    for (const [a, b, r] of [
      [4, 8, 1],
      [6, 9, 2],
      [12, 72, 5],
      [3, 3, 1],
      [4, 4, 3],
    ] as const) {
      const d = decompose(K, { method: 'tiled-svd', rank: r, tile: [a, b] });
      const c = layerCosts(d, { inputSize: [8, 8] });
      expect(c.compressionRatio).toBeCloseTo((a * b) / (r * (a + b)), 12);
      expect(c.macsRatio).toBeCloseTo((a * b) / (r * (a + b)), 12);
      expect(c.paramsAfter).toBe((12 / a) * (72 / b) * r * (a + b));
      // the error is the root of the summed per-tile Eckart-Young tails
      const w = kernelToMatrix(K, 'lowered');
      let tail = 0;
      for (let p = 0; p < 12 / a; p++)
        for (let q = 0; q < 72 / b; q++) {
          const t = new Float64Array(a * b);
          for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) t[i * b + j] = w.get(p * a + i, q * b + j);
          const s = svd(new Tensor(t, [a, b])).S;
          for (let k = r; k < s.length; k++) tail += s[k]! ** 2;
        }
      expect(d.relativeError).toBeCloseTo(Math.sqrt(tail) / norm(K), 12);
      expect(d.tile).toEqual([a, b]);
      const f = factoredLayer(d);
      expect(f.form).toBe('tiled-gemm');
    }
  });
});

describe('tucker2 and cp', () => {
  it('HOOI is never worse than HOSVD on kernels', () => {
    for (let seed = 0; seed < 3; seed++) {
      const k = randn([3, 3, 16, 16], 50 + seed);
      for (const ranks of [
        [4, 4],
        [8, 3],
      ] as const) {
        const hosvd = decompose(k, { method: 'tucker2', rank: ranks, tucker: { algorithm: 'hosvd' } });
        const hooi = decompose(k, { method: 'tucker2', rank: ranks });
        expect(hooi.relativeError).toBeLessThanOrEqual(hosvd.relativeError + 1e-12);
        expect(hooi.ranks).toEqual([...ranks]);
        expect(maxAbsDiff(reconstruct(hooi), k)).toBeGreaterThan(0);
      }
    }
  });

  it('falls back to 2-D SVD for 1x1 convs and dense kernels, and to Tucker-1 for a first layer', () => {
    const one = randn([1, 1, 10, 6], 3);
    const d1 = decompose(one, { method: 'tucker2', rank: [4, 3] });
    expect(d1.fallback).toBe('svd-2d');
    expect(d1.ranks).toEqual([3, 3]);
    expect(d1.relativeError).toBeCloseTo(tailRelError(kernelToMatrix(one, 'lowered'), 3), 12);
    const dense = randn([20, 7], 4);
    const dd = decompose(dense, { method: 'tucker2', rank: 2 });
    expect(dd.fallback).toBe('svd-2d');
    expect(reconstruct(dd).shape).toEqual([20, 7]);
    const first = randn([3, 3, 3, 16], 5);
    const df = decompose(first, {
      method: 'tucker2',
      rank: { kind: 'fraction', fraction: 0.5 },
      tucker: { firstLayer: true },
    });
    expect(df.fallback).toBe('tucker1');
    expect(df.ranks).toEqual([3, 8]);
    expect(df.relativeError).toBeCloseTo(tailRelError(kernelToMatrix(first, 'lowered'), 8), 12);
  });

  it('CP recovers a planted low-rank kernel to the noise level and records seed / init', () => {
    const R = 5;
    const fs = [randn([3, R], 1), randn([3, R], 2), randn([8, R], 3), randn([12, R], 4)];
    const k = new Tensor(new Float64Array(3 * 3 * 8 * 12), [3, 3, 8, 12]);
    let o = 0;
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++)
        for (let s = 0; s < 8; s++)
          for (let t = 0; t < 12; t++) {
            let v = 0;
            for (let r = 0; r < R; r++)
              v +=
                fs[0]!.data[i * R + r]! *
                fs[1]!.data[j * R + r]! *
                fs[2]!.data[s * R + r]! *
                fs[3]!.data[t * R + r]!;
            k.data[o++] = v;
          }
    const noise = randn([3, 3, 8, 12], 9, (1e-4 * norm(k)) / Math.sqrt(k.size));
    const noisy = new Tensor(
      Float64Array.from(k.data, (v, i) => v + noise.data[i]!),
      k.shape,
    );
    const level = norm(noise) / norm(noisy);
    const d = decompose(noisy, {
      method: 'cp',
      rank: R,
      cp: { seed: 4, maxIterations: 2000, tolerance: 1e-13 },
    });
    expect(d.relativeError).toBeLessThan(1.01 * level);
    expect(d.method === 'cp' && d.seed).toBe(4);
    expect(d.method === 'cp' && d.init).toBe('svd');
    expect(d.iterations).toBeGreaterThan(0);
  });
});

describe('warm starts and sweep reports (DecomposeRun)', () => {
  // A distortion-training pair: the kernel after one distortion (exactly CP rank 12), moved by 2 %.
  const opts: DecomposeOptions = { method: 'cp', rank: 12 };
  const first = decompose(randn([3, 3, 16, 16], 70), opts);
  const distorted = reconstruct(first);
  const drift = randn([3, 3, 16, 16], 71);
  const moved = new Tensor(
    Float64Array.from(distorted.data, (v, i) => v + (drift.data[i]! * 0.02 * norm(distorted)) / norm(drift)),
    distorted.shape,
  );

  it('CP-ALS starts from the previous CP decomposition: init warm, a few sweeps, a better fit than cold', () => {
    const cold = decompose(moved, opts);
    const warm = decompose(moved, opts, { previous: first });
    expect(cold.method === 'cp' && cold.init).toBe('svd');
    expect(warm.method === 'cp' && warm.init).toBe('warm');
    expect(warm.iterations).toBeLessThanOrEqual(10);
    expect(warm.iterations).toBeLessThan(cold.iterations / 10);
    expect(warm.converged).toBe(true);
    expect(warm.relativeError).toBeLessThanOrEqual(cold.relativeError + 1e-9);
    expect(warm.relativeError).toBeLessThan(0.02);
    const rec = layerRecord('conv', warm, { inputSize: 8 });
    expect(rec.cp).toEqual({ init: 'warm', seed: 0, fit: 1 - warm.relativeError });
    expect(rec.iterations).toBe(warm.iterations);
    // a float32 kernel (as the trainers hand them) warm-starts alike
    const warm32 = decompose(moved.astype('float32'), opts, { previous: first });
    expect(warm32.method === 'cp' && warm32.init).toBe('warm');
    expect(lowRankApproximation(moved, opts, { previous: first }).decomposition.iterations).toBe(
      warm.iterations,
    );
  });

  it('a previous decomposition that does not match (rank, shape, method) leaves the fit cold', () => {
    const cold = decompose(moved, opts);
    for (const previous of [
      decompose(moved, { method: 'cp', rank: 8 }),
      decompose(randn([3, 3, 16, 8], 72), { method: 'cp', rank: 12 }),
      decompose(moved, { method: 'tucker2', rank: [4, 4] }),
      null,
    ]) {
      const d = decompose(moved, opts, { previous });
      expect(d.method === 'cp' && d.init).toBe('svd');
      expect(d.iterations).toBe(cold.iterations);
      expect(d.relativeError).toBe(cold.relativeError);
    }
    // Tucker-2 is always cold: a previous decomposition changes nothing.
    const t = decompose(moved, { method: 'tucker2', rank: [4, 4] });
    const again = decompose(moved, { method: 'tucker2', rank: [4, 4] }, { previous: t });
    expect(again.relativeError).toBe(t.relativeError);
  });

  it('reports every sweep of CP-ALS and HOOI to onSweep, and nothing for SVD-based methods', () => {
    for (const [o, run] of [
      [opts, {}],
      [opts, { previous: first }],
      [{ method: 'tucker2', rank: [6, 5], tucker: { tolerance: 0, maxIterations: 4 } }, {}],
      [{ method: 'svd', scheme: 'lowered', rank: 4 }, {}],
    ] as Array<[DecomposeOptions, { previous?: KernelDecomposition }]>) {
      const sweeps: number[] = [];
      const d = decompose(moved, o, { ...run, onSweep: (s) => sweeps.push(s) });
      expect(sweeps).toEqual(Array.from({ length: d.iterations }, (_, i) => i + 1));
      if (o.method !== 'svd') expect(sweeps.length).toBeGreaterThan(0);
    }
    expect(() => decompose(moved, opts, { onSweep: 3 as unknown as () => void })).toThrow(ValidationError);
    expect(() => decompose(moved, opts, { previous: 'last' as unknown as KernelDecomposition })).toThrow(
      ValidationError,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Every factored chain, applied as real convolutions, equals the conv with the reconstructed kernel.

function runChain(
  x: Tensor,
  d: KernelDecomposition,
  settings: { strides: [number, number]; padding: 'same' | 'valid'; bias: Tensor },
): Tensor {
  const f = factoredLayer(d, settings);
  if (f.form !== 'chain') throw new Error('not a chain');
  let y = x;
  f.layers.forEach((l, i) => {
    expect(l.kernel.shape).toEqual(l.kernelShape);
    expect(l.useBias).toBe(i === f.layers.length - 1);
    if (l.kind === 'depthwise') expect(l.groups).toBe(l.inChannels);
    y = refConv(y, { kind: l.kind, kernel: l.kernel, strides: l.strides, padding: l.padding, bias: l.bias });
  });
  return y;
}

describe('factored chains', () => {
  const cases: Array<[string, DecomposeOptions]> = [
    ['svd lowered', { method: 'svd', scheme: 'lowered', rank: 4 }],
    ['svd lowered chw', { method: 'svd', scheme: 'lowered', rank: 4, order: 'chw' }],
    ['svd spatial', { method: 'svd', scheme: 'spatial', rank: 5 }],
    ['svd input', { method: 'svd', scheme: 'input', rank: 3 }],
    ['tucker2 hooi', { method: 'tucker2', rank: [3, 5] }],
    ['tucker2 hosvd', { method: 'tucker2', rank: [5, 2], tucker: { algorithm: 'hosvd' } }],
    ['tucker1 first layer', { method: 'tucker2', rank: [8, 4], tucker: { firstLayer: true } }],
    ['cp', { method: 'cp', rank: 6, cp: { maxIterations: 30 } }],
  ];
  const geoms: Array<{ strides: [number, number]; padding: 'same' | 'valid'; h: number; w: number }> = [
    { strides: [1, 1], padding: 'same', h: 7, w: 6 },
    { strides: [2, 2], padding: 'same', h: 7, w: 8 },
    { strides: [2, 1], padding: 'valid', h: 9, w: 7 },
    { strides: [1, 3], padding: 'same', h: 5, w: 10 },
  ];
  const kernel = randn([3, 3, 8, 12], 77);
  const bias = randn([12], 78);
  for (const [name, opts] of cases) {
    it(`${name}: chain of convs == conv with the reconstructed kernel`, () => {
      const d = decompose(kernel, opts);
      const rec = reconstruct(d);
      for (const g of geoms) {
        const x = randn([2, g.h, g.w, 8], 79);
        const settings = { strides: g.strides, padding: g.padding, bias };
        const ref = refConv(x, { kind: 'conv2d', kernel: rec, strides: g.strides, padding: g.padding, bias });
        const got = runChain(x, d, settings);
        expect(got.shape).toEqual(ref.shape);
        expect(maxAbsDiff(got, ref)).toBeLessThan(1e-10 * (1 + norm(ref)));
      }
    });
  }

  it('non-square kernels (3x5) and 1x1 convs with stride chain correctly too', () => {
    const k35 = randn([3, 5, 4, 6], 5);
    const k11 = randn([1, 1, 6, 5], 6);
    const b6 = randn([6], 1);
    const b5 = randn([5], 2);
    for (const [k, b, opts] of [
      [k35, b6, { method: 'svd', scheme: 'spatial', rank: 3 }],
      [k35, b6, { method: 'cp', rank: 4, cp: { maxIterations: 10 } }],
      [k35, b6, { method: 'tucker2', rank: [2, 3] }],
      [k11, b5, { method: 'tucker2', rank: 2 }],
      [k11, b5, { method: 'svd', scheme: 'input', rank: 2 }],
    ] as Array<[Tensor, Tensor, DecomposeOptions]>) {
      const d = decompose(k, opts);
      const x = randn([1, 9, 11, k.shape[2]!], 3);
      for (const padding of ['same', 'valid'] as const) {
        const ref = refConv(x, { kind: 'conv2d', kernel: reconstruct(d), strides: [2, 2], padding, bias: b });
        expect(maxAbsDiff(runChain(x, d, { strides: [2, 2], padding, bias: b }), ref)).toBeLessThan(1e-10);
      }
    }
  });

  it('dense kernels factor into two dense layers', () => {
    const w = randn([10, 4], 8);
    const b = randn([4], 9);
    const d = decompose(w, { method: 'svd', rank: 2 });
    const x = randn([3, 10], 10);
    const ref = refConv(x, {
      kind: 'dense',
      kernel: reconstruct(d),
      strides: [1, 1],
      padding: 'valid',
      bias: b,
    });
    const f = factoredLayer(d, { bias: b });
    expect(f.form === 'chain' && f.layers.map((l) => l.kind)).toEqual(['dense', 'dense']);
    expect(maxAbsDiff(runChain(x, d, { strides: [1, 1], padding: 'valid', bias: b }), ref)).toBeLessThan(
      1e-12,
    );
  });

  it('keeps the kernel dtype in reconstructions and chain weights', () => {
    const k32 = kernel.astype('float32');
    const { kernel: approx, decomposition } = lowRankApproximation(k32, { method: 'tucker2', rank: 4 });
    expect(approx.dtype).toBe('float32');
    const f = factoredLayer(decomposition);
    expect(f.form === 'chain' && f.layers.every((l) => l.kernel.dtype === 'float32')).toBe(true);
  });
});

describe('counts', () => {
  it('tucker2 and cp params follow the closed forms; MACs follow the spatial sizes', () => {
    const k = randn([3, 3, 16, 32], 1);
    const t = decompose(k, { method: 'tucker2', rank: [4, 8], tucker: { algorithm: 'hosvd' } });
    const c = layerCosts(t, { inputSize: [16, 16], strides: 2 });
    expect(c.paramsBefore).toBe(9 * 16 * 32);
    expect(c.paramsAfter).toBe(16 * 4 + 9 * 4 * 8 + 8 * 32);
    // 1x1 at 16x16 input, 3x3 stride 2 -> 8x8, 1x1 at 8x8
    expect(c.macsAfter).toBe(256 * 16 * 4 + 64 * 9 * 4 * 8 + 64 * 8 * 32);
    expect(c.macsBefore).toBe(64 * 9 * 16 * 32);
    const cp = decompose(k, { method: 'cp', rank: 5, cp: { maxIterations: 3 } });
    const cc = layerCosts(cp, { inputSize: [16, 16], strides: [2, 2] });
    expect(cc.paramsAfter).toBe(5 * (16 + 3 + 3 + 32));
    // 1x1 at 16x16; 3x1 depthwise stride (2,1) -> 8x16; 1x3 depthwise stride (1,2) -> 8x8; 1x1 at 8x8
    expect(cc.macsAfter).toBe(256 * 16 * 5 + 8 * 16 * 3 * 5 + 64 * 3 * 5 + 64 * 5 * 32);
    const s = decompose(k, { method: 'svd', rank: 4 });
    expect(layerCosts(s, { inputSize: 10, padding: 'valid' }).macsAfter).toBe(64 * (9 * 16 * 4 + 4 * 32));
    expect(() => layerCosts(s, {})).toThrow(ValidationError);
    const rec = layerRecord('conv2', t, { inputSize: [16, 16], strides: 2 });
    expect(rec).toMatchObject({
      name: 'conv2',
      decomposition: 'tucker2',
      scheme: null,
      ranks: [4, 8],
      rawRanks: null,
      tile: null,
      kernelShape: [3, 3, 16, 32],
    });
    expect(rec.macsAfter).toBe(c.macsAfter);
    expect(rec.relativeError).toBe(t.relativeError);
  });

  it('chainShapes puts the stride where the spatial extent is', () => {
    const dims = kernelDims(K);
    const plan = planDecomposition(K, { method: 'cp', rank: 3 });
    const shapes = chainShapes(dims, plan, { strides: [2, 3], padding: 'valid' })!;
    expect(shapes.map((l) => [l.kind, l.kernelShape, l.strides])).toEqual([
      ['conv2d', [1, 1, 8, 3], [1, 1]],
      ['depthwise', [3, 1, 3, 1], [2, 1]],
      ['depthwise', [1, 3, 3, 1], [1, 3]],
      ['conv2d', [1, 1, 3, 12], [1, 1]],
    ]);
    expect(shapes.every((l) => l.padding === 'valid')).toBe(true);
  });
});

/** A kernel whose lowered matrix has rank `r` plus small noise. */
function lowRankKernel(r: number, seed: number, noise: number): Tensor {
  const u = randn([12, r], seed);
  const v = randn([r, 72], seed + 1);
  const w = new Float64Array(12 * 72);
  for (let i = 0; i < 12; i++)
    for (let j = 0; j < 72; j++)
      for (let k = 0; k < r; k++) w[i * 72 + j] += u.data[i * r + k]! * v.data[k * 72 + j]!;
  const n = randn([12, 72], seed + 2, noise);
  return matrixToKernel(
    new Tensor(
      Float64Array.from(w, (x, i) => x + n.data[i]!),
      [12, 72],
    ),
    kernelDims(K),
    'lowered',
  );
}

describe('rank policies', () => {
  it('fraction of channels / full rank', () => {
    expect(
      planDecomposition(K, { method: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } }).ranks,
    ).toEqual([4, 6]);
    expect(planDecomposition(K, { method: 'svd', rank: { kind: 'fraction', fraction: 0.25 } }).ranks).toEqual(
      [3],
    );
    expect(
      planDecomposition(K, { method: 'svd', scheme: 'input', rank: { kind: 'fraction', fraction: 0.01 } })
        .ranks,
    ).toEqual([1]);
    expect(planDecomposition(K, { method: 'tucker2', rank: 5 }).ranks).toEqual([5, 5]);
  });

  it('ratio picks the largest ranks whose layer ratio reaches the target', () => {
    for (const [opts, ratio] of [
      [{ method: 'svd', scheme: 'lowered' }, 3],
      [{ method: 'svd', scheme: 'spatial' }, 2.5],
      [{ method: 'tiled-svd', tile: [4, 8] }, 2],
      [{ method: 'cp' }, 10],
      [{ method: 'tucker2' }, 4],
    ] as Array<[Omit<DecomposeOptions, 'rank'>, number]>) {
      const p = planDecomposition(K, { ...opts, rank: { kind: 'ratio', ratio } });
      const c = layerCosts({ ...p, kernelShape: K.shape }, { inputSize: 8 });
      expect(c.compressionRatio).toBeGreaterThanOrEqual(ratio);
      const bigger = p.ranks.length === 2 ? [p.ranks[0]! + 1, p.ranks[1]!] : [p.ranks[0]! + 1];
      if (p.method !== 'tucker2') {
        const c2 = layerCosts({ ...p, ranks: bigger, kernelShape: K.shape }, { inputSize: 8 });
        expect(c2.compressionRatio).toBeLessThan(ratio);
      }
    }
    expect(() => planDecomposition(K, { method: 'svd', rank: { kind: 'ratio', ratio: 1000 } })).toThrow(
      RankError,
    );
  });

  it('energy keeps the smallest rank with that share of squared singular values', () => {
    const k = lowRankKernel(3, 10, 1e-3);
    expect(planDecomposition(k, { method: 'svd', rank: { kind: 'energy', threshold: 0.999 } }).ranks).toEqual(
      [3],
    );
    expect(planDecomposition(k, { method: 'svd', rank: { kind: 'energy', threshold: 1 } }).ranks).toEqual([
      12,
    ]);
    const s = svd(kernelToMatrix(K, 'lowered')).S;
    const total = s.reduce((a, v) => a + v * v, 0);
    const r = planDecomposition(K, { method: 'svd', rank: { kind: 'energy', threshold: 0.8 } }).ranks[0]!;
    expect(s.slice(0, r).reduce((a, v) => a + v * v, 0)).toBeGreaterThanOrEqual(0.8 * total);
    expect(s.slice(0, r - 1).reduce((a, v) => a + v * v, 0)).toBeLessThan(0.8 * total);
  });

  it('energy ranks are those of the full SVD spectra, for every method (spectra from singular values only)', () => {
    // Reference: the rank each spectral matrix group needs, from svd(m).S (the full SVD).
    const referenceRank = (spectra: Float64Array[], threshold: number): number => {
      const total = spectra.reduce((a, sv) => a + sv.reduce((b, v) => b + v * v, 0), 0);
      const len = Math.max(...spectra.map((sv) => sv.length));
      let kept = 0;
      for (let r = 1; r <= len; r++) {
        for (const sv of spectra) kept += r <= sv.length ? sv[r - 1]! ** 2 : 0;
        if (kept >= threshold * total * (1 - 1e-12)) return r;
      }
      return len;
    };
    const tiles = (w: Tensor, a: number, b: number): Tensor[] => {
      const [rows, cols] = w.shape as [number, number];
      const out: Tensor[] = [];
      for (let p = 0; p < rows / a; p++)
        for (let q = 0; q < cols / b; q++)
          out.push(
            new Tensor(
              Float64Array.from({ length: a * b }, (_, e) =>
                w.get(p * a + Math.floor(e / b), q * b + (e % b)),
              ),
              [a, b],
            ),
          );
      return out;
    };
    const spectra = (ms: Tensor[]): Float64Array[] => ms.map((m) => svd(m).S);
    for (const k of [K, lowRankKernel(3, 10, 1e-2), randn([3, 3, 16, 8], 31)]) {
      const cases: Array<[Omit<DecomposeOptions, 'rank'>, Tensor[][]]> = [
        [{ method: 'svd', scheme: 'lowered' }, [[kernelToMatrix(k, 'lowered')]]],
        [{ method: 'svd', scheme: 'spatial' }, [[kernelToMatrix(k, 'spatial')]]],
        [{ method: 'svd', scheme: 'input' }, [[kernelToMatrix(k, 'input')]]],
        [{ method: 'tiled-svd', tile: [4, 8] }, [tiles(kernelToMatrix(k, 'lowered'), 4, 8)]],
        [{ method: 'tucker2' }, [[kernelToMatrix(k, 'input')], [kernelToMatrix(k, 'lowered')]]],
        [{ method: 'cp' }, [[kernelToMatrix(k, 'input')], [kernelToMatrix(k, 'lowered')]]],
      ];
      for (const [opts, groups] of cases)
        for (const threshold of [0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999]) {
          const want = groups.map((g) => referenceRank(spectra(g), threshold));
          const got = planDecomposition(k, { ...opts, rank: { kind: 'energy', threshold } }).ranks;
          expect(got, `${opts.method} ${opts.scheme ?? ''} ${threshold}`).toEqual(
            opts.method === 'cp' ? [Math.max(...want)] : want,
          );
        }
    }
  });

  it('vbmf finds the planted rank, clamps to [1, full] and reports raw ranks', () => {
    const k = lowRankKernel(4, 20, 0.05);
    const d = decompose(k, { method: 'svd', rank: { kind: 'vbmf' } });
    expect(d.ranks).toEqual([4]);
    expect(d.rawRanks).toEqual([4]);
    const noise = randn([3, 3, 8, 12], 3);
    const dn = decompose(noise, { method: 'svd', rank: { kind: 'vbmf' } });
    expect(dn.rawRanks).toEqual([0]);
    expect(dn.ranks).toEqual([1]);
    // Tucker: EVBMF on the mode-S and mode-T unfoldings; planted multilinear ranks (2, 3)
    const core = randn([3, 3, 2, 3], 5);
    const ps = svd(randn([8, 2], 6)).U;
    const pt = svd(randn([12, 3], 7)).U;
    const kt = new Tensor(new Float64Array(3 * 3 * 8 * 12), [3, 3, 8, 12]);
    for (let p = 0; p < 9; p++)
      for (let s = 0; s < 8; s++)
        for (let t = 0; t < 12; t++) {
          let v = 0;
          for (let a = 0; a < 2; a++)
            for (let b = 0; b < 3; b++)
              v += core.data[(p * 2 + a) * 3 + b]! * ps.data[s * 2 + a]! * pt.data[t * 3 + b]!;
          kt.data[(p * 8 + s) * 12 + t] = v + 0.001 * noise.data[(p * 8 + s) * 12 + t]!;
        }
    const dt = decompose(kt, { method: 'tucker2', rank: { kind: 'vbmf' } });
    expect(dt.rawRanks).toEqual([2, 3]);
    expect(dt.ranks).toEqual([2, 3]);
  });

  it('model-ratio reaches the whole-set ratio with the largest ranks that do (one step more misses it)', () => {
    const layers = [
      { kernelShape: [3, 3, 16, 16], options: { method: 'tucker2' as const } },
      { kernelShape: [3, 3, 16, 32], options: { method: 'tucker2' as const } },
      { kernelShape: [3, 3, 32, 32], options: { method: 'svd' as const } },
    ];
    const untargetedParams = 1000;
    const res = modelRatioFraction(layers, 3, { untargetedParams });
    const params = (ranks: number[][]): number =>
      layers.reduce(
        (n, l, i) =>
          n +
          layerCosts(
            {
              ...planDecomposition(randn(l.kernelShape, i), {
                ...l.options,
                rank: ranks[i]!.length === 2 ? [ranks[i]![0]!, ranks[i]![1]!] : ranks[i]![0]!,
              }),
              kernelShape: l.kernelShape,
            },
            { inputSize: 8 },
          ).paramsAfter,
        untargetedParams,
      );
    const before = 9 * (16 * 16 + 16 * 32 + 32 * 32) + untargetedParams;
    expect(res.paramsBefore).toBe(before);
    expect(res.paramsAfter).toBe(params(res.ranks));
    expect(res.ratio).toBeGreaterThanOrEqual(3);
    expect(res.ratio).toBeLessThan(3 * 1.02);
    // the policies give exactly those ranks
    res.policies.forEach((p, i) =>
      expect(
        planDecomposition(randn(layers[i]!.kernelShape, i), { ...layers[i]!.options, rank: p }).ranks,
      ).toEqual(res.ranks[i]),
    );
    // maximal: raising any one rank of any layer misses the target
    res.ranks.forEach((r, i) =>
      r.forEach((_, k) => {
        const up = res.ranks.map((x, j) => (j === i ? x.map((v, m) => v + +(m === k)) : x));
        expect(before / params(up)).toBeLessThan(3);
      }),
    );
    // a loose target: the refinement raises ranks until a layer's factors would outgrow its dense
    // kernel (full Tucker-2 ranks cost more than the kernel), never past that
    const loose = modelRatioFraction(layers, 1.05, { untargetedParams });
    expect(loose.ratio).toBeGreaterThanOrEqual(1.05);
    loose.ranks.forEach((r, i) => {
      const kernel = 9 * layers[i]!.kernelShape[2]! * layers[i]!.kernelShape[3]!;
      const rank = r.length === 2 ? [r[0]!, r[1]!] : r[0]!;
      const after = layerCosts(
        {
          ...planDecomposition(randn(layers[i]!.kernelShape, i), { ...layers[i]!.options, rank }),
          kernelShape: layers[i]!.kernelShape,
        },
        { inputSize: 8 },
      ).paramsAfter;
      expect(after).toBeLessThanOrEqual(kernel);
    });
    // a smaller target keeps more
    const larger = modelRatioFraction(layers, 2);
    expect(larger.fraction).toBeGreaterThan(res.fraction);
    expect(() => modelRatioFraction(layers, 1e6)).toThrow(RankError);
    expect(() => modelRatioFraction([], 2)).toThrow(ValidationError);
    expect(() => decompose(K, { method: 'svd', rank: { kind: 'model-ratio', ratio: 2 } })).toThrow(
      /modelRatioFraction/,
    );
  });
});

describe('bad input', () => {
  it('throws typed errors that say what is allowed', () => {
    expect(() => decompose(randn([3, 3, 8], 1), { method: 'svd', rank: 1 })).toThrow(ShapeError);
    expect(() => decompose(randn([3, 3, 8], 1), { method: 'svd', rank: 1 })).toThrow(/HWIO/);
    expect(() => decompose(K, { method: 'svd', rank: 0 })).toThrow(RankError);
    expect(() => decompose(K, { method: 'svd', rank: 13 })).toThrow(/\[1, 12\]/);
    expect(() => decompose(K, { method: 'svd', rank: 2.5 })).toThrow(RankError);
    expect(() => decompose(K, { method: 'tucker2', rank: [9, 2] })).toThrow(/R_S .*\[1, 8\]/);
    expect(() => decompose(K, { method: 'tiled-svd', rank: 5, tile: [4, 4] })).toThrow(/\[1, 4\]/);
    expect(() => decompose(K, { method: 'cp', rank: 0 })).toThrow(RankError);
    expect(() => decompose(K, { method: 'tiled-svd', rank: 1, tile: [5, 8] })).toThrow(ShapeError);
    expect(() => decompose(K, { method: 'tiled-svd', rank: 1, tile: [4, 7] })).toThrow(/does not divide/);
    expect(() => decompose(K, { method: 'tiled-svd', rank: 1 })).toThrow(ValidationError);
    expect(() => decompose(K, { method: 'svd', rank: 1, tile: [4, 4] })).toThrow(ValidationError);
    expect(() => decompose(K, { method: 'qr' as 'svd', rank: 1 })).toThrow(UnknownNameError);
    expect(() => decompose(K, { method: 'qr' as 'svd', rank: 1 })).toThrow(
      /allowed: svd, tiled-svd, tucker2, cp/,
    );
    expect(() => decompose(K, { method: 'svd', scheme: 'diagonal' as 'input', rank: 1 })).toThrow(
      UnknownNameError,
    );
    expect(() => decompose(K, { method: 'tucker2', scheme: 'input', rank: 1 })).toThrow(ValidationError);
    expect(() => decompose(K, { method: 'svd', rank: [2, 3] })).toThrow(/only for tucker2/);
    expect(() => decompose(K, { method: 'tucker2', rank: 2, order: 'chw' })).toThrow(ValidationError);
    expect(() => decompose(K, { method: 'svd', scheme: 'input', rank: 2, order: 'chw' })).toThrow(
      /svd scheme lowered and tiled-svd only/,
    );
    expect(() => decompose(K, { method: 'svd', rank: 2, order: 'whc' as 'chw' })).toThrow(
      /allowed: hwc, chw/,
    );
    expect(() => decompose(K, { method: 'svd', rank: { kind: 'fraction', fraction: 0 } })).toThrow(
      ValidationError,
    );
    expect(() => decompose(K, { method: 'svd', rank: { kind: 'bogus' } as never })).toThrow(UnknownNameError);
    expect(() => decompose(randn([4, 5], 1), { method: 'cp', rank: 1 })).toThrow(ShapeError);
    expect(() => decompose(randn([4, 5], 1), { method: 'svd', scheme: 'spatial', rank: 1 })).toThrow(
      ValidationError,
    );
    const nan = K.clone();
    nan.data[3] = Number.NaN;
    expect(() => decompose(nan, { method: 'svd', rank: 1 })).toThrow(ValidationError);
    const d = decompose(K, { method: 'svd', rank: 2 });
    expect(() => factoredLayer(d, { strides: 0 })).toThrow(ValidationError);
    expect(() => factoredLayer(d, { padding: 'full' as 'same' })).toThrow(UnknownNameError);
    expect(() => factoredLayer(d, { bias: randn([5], 1) })).toThrow(ValidationError);
  });

  it('names the factor tensors for export', () => {
    expect(Object.keys(factorTensors(decompose(K, { method: 'svd', rank: 2 })))).toEqual(['U', 'S', 'V']);
    expect(Object.keys(factorTensors(decompose(K, { method: 'tucker2', rank: 2 })))).toEqual([
      'core',
      'factor_s',
      'factor_t',
    ]);
    expect(
      Object.keys(factorTensors(decompose(K, { method: 'cp', rank: 2, cp: { maxIterations: 2 } }))),
    ).toEqual(['weights', 'factor_h', 'factor_w', 'factor_s', 'factor_t']);
  });
});

describe('optionsFromCompression', () => {
  it('maps a canonical compression config onto decompose options', async () => {
    const { resolveTrialConfig } = await import('@flatrank/protocol');
    const { optionsFromCompression } = await import('../src/index.js');
    const cfg = resolveTrialConfig({
      model: 'resnet8',
      dataset: { name: 'cifar10' },
      training: { epochs: 1 },
      method: 'finetune',
      compression: { decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } },
    });
    const comp = cfg.compression!;
    const o = optionsFromCompression(comp, { firstLayer: true });
    expect(o.method).toBe('tucker2');
    expect(o.scheme).toBeUndefined();
    expect(o.tucker?.firstLayer).toBe(true);
    expect(planDecomposition(K, o).fallback).toBe('tucker1');
    const t = optionsFromCompression({
      ...comp,
      decomposition: 'tiled-svd',
      scheme: 'lowered',
      tile: [4, 8],
      rank: { kind: 'rank', rank: 2 },
    });
    expect(decompose(K, t).tile).toEqual([4, 8]);
    const c = optionsFromCompression(
      { ...comp, decomposition: 'cp', rank: { kind: 'rank', rank: 2 } },
      { cpSeed: 9 },
    );
    expect(c.cp?.seed).toBe(9);
  });
});

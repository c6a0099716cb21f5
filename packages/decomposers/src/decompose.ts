import { ValidationError, type CompressionConfig, type LayerRecord } from '@flatrank/protocol';
import { Tensor, cpAls, cpReconstruct, partialTucker, svd, tuckerReconstruct } from '@flatrank/core';
import {
  kernelDims,
  kernelDimsFromShape,
  kernelToMatrix,
  likeInput,
  matrixShape,
  matrixToKernel,
  type KernelDims,
  type LayerKernel,
} from './kernel.js';
import { chainShapes, freeRanks, normalizeSettings, planCosts, planShape, resolveRanks } from './plan.js';
import type {
  CpDecomposition,
  DecomposeOptions,
  DecomposeRun,
  DecompositionPlan,
  FactoredConvWeights,
  FactoredLayer,
  KernelDecomposition,
  LayerCosts,
  LayerGeometry,
  LayerSettings,
  SvdDecomposition,
  TiledSvdDecomposition,
  Tucker2Decomposition,
} from './types.js';

function relErr(ref: ArrayLike<number>, approx: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (ref[i]! - approx[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return den === 0 ? 0 : Math.sqrt(num / den);
}

function checkFinite(k: Tensor): void {
  for (let i = 0; i < k.size; i++)
    if (!Number.isFinite(k.data[i]!))
      throw new ValidationError('kernel', `kernel has a non-finite value at flat index ${i}`);
}

/** Validates the options, chooses the ranks (rank policy) and returns the plan, without factorising. */
export function planDecomposition(
  kernel: LayerKernel,
  options: DecomposeOptions,
): DecompositionPlan & { rawRanks: number[] | null } {
  if (options === null || typeof options !== 'object')
    throw new ValidationError('options', 'decompose needs an options object');
  const dims = kernelDims(kernel);
  const shape = planShape(dims, options);
  const { ranks, rawRanks } = resolveRanks(kernel, dims, shape, options.rank);
  return { ...shape, ranks, rawRanks };
}

/**
 * How far a warm-started CP-ALS refines by default: until a sweep improves the relative error by
 * less than 0.1 % of itself. From the factors of a distortion of a trained ResNet-20 3x3x64x64
 * kernel, the distorted kernel perturbed at random by 1-10 % of its norm, that is 5 sweeps at rank
 * 68 and ~20 at rank 175 (a cold fit runs its 200), ending within 0.5-1.6 % of the error 60-100
 * sweeps reach.
 */
export const CP_WARM_RELATIVE_TOLERANCE = 1e-3;

function checkRun(run: DecomposeRun): void {
  if (run === null || typeof run !== 'object')
    throw new ValidationError('run', 'decompose: run must be an object ({ previous?, onSweep? })');
  const p: unknown = run.previous;
  if (p !== undefined && p !== null && (typeof p !== 'object' || !('method' in p) || !('kernelShape' in p)))
    throw new ValidationError(
      'run.previous',
      'run.previous must be a decomposition (decompose result) or null',
    );
  if (run.onSweep !== undefined && typeof run.onSweep !== 'function')
    throw new ValidationError('run.onSweep', `run.onSweep must be a function, got ${typeof run.onSweep}`);
}

/** The previous CP factors to warm-start from, when the previous fit is CP of this shape and rank. */
function cpWarmStart(
  previous: KernelDecomposition | null | undefined,
  kernel: LayerKernel,
  rank: number,
): Tensor[] | null {
  if (!previous || previous.method !== 'cp') return null;
  const sameShape =
    previous.kernelShape.length === kernel.shape.length &&
    previous.kernelShape.every((d, i) => d === kernel.shape[i]);
  if (!sameShape || previous.ranks[0] !== rank) return null;
  return [previous.H, previous.W, previous.S, previous.T];
}

/**
 * Low-rank approximation of one layer's kernel (HWIO [kh, kw, S, T], or dense [in, out]):
 * validates, picks the ranks by the rank policy, factorises. Throws ShapeError / RankError /
 * UnknownNameError / ValidationError on bad input. `run` may warm-start CP-ALS from a previous
 * decomposition of the layer and report the sweeps of iterative fits (DecomposeRun).
 */
export function decompose(
  kernel: LayerKernel,
  options: DecomposeOptions,
  run: DecomposeRun = {},
): KernelDecomposition {
  checkRun(run);
  const plan = planDecomposition(kernel, options);
  checkFinite(kernel);
  const dims = kernelDims(kernel);
  const base = {
    method: plan.method,
    scheme: plan.scheme,
    tile: plan.tile,
    fallback: plan.fallback,
    order: plan.order,
    ranks: plan.ranks,
    rawRanks: plan.rawRanks,
    kernelShape: [...kernel.shape],
    kernelKind: dims.kind,
    dtype: kernel.dtype,
  };
  const ref = kernel.data;
  if (plan.method === 'tiled-svd') return tiledSvd(kernel, base);
  const onSweep = run.onSweep ? { onSweep: run.onSweep } : {};
  if (plan.method === 'cp') {
    const cp = options.cp ?? {};
    const warm = cpWarmStart(run.previous, kernel, plan.ranks[0]!);
    const r = cpAls(kernel.dtype === 'float64' ? kernel : kernel.astype('float64'), {
      rank: plan.ranks[0]!,
      ...(warm
        ? {
            init: { factors: warm },
            relativeTolerance: cp.warmRelativeTolerance ?? CP_WARM_RELATIVE_TOLERANCE,
          }
        : cp.init !== undefined
          ? { init: cp.init }
          : {}),
      ...(cp.seed !== undefined ? { seed: cp.seed } : {}),
      ...(cp.maxIterations !== undefined ? { maxIterations: cp.maxIterations } : {}),
      ...(cp.tolerance !== undefined ? { tolerance: cp.tolerance } : {}),
      ...onSweep,
    });
    const [H, W, S, T] = r.factors as [Tensor, Tensor, Tensor, Tensor];
    const out: CpDecomposition = {
      ...base,
      method: 'cp',
      weights: r.weights,
      H,
      W,
      S,
      T,
      seed: r.seed,
      init: r.init,
      relativeError: r.relativeError,
      iterations: r.iterations,
      converged: r.converged,
    };
    return out;
  }
  if (plan.method === 'tucker2' && plan.fallback === null) {
    const t = options.tucker ?? {};
    const algorithm = t.algorithm ?? 'hooi';
    const r = partialTucker(kernel.dtype === 'float64' ? kernel : kernel.astype('float64'), {
      modes: [2, 3],
      ranks: plan.ranks,
      algorithm,
      ...(t.maxIterations !== undefined ? { maxIterations: t.maxIterations } : {}),
      ...(t.tolerance !== undefined ? { tolerance: t.tolerance } : {}),
      ...onSweep,
    });
    const out: Tucker2Decomposition = {
      ...base,
      method: 'tucker2',
      fallback: null,
      algorithm,
      core: r.core,
      PS: r.factors[2]!,
      PT: r.factors[3]!,
      relativeError: r.relativeError,
      iterations: r.iterations,
      converged: r.converged,
    };
    return out;
  }
  // svd, and the Tucker fallbacks (Tucker-1 / 2-D Tucker are truncated SVDs of the lowered matrix)
  const order = plan.order ?? 'hwc';
  const m = kernelToMatrix(kernel, plan.scheme!, order);
  const r = freeRanks(plan, plan.ranks)[0]!;
  const res = svd(m, { rank: r });
  const approx = matrixToKernel(svdProduct(res.U, res.S, res.V), dims, plan.scheme!, order);
  const out: SvdDecomposition = {
    ...base,
    method: plan.method as 'svd' | 'tucker2',
    U: res.U,
    S: res.S,
    V: res.V,
    relativeError: relErr(ref, approx.data),
    iterations: 0,
    converged: true,
  };
  return out;
}

/** U diag(S) V^T (rows x cols). */
function svdProduct(u: Tensor, s: ArrayLike<number>, v: Tensor, sOffset = 0): Tensor {
  const [rows, r] = u.shape as [number, number];
  const cols = v.shape[0]!;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let k = 0; k < r; k++) {
      const c = u.data[i * r + k]! * s[sOffset + k]!;
      if (c === 0) continue;
      for (let j = 0; j < cols; j++) out[i * cols + j] += c * v.data[j * r + k]!;
    }
  return new Tensor(out, [rows, cols]);
}

function tiledSvd(
  kernel: LayerKernel,
  base: Omit<
    TiledSvdDecomposition,
    'U' | 'S' | 'V' | 'relativeError' | 'iterations' | 'converged' | 'method'
  >,
): TiledSvdDecomposition {
  const w = kernelToMatrix(kernel, 'lowered', base.order ?? 'hwc');
  const [rows, cols] = w.shape as [number, number];
  const [a, b] = base.tile!;
  const r = base.ranks[0]!;
  const gr = rows / a;
  const gc = cols / b;
  const U = new Float64Array(gr * gc * a * r);
  const S = new Float64Array(gr * gc * r);
  const V = new Float64Array(gr * gc * b * r);
  const tile = new Float64Array(a * b);
  for (let p = 0; p < gr; p++)
    for (let q = 0; q < gc; q++) {
      for (let i = 0; i < a; i++)
        for (let j = 0; j < b; j++) tile[i * b + j] = w.data[(p * a + i) * cols + q * b + j]!;
      const res = svd(new Tensor(tile.slice(), [a, b]), { rank: r });
      const t = p * gc + q;
      U.set(res.U.data, t * a * r);
      S.set(res.S, t * r);
      V.set(res.V.data, t * b * r);
    }
  const out: TiledSvdDecomposition = {
    ...base,
    method: 'tiled-svd',
    U: new Tensor(U, [gr, gc, a, r]),
    S: new Tensor(S, [gr, gc, r]),
    V: new Tensor(V, [gr, gc, b, r]),
    relativeError: 0,
    iterations: 0,
    converged: true,
  };
  out.relativeError = relErr(kernel.data, reconstruct(out).data);
  return out;
}

function dimsOf(d: KernelDecomposition): KernelDims {
  return kernelDimsFromShape(d.kernelShape);
}

/** The kernel the decomposition represents: same shape (and dtype) as the decomposed kernel. */
export function reconstruct(d: KernelDecomposition): Tensor {
  const dims = dimsOf(d);
  let k: Tensor;
  if (d.method === 'tiled-svd') {
    const [rows, cols] = matrixShape(dims, 'lowered');
    const [gr, gc, a, r] = d.U.shape as [number, number, number, number];
    const b = d.V.shape[2]!;
    const w = new Float64Array(rows * cols);
    for (let p = 0; p < gr; p++)
      for (let q = 0; q < gc; q++) {
        const t = p * gc + q;
        const u = new Tensor(d.U.data.subarray(t * a * r, (t + 1) * a * r), [a, r]);
        const v = new Tensor(d.V.data.subarray(t * b * r, (t + 1) * b * r), [b, r]);
        const blk = svdProduct(u, d.S.data, v, t * r);
        for (let i = 0; i < a; i++)
          for (let j = 0; j < b; j++) w[(p * a + i) * cols + q * b + j] = blk.data[i * b + j]!;
      }
    k = matrixToKernel(new Tensor(w, [rows, cols]), dims, 'lowered', d.order ?? 'hwc');
  } else if (d.method === 'cp') {
    k = cpReconstruct(d.weights, [d.H, d.W, d.S, d.T]);
  } else if ('core' in d) {
    k = tuckerReconstruct(d.core, [null, null, d.PS, d.PT]);
  } else {
    k = matrixToKernel(svdProduct(d.U, d.S, d.V), dims, d.scheme!, d.order ?? 'hwc');
  }
  return d.dtype === 'float64' ? k : k.astype(d.dtype);
}

/** decompose then reconstruct: the distortion step's K -> K'. */
export function lowRankApproximation(
  kernel: LayerKernel,
  options: DecomposeOptions,
  run: DecomposeRun = {},
): { kernel: Tensor; decomposition: KernelDecomposition } {
  const decomposition = decompose(kernel, options, run);
  return { kernel: likeInput(reconstruct(decomposition), kernel), decomposition };
}

function zeros(shape: number[]): Float64Array {
  return new Float64Array(shape.reduce((p, v) => p * v, 1));
}

/**
 * The export form. Chains: each conv's kernel in HWIO (depthwise [kh, kw, C, 1], dense [in, out]),
 * the original stride / padding placed as in `chainShapes`, the original bias on the last layer.
 * Weights have the decomposed kernel's dtype.
 */
export function factoredLayer(d: KernelDecomposition, settings: LayerSettings = {}): FactoredLayer {
  const dims = dimsOf(d);
  const { strides, padding } = normalizeSettings(settings);
  const bias = settings.bias ?? null;
  if (bias !== null && (bias.rank !== 1 || bias.shape[0] !== dims.t))
    throw new ValidationError(
      'bias',
      `bias must be a vector of length T = ${dims.t}, got [${bias.shape.join(', ')}]`,
    );
  const cast = (t: Tensor): Tensor => (d.dtype === 'float64' ? t : t.astype(d.dtype));
  if (d.method === 'tiled-svd') {
    const [gr, gc, a, r] = d.U.shape as [number, number, number, number];
    const left = d.U.data.slice() as Float64Array;
    for (let t = 0; t < gr * gc; t++)
      for (let i = 0; i < a; i++)
        for (let k = 0; k < r; k++) left[(t * a + i) * r + k]! *= d.S.data[t * r + k]!;
    const [rows, cols] = matrixShape(dims, 'lowered');
    return {
      form: 'tiled-gemm',
      method: 'tiled-svd',
      rows,
      cols,
      kernelShape: [...d.kernelShape],
      tile: d.tile!,
      rank: r,
      left: cast(new Tensor(left, [gr, gc, a, r])),
      right: cast(d.V),
      strides,
      padding,
      useBias: settings.useBias ?? bias !== null,
      bias,
    };
  }
  const shapes = chainShapes(dims, d, settings)!;
  const kernels: Float64Array[] = shapes.map((l) => zeros(l.kernelShape));
  const { kh, kw, s: S, t: T } = dims;
  if (d.method === 'cp') {
    const R = d.weights.length;
    const [k0, k1, k2, k3] = kernels as [Float64Array, Float64Array, Float64Array, Float64Array];
    for (let s = 0; s < S; s++) for (let r = 0; r < R; r++) k0[s * R + r] = d.S.data[s * R + r]!; // [1,1,S,R]
    for (let i = 0; i < kh; i++) for (let r = 0; r < R; r++) k1[i * R + r] = d.H.data[i * R + r]!; // [kh,1,R,1]
    for (let j = 0; j < kw; j++) for (let r = 0; r < R; r++) k2[j * R + r] = d.W.data[j * R + r]!; // [1,kw,R,1]
    for (let r = 0; r < R; r++)
      for (let t = 0; t < T; t++) k3[r * T + t] = d.weights[r]! * d.T.data[t * R + r]!; // [1,1,R,T]
  } else if ('core' in d) {
    const [rs, rt] = d.ranks as [number, number];
    const [k0, k1, k2] = kernels as [Float64Array, Float64Array, Float64Array];
    k0.set(d.PS.data); // [1,1,S,R_S] = P_S
    k1.set(d.core.data); // [kh,kw,R_S,R_T]
    for (let b = 0; b < rt; b++) for (let t = 0; t < T; t++) k2[b * T + t] = d.PT.data[t * rt + b]!; // [1,1,R_T,T] = P_T^T
    void rs;
  } else {
    // Truncated SVD M ~= U diag(S) V^T; the singular values go into the first layer.
    const r = d.S.length;
    const [k0, k1] = kernels as [Float64Array, Float64Array];
    const U = d.U.data;
    const V = d.V.data;
    const sig = d.S;
    if (dims.kind === 'dense' || d.scheme === 'lowered') {
      // W = K^T-lowered (T x kh*kw*S): first layer [kh,kw,S,r][(i*kw+j)*S+s, k] = sigma_k V[col(i,j,s), k]
      // with col = (i*kw+j)*S+s (hwc) or s*kh*kw+i*kw+j (chw).
      const chw = d.order === 'chw';
      for (let p = 0; p < kh * kw; p++)
        for (let s = 0; s < S; s++) {
          const c = chw ? s * kh * kw + p : p * S + s;
          for (let k = 0; k < r; k++) k0[(p * S + s) * r + k] = sig[k]! * V[c * r + k]!;
        }
      for (let k = 0; k < r; k++) for (let t = 0; t < T; t++) k1[k * T + t] = U[t * r + k]!;
    } else if (d.scheme === 'spatial') {
      // M[(i*S + s), (j*T + t)]: first [kh,1,S,r] = U sigma, second [1,kw,r,T][j,k,t] = V[j*T+t, k]
      for (let i = 0; i < kh; i++)
        for (let s = 0; s < S; s++)
          for (let k = 0; k < r; k++) k0[(i * S + s) * r + k] = sig[k]! * U[(i * S + s) * r + k]!;
      for (let j = 0; j < kw; j++)
        for (let k = 0; k < r; k++)
          for (let t = 0; t < T; t++) k1[(j * r + k) * T + t] = V[(j * T + t) * r + k]!;
    } else {
      // input: M[s, (i*kw+j)*T + t]: first [1,1,S,r] = U sigma, second [kh,kw,r,T][p,k,t] = V[p*T+t, k]
      for (let s = 0; s < S; s++) for (let k = 0; k < r; k++) k0[s * r + k] = sig[k]! * U[s * r + k]!;
      for (let p = 0; p < kh * kw; p++)
        for (let k = 0; k < r; k++)
          for (let t = 0; t < T; t++) k1[(p * r + k) * T + t] = V[(p * T + t) * r + k]!;
    }
  }
  const layers: FactoredConvWeights[] = shapes.map((l, i) => ({
    ...l,
    kernel: cast(new Tensor(kernels[i]!, l.kernelShape)),
    bias: i === shapes.length - 1 ? bias : null,
  }));
  return { form: 'chain', method: d.method, layers };
}

/** Parameter and multiply-add counts before and after, for one image through the layer. */
export function layerCosts(
  d: KernelDecomposition | (DecompositionPlan & { kernelShape: readonly number[] }),
  geometry: LayerGeometry,
): LayerCosts {
  const dims = kernelDimsFromShape(d.kernelShape);
  return planCosts(dims, d, geometry);
}

/** The per-layer record of a compressed layer (the 'layer' trial event). */
export function layerRecord(name: string, d: KernelDecomposition, geometry: LayerGeometry): LayerRecord {
  const c = layerCosts(d, geometry);
  return {
    name,
    decomposition: d.method,
    scheme: d.method === 'svd' || d.method === 'tiled-svd' ? d.scheme : null,
    order: d.order,
    ranks: [...d.ranks],
    rawRanks: d.rawRanks ? [...d.rawRanks] : null,
    tile: d.tile ? [d.tile[0], d.tile[1]] : null,
    kernelShape: [...d.kernelShape],
    paramsBefore: c.paramsBefore,
    paramsAfter: c.paramsAfter,
    macsBefore: c.macsBefore,
    macsAfter: c.macsAfter,
    relativeError: d.relativeError,
    iterations: d.iterations,
    converged: d.converged,
    cp: d.method === 'cp' ? { init: d.init, seed: d.seed, fit: 1 - d.relativeError } : null,
  };
}

/** Named factor tensors (for writing .npy files): see README "Factors". */
export function factorTensors(d: KernelDecomposition): Record<string, Tensor> {
  switch (d.method) {
    case 'tiled-svd':
      return { U: d.U, S: d.S, V: d.V };
    case 'cp':
      return {
        weights: new Tensor(Float64Array.from(d.weights), [d.weights.length]),
        factor_h: d.H,
        factor_w: d.W,
        factor_s: d.S,
        factor_t: d.T,
      };
    default:
      if ('core' in d) return { core: d.core, factor_s: d.PS, factor_t: d.PT };
      return { U: d.U, S: new Tensor(Float64Array.from(d.S), [d.S.length]), V: d.V };
  }
}

/**
 * DecomposeOptions from a trial's canonical CompressionConfig (protocol), for one layer. The scheme
 * is kept for svd (default lowered) and dropped for tucker2 / cp (the config stores null there).
 * 'model-ratio' must first be turned into a fraction with modelRatioFraction.
 */
export function optionsFromCompression(
  c: CompressionConfig,
  layer: { firstLayer?: boolean; cpSeed?: number } = {},
): DecomposeOptions {
  const opts: DecomposeOptions = { method: c.decomposition, rank: c.rank };
  if (c.decomposition === 'svd') opts.scheme = c.scheme ?? 'lowered';
  if (c.decomposition === 'tiled-svd') opts.tile = c.tile;
  if (c.order !== undefined) opts.order = c.order;
  if (c.decomposition === 'tucker2')
    opts.tucker = { ...c.tucker, ...(layer.firstLayer ? { firstLayer: true } : {}) };
  if (c.decomposition === 'cp')
    opts.cp = { ...c.cp, ...(layer.cpSeed !== undefined ? { seed: layer.cpSeed } : {}) };
  return opts;
}

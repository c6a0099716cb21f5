import type { Decomposition, LoweringOrder, RankPolicy, SvdScheme } from '@flatrank/protocol';
import type { CpInit, DType, Tensor } from '@flatrank/core';

export type Padding = 'same' | 'valid';
export const PADDINGS = ['same', 'valid'] as const;

/** Tucker-2 refinements (defaults: HOOI, 50 sweeps, tolerance 1e-6 on the relative error change). */
export interface TuckerSettings {
  algorithm?: 'hooi' | 'hosvd';
  maxIterations?: number;
  tolerance?: number;
  /**
   * This is the network's first conv (few input channels): use Tucker-1 (mode T only), which is the
   * lowered SVD, instead of Tucker-2 (Kim et al. 2016).
   */
  firstLayer?: boolean;
}

/** CP-ALS settings (defaults: svd init, seed 0, 200 sweeps, tolerance 1e-7). */
export interface CpSettings {
  init?: 'svd' | 'random';
  seed?: number;
  maxIterations?: number;
  tolerance?: number;
  /**
   * A warm start (DecomposeRun.previous) also stops once a sweep changes the relative error by less
   * than this fraction of it (default CP_WARM_RELATIVE_TOLERANCE). Cold fits ignore it.
   */
  warmRelativeTolerance?: number;
}

/**
 * What one decompose call gets besides its settings: nothing that changes what is computed for a
 * cold fit, only where an iterative fit starts and who hears of its progress.
 */
export interface DecomposeRun {
  /**
   * A previous decomposition of the same layer, of a nearby kernel (distortion training: the last
   * distortion's, a few hundred SGD steps ago). CP-ALS starts from its factors when it is a CP
   * decomposition of the same kernel shape and rank (the result records init 'warm'); otherwise,
   * and for every other method, the fit is cold, as without it.
   */
  previous?: KernelDecomposition | null;
  /**
   * Called after every sweep of an iterative fit (HOOI, CP-ALS) with its 1-based number and the
   * relative error: one fit of a wide layer is one long synchronous call, and this is where its
   * caller can send heartbeats. An exception thrown here ends the fit and propagates.
   */
  onSweep?: (sweep: number, relativeError: number) => void;
}

/**
 * How to choose ranks: a RankPolicy (from @flatrank/protocol), or a bare rank (= { kind: 'rank' }),
 * or a Tucker pair [R_S, R_T] (= { kind: 'ranks' }).
 */
export type RankSpec = RankPolicy | number | readonly [number, number];

export interface DecomposeOptions {
  method: Decomposition;
  /** svd: 'lowered' (default) | 'spatial' | 'input'; tiled-svd: 'lowered' only; tucker2 / cp: none. */
  scheme?: SvdScheme | null;
  rank: RankSpec;
  /**
   * Column order of the lowered matrix (svd lowered and tiled-svd): 'hwc' (default) or 'chw'. A
   * plain SVD's error does not depend on it; a tiled SVD's does. 'chw' is refused elsewhere.
   */
  order?: LoweringOrder | null;
  /** tiled-svd only: tile [a, b] of the lowered T x (kh*kw*S) matrix (a rows, b columns). */
  tile?: readonly [number, number] | null;
  tucker?: TuckerSettings;
  cp?: CpSettings;
}

/** Tucker-2 on a 1x1 conv or a dense kernel is a 2-D SVD; on a first layer, Tucker-1 (= lowered SVD). */
export type TuckerFallback = 'tucker1' | 'svd-2d';

/** What is decided before any factorisation: enough to count parameters and multiply-adds. */
export interface DecompositionPlan {
  method: Decomposition;
  /** svd / tiled-svd / the tucker2 fallbacks: the matrix that is factored; null for tucker2 proper and cp. */
  scheme: SvdScheme | null;
  tile: [number, number] | null;
  fallback: TuckerFallback | null;
  /** Column order of the lowered matrix for svd lowered / tiled-svd; null where no order is chosen. */
  order: LoweringOrder | null;
  /** svd, tiled-svd (per tile), cp: [r]; tucker2: [R_S, R_T] (Tucker-1: [S, R_T]; 2-D: [r, r]). */
  ranks: number[];
}

interface DecompositionBase extends DecompositionPlan {
  kernelShape: number[];
  kernelKind: 'conv' | 'dense';
  dtype: DType;
  /** EVBMF raw estimates when the rank policy was vbmf (see README for their layout), else null. */
  rawRanks: number[] | null;
  /** ||K - K'||_F / ||K||_F */
  relativeError: number;
  /** Iterations of the iterative fit (HOOI sweeps, ALS sweeps); 0 for SVD-based methods. */
  iterations: number;
  converged: boolean;
}

/** A truncated SVD M ~= U diag(S) V^T of the scheme's matrix (svd, and the tucker2 fallbacks). */
export interface SvdDecomposition extends DecompositionBase {
  method: 'svd' | 'tucker2';
  /** rows x r */
  U: Tensor;
  S: Float64Array;
  /** cols x r */
  V: Tensor;
}

/** Tiles of the lowered matrix; tile (p, q) covers rows p*a..p*a+a-1, columns q*b..q*b+b-1. */
export interface TiledSvdDecomposition extends DecompositionBase {
  method: 'tiled-svd';
  /** [T/a, kh*kw*S/b, a, r] */
  U: Tensor;
  /** [T/a, kh*kw*S/b, r] */
  S: Tensor;
  /** [T/a, kh*kw*S/b, b, r] */
  V: Tensor;
}

/** K ~= core x_S P_S x_T P_T; core [kh, kw, R_S, R_T], P_S [S, R_S], P_T [T, R_T] orthonormal. */
export interface Tucker2Decomposition extends DecompositionBase {
  method: 'tucker2';
  fallback: null;
  algorithm: 'hooi' | 'hosvd';
  core: Tensor;
  PS: Tensor;
  PT: Tensor;
}

/** K[i,j,s,t] ~= sum_r lambda_r H[i,r] W[j,r] S[s,r] T[t,r] (unit columns). */
export interface CpDecomposition extends DecompositionBase {
  method: 'cp';
  weights: Float64Array;
  /** [kh, R] */
  H: Tensor;
  /** [kw, R] */
  W: Tensor;
  /** [S, R] */
  S: Tensor;
  /** [T, R] */
  T: Tensor;
  seed: number;
  /** 'warm' when CP-ALS started from a previous decomposition's factors (DecomposeRun.previous). */
  init: CpInit;
}

export type KernelDecomposition =
  SvdDecomposition | TiledSvdDecomposition | Tucker2Decomposition | CpDecomposition;

/** The original layer's convolution settings (the factored chain mirrors them). */
export interface LayerSettings {
  /** [sh, sw] or one number for both; default 1. */
  strides?: readonly [number, number] | number;
  /** Default 'same'. */
  padding?: Padding;
  /** The original bias (length T); it goes on the last conv of the chain. */
  bias?: Tensor | null;
  /** Whether the original layer has a bias (default: bias given). */
  useBias?: boolean;
}

/** LayerSettings plus the layer's input spatial size, for multiply-add counts (dense layers: ignored). */
export interface LayerGeometry extends LayerSettings {
  /** [H, W] or one number for both. */
  inputSize?: readonly [number, number] | number;
}

/** One layer of a factored chain, in TF.js terms. */
export interface FactoredConv {
  kind: 'conv2d' | 'depthwise' | 'dense';
  /** conv2d: HWIO [kh, kw, Cin, Cout]; depthwise: [kh, kw, C, 1]; dense: [in, out]. */
  kernelShape: number[];
  strides: [number, number];
  padding: Padding;
  /** 1 for conv2d and dense, C for depthwise. */
  groups: number;
  inChannels: number;
  outChannels: number;
  /** Only the last layer of a chain carries the original bias. */
  useBias: boolean;
}

export interface FactoredConvWeights extends FactoredConv {
  kernel: Tensor;
  bias: Tensor | null;
}

/** Export form: a chain of convs (svd, tucker2, cp) or, for tiled-svd, tiled GEMMs (no conv chain). */
export type FactoredLayer =
  | { form: 'chain'; method: Decomposition; layers: FactoredConvWeights[] }
  | {
      form: 'tiled-gemm';
      method: 'tiled-svd';
      /** The lowered matrix T x (kh*kw*S) and its im2col geometry. */
      rows: number;
      cols: number;
      kernelShape: number[];
      tile: [number, number];
      rank: number;
      /** Per tile (p, q): the output-side factor U diag(S), [T/a, cols/b, a, r]. */
      left: Tensor;
      /** Per tile (p, q): the input-side factor V, [T/a, cols/b, b, r]. */
      right: Tensor;
      strides: [number, number];
      padding: Padding;
      useBias: boolean;
      bias: Tensor | null;
    };

export interface LayerCosts {
  paramsBefore: number;
  paramsAfter: number;
  macsBefore: number;
  macsAfter: number;
  /** paramsBefore / paramsAfter */
  compressionRatio: number;
  /** macsBefore / macsAfter */
  macsRatio: number;
}

export type { Decomposition, LoweringOrder, RankPolicy, SvdScheme };

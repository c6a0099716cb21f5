// Over 500 lines on purpose: one small registration per TF.js kernel, all sharing the buffer helpers above them.
/**
 * Kernels of the 'native' backend. The backend is a MathBackendCPU (tensors are plain typed arrays),
 * so every kernel here reads and writes those arrays directly through the addon. A kernel returns
 * null when a case is outside what it handles (other dtypes, NCHW, unusual broadcasting), and the
 * wrapper then runs the cpu backend's own kernel, so nothing the native code skips is lost.
 */
import type * as tf from '@tensorflow/tfjs-core';
import {
  backend_util,
  slice_util,
  util,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { NativeAddon } from './addon.js';
import { NativeBackend } from './buffers.js';
import {
  BATCH_NORM_RELU_TRAINING_GRAD_KERNEL,
  BATCH_NORM_RELU_TRAINING_KERNEL,
  BATCH_NORM_TRAINING_GRAD_KERNEL,
  BATCH_NORM_TRAINING_KERNEL,
  SGD_MOMENTUM_KERNEL,
} from '@flatrank/protocol';

type Inputs = Record<string, TensorInfo | undefined>;
interface Args {
  inputs: Inputs;
  backend: MathBackendCPU;
  attrs: NamedAttrMap;
}
type NativeKernel = (args: Args, n: NativeAddon) => TensorInfo | TensorInfo[] | null;

function f32(b: MathBackendCPU, t: TensorInfo | undefined): Float32Array | null {
  if (!t || t.dtype !== 'float32') return null;
  const v = b.data.get(t.dataId)?.values;
  return v instanceof Float32Array ? v : null;
}

function out(b: MathBackendCPU, shape: number[], values: Float32Array): TensorInfo {
  return b.makeTensorInfo(shape, 'float32', values);
}

const i32 = (a: number[]) => Int32Array.from(a);

/** Output buffer for a kernel: recycled by the NativeBackend when possible (contents arbitrary). */
function alloc(b: MathBackendCPU, n: number): Float32Array {
  return b instanceof NativeBackend ? b.alloc(n) : new Float32Array(n);
}

// ---------------------------------------------------------------- convolution

/** Order of the addon's conv params (native/src/addon.cc ConvP). */
export const CONV_PARAMS = [
  'N',
  'IH',
  'IW',
  'IC',
  'OH',
  'OW',
  'OC',
  'KH',
  'KW',
  'SH',
  'SW',
  'DH',
  'DW',
  'PT',
  'PL',
  'PB',
  'PR',
  'G',
  'ACT',
] as const;

/**
 * Conv params for oneDNN, or null when tfjs's padding does not fit oneDNN's output-size rule
 * (floor((in + pt + pb - effK) / s) + 1 == out); we then retry with the bottom/right padding that fits.
 */
function convParams(c: backend_util.Conv2DInfo, groups: number, act: number): Int32Array | null {
  const fit = (
    inp: number,
    k: number,
    s: number,
    before: number,
    after: number,
    o: number,
  ): number | null => {
    if (Math.floor((inp + before + after - k) / s) + 1 === o) return after;
    const alt = (o - 1) * s + k - inp - before;
    return alt >= 0 && Math.floor((inp + before + alt - k) / s) + 1 === o ? alt : null;
  };
  const p = c.padInfo;
  if (p.top < 0 || p.left < 0) return null;
  if ([c.batchSize, c.outHeight, c.outWidth, c.outChannels, c.inChannels].some((v) => !(v > 0))) return null;
  // oneDNN 2.6's 1x1 convolutions with unequal strides compute wrong results and write out of
  // bounds (found by tests/native-kernels.test.ts); the cpu kernel handles that rare case.
  if (c.filterHeight === 1 && c.filterWidth === 1 && c.strideHeight !== c.strideWidth) return null;
  const pb = fit(c.inHeight, c.effectiveFilterHeight, c.strideHeight, p.top, p.bottom, c.outHeight);
  const pr = fit(c.inWidth, c.effectiveFilterWidth, c.strideWidth, p.left, p.right, c.outWidth);
  if (pb === null || pr === null) return null;
  return i32([
    c.batchSize,
    c.inHeight,
    c.inWidth,
    c.inChannels,
    c.outHeight,
    c.outWidth,
    c.outChannels,
    c.filterHeight,
    c.filterWidth,
    c.strideHeight,
    c.strideWidth,
    c.dilationHeight,
    c.dilationWidth,
    p.top,
    p.left,
    pb,
    pr,
    groups,
    act,
  ]);
}

function isNHWC(attrs: NamedAttrMap): boolean {
  const f = attrs['dataFormat'] as string | undefined;
  return f === undefined || f === 'NHWC' || f === 'channelsLast';
}

function activationCode(attrs: NamedAttrMap): number | null {
  const a = attrs['activation'] as string | undefined;
  if (a === undefined || a === 'linear') return 0;
  if (a === 'relu') return 1;
  return null;
}

/** The geometry of a conv (forward or either gradient) from its input / filter shapes and attrs. */
function convInfo(
  xShape: number[],
  filterShape: number[],
  attrs: NamedAttrMap,
  depthwise: boolean,
): backend_util.Conv2DInfo {
  return backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs['strides'] as number | [number, number],
    (attrs['dilations'] as number | [number, number] | undefined) ?? 1,
    attrs['pad'] as 'same',
    attrs['dimRoundingMode'] as 'floor' | undefined,
    depthwise,
  );
}

function convForward(args: Args, n: NativeAddon, depthwise: boolean, fused: boolean): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = f32(backend, inputs['x']);
  const w = f32(backend, inputs['filter']);
  if (!x || !w || !isNHWC(attrs)) return null;
  const act = fused ? activationCode(attrs) : 0;
  if (act === null || (fused && inputs['preluActivationWeights'])) return null;
  const c = convInfo(inputs['x']!.shape, inputs['filter']!.shape, attrs, depthwise);
  let bias: Float32Array | null = null;
  if (fused && inputs['bias']) {
    bias = f32(backend, inputs['bias']);
    if (!bias || bias.length !== c.outChannels) return null;
  }
  const p = convParams(c, depthwise ? c.inChannels : 1, act);
  if (!p) return null;
  const y = alloc(backend, c.batchSize * c.outHeight * c.outWidth * c.outChannels);
  n.conv(0, p, x, w, bias, y);
  return out(backend, [c.batchSize, c.outHeight, c.outWidth, c.outChannels], y);
}

function convBackpropInput(args: Args, n: NativeAddon, depthwise: boolean): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const dy = f32(backend, inputs['dy']);
  const w = f32(backend, inputs['filter']);
  if (!dy || !w || !isNHWC(attrs)) return null;
  const inputShape = attrs['inputShape'] as [number, number, number, number];
  const c = convInfo(inputShape, inputs['filter']!.shape, attrs, depthwise);
  const p = convParams(c, depthwise ? c.inChannels : 1, 0);
  if (!p) return null;
  const dx = alloc(backend, util.sizeFromShape(inputShape));
  n.conv(1, p, dy, w, null, dx);
  return out(backend, [...inputShape], dx);
}

function convBackpropFilter(args: Args, n: NativeAddon, depthwise: boolean): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = f32(backend, inputs['x']);
  const dy = f32(backend, inputs['dy']);
  if (!x || !dy || !isNHWC(attrs)) return null;
  const filterShape = attrs['filterShape'] as [number, number, number, number];
  const c = convInfo(inputs['x']!.shape, filterShape, attrs, depthwise);
  const p = convParams(c, depthwise ? c.inChannels : 1, 0);
  if (!p) return null;
  const dw = alloc(backend, util.sizeFromShape(filterShape));
  n.conv(2, p, x, dy, null, dw);
  return out(backend, [...filterShape], dw);
}

// ---------------------------------------------------------------- matmul

function batchMatMul(args: Args, n: NativeAddon, fused: boolean): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const a = inputs['a'];
  const b = inputs['b'];
  const av = f32(backend, a);
  const bv = f32(backend, b);
  if (!a || !b || !av || !bv || a.shape.length < 2 || b.shape.length < 2) return null;
  const act = fused ? activationCode(attrs) : 0;
  if (act === null || (fused && inputs['preluActivationWeights'])) return null;
  const tA = Boolean(attrs['transposeA']);
  const tB = Boolean(attrs['transposeB']);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = tA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const K = tA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const K2 = tB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const N = tB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (K !== K2 || K === 0) return null;
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const bA = util.sizeFromShape(batchShapeA);
  const bB = util.sizeFromShape(batchShapeB);
  // Batch broadcasting only when one side has a single matrix (or both agree exactly).
  if (bA !== bB && bA !== 1 && bB !== 1) return null;
  if (bA === bB && bA !== 1 && !util.arraysEqual(batchShapeA, batchShapeB)) return null;
  const outShape = [...backend_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB), M, N];
  if (util.sizeFromShape(outShape) !== Math.max(bA, bB) * M * N) return null;
  let bias: Float32Array | null = null;
  if (fused && inputs['bias']) {
    bias = f32(backend, inputs['bias']);
    if (!bias || (bias.length !== N && bias.length !== 1)) return null;
  }
  const res = alloc(backend, Math.max(bA, bB) * M * N);
  n.matmul(av, bv, res, bA, bB, M, N, K, tA ? 1 : 0, tB ? 1 : 0);
  if (bias) {
    const rows = res.length / N;
    n.binary(0, res, bias, res, i32([rows, N]), i32([N, 1]), i32([0, bias.length === 1 ? 0 : 1]));
  }
  if (act === 1) n.unary(UN.Relu, res, res, 0);
  return out(backend, outShape, res);
}

// ---------------------------------------------------------------- elementwise

const BIN = {
  Add: 0,
  Sub: 1,
  Multiply: 2,
  RealDiv: 3,
  Maximum: 4,
  Minimum: 5,
  SquaredDifference: 6,
  Pow: 7,
  ReluGrad: 8,
  SquareGrad: 9,
} as const;

/**
 * Broadcast strides of `shape` inside `outShape` (0 on broadcast axes), then adjacent axes merged
 * where both inputs stay contiguous, so the addon's inner loop is as long as possible.
 */
export function broadcastPlan(
  aShape: number[],
  bShape: number[],
): { shape: number[]; sa: number[]; sb: number[] } {
  const outShape = backend_util.assertAndGetBroadcastShape(aShape, bShape);
  const r = outShape.length;
  const stridesFor = (s: number[]) => {
    const st = new Array<number>(r).fill(0);
    let acc = 1;
    for (let i = s.length - 1, d = r - 1; i >= 0; --i, --d) {
      st[d] = s[i] === 1 && outShape[d] !== 1 ? 0 : acc;
      acc *= s[i]!;
    }
    return st;
  };
  const sa0 = stridesFor(aShape);
  const sb0 = stridesFor(bShape);
  const shape: number[] = [];
  const sa: number[] = [];
  const sb: number[] = [];
  for (let d = 0; d < r; ++d) {
    const n = outShape[d]!;
    if (n === 1) continue; // size-1 axes contribute nothing
    const k = shape.length - 1;
    if (k >= 0 && sa[k] === sa0[d]! * n && sb[k] === sb0[d]! * n) {
      shape[k]! *= n;
      sa[k] = sa0[d]!;
      sb[k] = sb0[d]!;
    } else {
      shape.push(n);
      sa.push(sa0[d]!);
      sb.push(sb0[d]!);
    }
  }
  if (shape.length === 0) return { shape: [1], sa: [0], sb: [0] };
  return { shape, sa, sb };
}

function binaryKernel(op: number, aName = 'a', bName = 'b') {
  return (args: Args, n: NativeAddon): TensorInfo | null => {
    const { inputs, backend } = args;
    const a = inputs[aName];
    const b = inputs[bName];
    const av = f32(backend, a);
    const bv = f32(backend, b);
    if (!a || !b || !av || !bv) return null;
    const outShape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const plan = broadcastPlan(a.shape, b.shape);
    const res = alloc(backend, util.sizeFromShape(outShape));
    if (res.length > 0) n.binary(op, av, bv, res, i32(plan.shape), i32(plan.sa), i32(plan.sb));
    return out(backend, outShape, res);
  };
}

export const UN = {
  Relu: 0,
  Step: 1,
  Neg: 2,
  Square: 3,
  Sqrt: 4,
  Rsqrt: 5,
  Exp: 6,
  Log: 7,
  Abs: 8,
  Sigmoid: 9,
  Tanh: 10,
  Relu6: 11,
  LeakyRelu: 12,
  Reciprocal: 13,
} as const;

function unaryKernel(op: number, alphaAttr?: string) {
  return (args: Args, n: NativeAddon): TensorInfo | null => {
    const { inputs, backend, attrs } = args;
    const x = inputs['x'];
    const xv = f32(backend, x);
    if (!x || !xv) return null;
    const alpha = alphaAttr ? Number(attrs[alphaAttr] ?? 0) : 0;
    const res = alloc(backend, xv.length);
    n.unary(op, xv, res, alpha);
    return out(backend, [...x.shape], res);
  };
}

// ---------------------------------------------------------------- reductions

const RED = { Sum: 0, Mean: 1, Max: 2, Min: 3 } as const;

/** [outer, reduced, inner] when the reduced axes are contiguous (after dropping size-1 axes). */
export function reductionPlan(
  shape: number[],
  axes: number[],
): { outer: number; red: number; inner: number } | null {
  const set = new Set(axes);
  const kinds: Array<'k' | 'r'> = [];
  const sizes: number[] = [];
  shape.forEach((s, d) => {
    if (s === 1) return;
    const k = set.has(d) ? 'r' : 'k';
    if (kinds.length && kinds[kinds.length - 1] === k) sizes[sizes.length - 1]! *= s;
    else {
      kinds.push(k);
      sizes.push(s);
    }
  });
  let outer = 1;
  let red = 1;
  let inner = 1;
  let i = 0;
  if (kinds[i] === 'k') outer = sizes[i++]!;
  if (kinds[i] === 'r') red = sizes[i++]!;
  if (kinds[i] === 'k') inner = sizes[i++]!;
  return i === kinds.length ? { outer, red, inner } : null;
}

function reduceKernel(op: number) {
  return (args: Args, n: NativeAddon): TensorInfo | null => {
    const { inputs, backend, attrs } = args;
    const x = inputs['x'];
    const xv = f32(backend, x);
    if (!x || !xv || xv.length === 0) return null;
    // Max names its axes 'reductionIndices', the others 'axis'.
    const axes = util.parseAxisParam(
      (attrs['axis'] ?? attrs['reductionIndices']) as number | number[],
      x.shape,
    );
    const plan = reductionPlan(x.shape, axes);
    if (!plan) return null;
    let outShape = x.shape.filter((_, d) => !axes.includes(d));
    if (attrs['keepDims']) outShape = backend_util.expandShapeToKeepDim(outShape, axes);
    const res = alloc(backend, plan.outer * plan.inner);
    n.reduce(op, xv, res, plan.outer, plan.red, plan.inner);
    return out(backend, outShape, res);
  };
}

// ---------------------------------------------------------------- copies

function gatherInto(
  b: MathBackendCPU,
  n: NativeAddon,
  xv: Float32Array,
  xShape: number[],
  outShape: number[],
  stepPerAxis: number[],
  begin: number[],
): Float32Array {
  const xs = util.computeStrides(xShape);
  const xStride = (d: number) => (d === xShape.length - 1 ? 1 : xs[d]!);
  const res = alloc(b, util.sizeFromShape(outShape));
  if (res.length === 0) return res;
  let offset = 0;
  const strides: number[] = [];
  for (let d = 0; d < xShape.length; ++d) {
    offset += begin[d]! * xStride(d);
    strides.push(stepPerAxis[d]! * xStride(d));
  }
  n.gather(xv, res, i32(outShape), i32(strides), offset);
  return res;
}

function transposeKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  if (!x || !xv || x.shape.length === 0) return null;
  const perm = attrs['perm'] as number[];
  const xs = util.computeStrides(x.shape);
  const stride = (d: number) => (d === x.shape.length - 1 ? 1 : xs[d]!);
  const outShape = perm.map((p) => x.shape[p]!);
  const res = alloc(backend, xv.length);
  if (res.length > 0) n.gather(xv, res, i32(outShape), i32(perm.map(stride)), 0);
  return out(backend, outShape, res);
}

function sliceKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  if (!x || !xv || x.shape.length === 0) return null;
  const [begin, size] = slice_util.parseSliceParams(
    x as tf.Tensor,
    attrs['begin'] as number[],
    attrs['size'] as number[],
  );
  slice_util.assertParamsValid(x as tf.Tensor, begin, size);
  const res = gatherInto(
    backend,
    n,
    xv,
    x.shape,
    size,
    x.shape.map(() => 1),
    begin,
  );
  return out(backend, size, res);
}

function stridedSliceKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  if (!x || !xv || x.shape.length === 0) return null;
  const info = slice_util.sliceInfo(
    x.shape,
    attrs['begin'] as number[],
    attrs['end'] as number[],
    attrs['strides'] as number[],
    attrs['beginMask'] as number,
    attrs['endMask'] as number,
    attrs['ellipsisMask'] as number,
    attrs['newAxisMask'] as number,
    attrs['shrinkAxisMask'] as number,
  );
  if (info.isIdentity || info.finalShapeSparse.length !== x.shape.length) return null;
  const res = gatherInto(backend, n, xv, x.shape, info.finalShapeSparse, info.strides, info.begin);
  return out(backend, info.finalShape, res);
}

function padKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  if (!x || !xv || x.shape.length === 0) return null;
  const paddings = attrs['paddings'] as Array<[number, number]>;
  const outShape = x.shape.map((s, d) => s + paddings[d]![0] + paddings[d]![1]);
  const res = alloc(backend, util.sizeFromShape(outShape));
  if (res.length > 0)
    n.pad(
      xv,
      res,
      i32(x.shape),
      i32(outShape),
      i32(paddings.map((p) => p[0])),
      Number(attrs['constantValue'] ?? 0),
    );
  return out(backend, outShape, res);
}

// ---------------------------------------------------------------- pooling

function poolInfo(xShape: number[], attrs: NamedAttrMap): backend_util.Conv2DInfo {
  return backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    attrs['filterSize'] as number | [number, number],
    attrs['strides'] as number | [number, number],
    1,
    attrs['pad'] as 'same',
    attrs['dimRoundingMode'] as 'floor' | undefined,
  );
}
function poolParams(c: backend_util.Conv2DInfo): Int32Array {
  return i32([
    c.batchSize,
    c.inHeight,
    c.inWidth,
    c.inChannels,
    c.outHeight,
    c.outWidth,
    c.filterHeight,
    c.filterWidth,
    c.strideHeight,
    c.strideWidth,
    c.padInfo.top,
    c.padInfo.left,
  ]);
}

function poolKernel(max: boolean) {
  return (args: Args, n: NativeAddon): TensorInfo | null => {
    const { inputs, backend, attrs } = args;
    const x = inputs['x'];
    const xv = f32(backend, x);
    if (!x || !xv || x.shape.length !== 4) return null;
    const c = poolInfo(x.shape, attrs);
    const y = alloc(backend, util.sizeFromShape(c.outShape));
    (max ? n.maxPool : n.avgPool)(poolParams(c), xv, y);
    return out(backend, [...c.outShape], y);
  };
}

function maxPoolGradKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['input'];
  const xv = f32(backend, x);
  const dy = f32(backend, inputs['dy']);
  if (!x || !xv || !dy || x.shape.length !== 4) return null;
  const c = poolInfo(x.shape, attrs);
  // The forward output (tfjs-core saves it) spares the native code a scan for each window's max.
  const y = inputs['output'] ? f32(backend, inputs['output']) : null;
  const dx = alloc(backend, xv.length);
  n.maxPoolGrad(poolParams(c), xv, dy, dx, y && y.length === dy.length ? y : null);
  return out(backend, [...x.shape], dx);
}

function avgPoolGradKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['input'];
  const dy = f32(backend, inputs['dy']);
  if (!x || !dy || x.shape.length !== 4) return null;
  const c = poolInfo(x.shape, attrs);
  const dx = alloc(backend, util.sizeFromShape(x.shape));
  n.avgPoolGrad(poolParams(c), dy, dx);
  return out(backend, [...x.shape], dx);
}

// ---------------------------------------------------------------- batch norm

/** Per-channel parameter of length C or 1 (any rank, all other axes 1). */
function channelParam(
  b: MathBackendCPU,
  t: TensorInfo | undefined,
  C: number,
): Float32Array | null | undefined {
  if (!t) return undefined;
  const v = f32(b, t);
  if (!v) return null;
  if (v.length === 1) return v;
  if (v.length === C && t.shape[t.shape.length - 1] === C) return v;
  return null;
}

function batchNormKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  if (!x || !xv || x.shape.length === 0) return null;
  const C = x.shape[x.shape.length - 1]!;
  const mean = channelParam(backend, inputs['mean'], C);
  const variance = channelParam(backend, inputs['variance'], C);
  const offset = channelParam(backend, inputs['offset'], C);
  const scale = channelParam(backend, inputs['scale'], C);
  if (!mean || !variance || offset === null || scale === null) return null;
  const eps = Number(attrs['varianceEpsilon'] ?? 0.001);
  const res = alloc(backend, xv.length);
  n.batchNorm(xv, mean, variance, offset ?? null, scale ?? null, eps, res);
  return out(backend, [...x.shape], res);
}

/** Kernel behind the native FusedBatchNorm gradient: [dx, dmean, dvariance, dscale, doffset]. */
export const BATCH_NORM_GRAD_KERNEL = 'FlatrankNativeBatchNormGrad';

function batchNormGradKernel(args: Args, n: NativeAddon): TensorInfo[] | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  const dy = f32(backend, inputs['dy']);
  if (!x || !xv || !dy) return null;
  const C = x.shape[x.shape.length - 1]!;
  const mean = f32(backend, inputs['mean']);
  const variance = f32(backend, inputs['variance']);
  const scale = inputs['scale'] ? f32(backend, inputs['scale']) : undefined;
  if (
    !mean ||
    !variance ||
    mean.length !== C ||
    variance.length !== C ||
    scale === null ||
    (scale && scale.length !== C)
  )
    return null;
  const eps = Number(attrs['varianceEpsilon'] ?? 0.001);
  const dx = alloc(backend, xv.length);
  const d = [0, 1, 2, 3].map(() => new Float32Array(C));
  n.batchNormGrad(dy, xv, mean, variance, scale ?? null, eps, dx, d[0]!, d[1]!, d[2]!, d[3]!);
  const pShape = [...inputs['mean']!.shape];
  return [out(backend, [...x.shape], dx), ...d.map((v) => out(backend, pShape, v))];
}

/**
 * Training-mode batch norm (BATCH_NORM_TRAINING_KERNEL): [y, batch mean, batch variance]; with
 * relu (BATCH_NORM_RELU_TRAINING_KERNEL) y is rectified in the same pass and marked as a ReLU's
 * output, which the Relu kernel and gradient then pass through.
 */
function batchNormTrainingKernel(args: Args, n: NativeAddon, relu = false): TensorInfo[] | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  if (!x || !xv || x.shape.length === 0 || xv.length === 0) return null;
  const C = x.shape[x.shape.length - 1]!;
  const scale = channelParam(backend, inputs['scale'], C);
  const offset = channelParam(backend, inputs['offset'], C);
  if (scale === null || offset === null || scale?.length === 1 || offset?.length === 1) return null;
  const y = alloc(backend, xv.length);
  const mean = new Float32Array(C);
  const variance = new Float32Array(C);
  n.batchNormTrain(
    xv,
    scale ?? null,
    offset ?? null,
    Number(attrs['epsilon']),
    y,
    mean,
    variance,
    relu ? 1 : 0,
  );
  const yInfo = out(backend, [...x.shape], y);
  if (relu && backend instanceof NativeBackend) backend.markReluOutput(yInfo.dataId);
  return [yInfo, out(backend, [C], mean), out(backend, [C], variance)];
}

/**
 * Gradient of batchNormTrainingKernel: [dx, dscale, doffset]; with relu, of its rectified form (the
 * extra input `offset` lets the addon recompute where the forward pass rectified).
 */
function batchNormTrainingGradKernel(args: Args, n: NativeAddon, relu = false): TensorInfo[] | null {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  const xv = f32(backend, x);
  const dy = f32(backend, inputs['dy']);
  if (!x || !xv || !dy || dy.length !== xv.length || xv.length === 0) return null;
  const C = x.shape[x.shape.length - 1]!;
  const vec = (name: string) => {
    const v = f32(backend, inputs[name]);
    return v && v.length === C ? v : null;
  };
  const [scale, mean, variance] = [vec('scale'), vec('mean'), vec('variance')];
  if (!mean || !variance || (inputs['scale'] && !scale)) return null;
  // Absent statistics gradients are zeros: pass null so the kernel skips them.
  const dmean = inputs['dmean'] ? vec('dmean') : undefined;
  const dvariance = inputs['dvariance'] ? vec('dvariance') : undefined;
  if (dmean === null || dvariance === null) return null;
  // The rectified form: the forward offset (an empty array when there was none).
  const reluOffset = !relu ? null : inputs['offset'] ? vec('offset') : new Float32Array(0);
  if (relu && !reluOffset) return null;
  const dx = alloc(backend, xv.length);
  const dscale = new Float32Array(C);
  const doffset = new Float32Array(C);
  n.batchNormTrainGrad(
    dy,
    xv,
    scale,
    mean,
    variance,
    dmean ?? null,
    dvariance ?? null,
    Number(attrs['epsilon']),
    dx,
    dscale,
    doffset,
    reluOffset,
  );
  return [out(backend, [...x.shape], dx), out(backend, [C], dscale), out(backend, [C], doffset)];
}

const reluValues = unaryKernel(UN.Relu);

/** Relu: a fused ReLU's output passes through as it is (same data, one more reference). */
function reluKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend } = args;
  const x = inputs['x'];
  if (x && x.dtype === 'float32' && backend instanceof NativeBackend && backend.isReluOutput(x.dataId)) {
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  }
  return reluValues(args, n);
}

/** One momentum-SGD update of one variable (SGD_MOMENTUM_KERNEL): [w', buf']. */
function sgdMomentumKernel(args: Args, n: NativeAddon): TensorInfo[] | null {
  const { inputs, backend, attrs } = args;
  const variable = inputs['variable'];
  const w = f32(backend, variable);
  const buf = f32(backend, inputs['buffer']);
  const g = f32(backend, inputs['grad']);
  if (!variable || !w || !buf || !g || buf.length !== w.length || g.length !== w.length) return null;
  const momentum = Number(attrs['momentum']);
  const wOut = alloc(backend, w.length);
  // With momentum 0 the buffer is returned unchanged (a copy: outputs are fresh tensors).
  const bufOut = momentum > 0 ? alloc(backend, w.length) : Float32Array.from(buf);
  n.sgdMomentum(
    w,
    momentum > 0 ? buf : null,
    g,
    Number(attrs['lr']),
    momentum,
    Number(attrs['weightDecay']),
    attrs['nesterov'] ? 1 : 0,
    wOut,
    momentum > 0 ? bufOut : null,
  );
  const shape = [...variable.shape];
  return [out(backend, shape, wOut), out(backend, shape, bufOut)];
}

// ---------------------------------------------------------------- gradient helpers

/** Kernels behind the native gradients of Relu, Square and Mean (one pass each). */
export const RELU_GRAD_KERNEL = 'FlatrankNativeReluGrad';
export const SQUARE_GRAD_KERNEL = 'FlatrankNativeSquareGrad';
export const MEAN_GRAD_KERNEL = 'FlatrankNativeMeanGrad';

/** dx = broadcast(dy, attrs.shape) / attrs.reduceSize, as tfjs-core's Mean gradient computes it. */
function meanGradKernel(args: Args, n: NativeAddon): TensorInfo | null {
  const { inputs, backend, attrs } = args;
  const dy = inputs['dy'];
  const dyv = f32(backend, dy);
  if (!dy || !dyv) return null;
  const shape = attrs['shape'] as number[];
  const axes = attrs['axes'] as number[];
  const expanded = shape.map((s, d) => (axes.includes(d) ? 1 : s));
  if (util.sizeFromShape(expanded) !== dyv.length) return null;
  const res = alloc(backend, util.sizeFromShape(shape));
  const full = broadcastPlan(expanded, shape);
  if (res.length > 0)
    n.binary(
      BIN.RealDiv,
      dyv,
      Float32Array.of(Number(attrs['reduceSize'])),
      res,
      i32(full.shape),
      i32(full.sa),
      i32(full.shape.map(() => 0)),
    );
  return out(backend, [...shape], res);
}

export const GRADIENT_KERNELS: Record<string, NativeKernel> = {
  [RELU_GRAD_KERNEL]: binaryKernel(BIN.ReluGrad, 'dy', 'x'),
  [SQUARE_GRAD_KERNEL]: binaryKernel(BIN.SquareGrad, 'dy', 'x'),
  [MEAN_GRAD_KERNEL]: meanGradKernel,
  [BATCH_NORM_TRAINING_KERNEL]: (a, n) => batchNormTrainingKernel(a, n),
  [BATCH_NORM_TRAINING_GRAD_KERNEL]: (a, n) => batchNormTrainingGradKernel(a, n),
  [BATCH_NORM_RELU_TRAINING_KERNEL]: (a, n) => batchNormTrainingKernel(a, n, true),
  [BATCH_NORM_RELU_TRAINING_GRAD_KERNEL]: (a, n) => batchNormTrainingGradKernel(a, n, true),
  [SGD_MOMENTUM_KERNEL]: sgdMomentumKernel,
};

// ---------------------------------------------------------------- table

/** Kernels with a native implementation (the rest of the cpu backend's kernels are reused as they are). */
export const NATIVE_KERNELS: Record<string, NativeKernel> = {
  Conv2D: (a, n) => convForward(a, n, false, false),
  FusedConv2D: (a, n) => convForward(a, n, false, true),
  Conv2DBackpropInput: (a, n) => convBackpropInput(a, n, false),
  Conv2DBackpropFilter: (a, n) => convBackpropFilter(a, n, false),
  DepthwiseConv2dNative: (a, n) => convForward(a, n, true, false),
  FusedDepthwiseConv2D: (a, n) => convForward(a, n, true, true),
  DepthwiseConv2dNativeBackpropInput: (a, n) => convBackpropInput(a, n, true),
  DepthwiseConv2dNativeBackpropFilter: (a, n) => convBackpropFilter(a, n, true),
  BatchMatMul: (a, n) => batchMatMul(a, n, false),
  _FusedMatMul: (a, n) => batchMatMul(a, n, true),
  Add: binaryKernel(BIN.Add),
  Sub: binaryKernel(BIN.Sub),
  Multiply: binaryKernel(BIN.Multiply),
  RealDiv: binaryKernel(BIN.RealDiv),
  Maximum: binaryKernel(BIN.Maximum),
  Minimum: binaryKernel(BIN.Minimum),
  SquaredDifference: binaryKernel(BIN.SquaredDifference),
  Relu: reluKernel,
  Step: unaryKernel(UN.Step, 'alpha'),
  Neg: unaryKernel(UN.Neg),
  Square: unaryKernel(UN.Square),
  Sqrt: unaryKernel(UN.Sqrt),
  Rsqrt: unaryKernel(UN.Rsqrt),
  Exp: unaryKernel(UN.Exp),
  Log: unaryKernel(UN.Log),
  Abs: unaryKernel(UN.Abs),
  Sigmoid: unaryKernel(UN.Sigmoid),
  Tanh: unaryKernel(UN.Tanh),
  Relu6: unaryKernel(UN.Relu6),
  LeakyRelu: unaryKernel(UN.LeakyRelu, 'alpha'),
  Reciprocal: unaryKernel(UN.Reciprocal),
  Sum: reduceKernel(RED.Sum),
  Mean: reduceKernel(RED.Mean),
  Max: reduceKernel(RED.Max),
  Min: reduceKernel(RED.Min),
  Transpose: transposeKernel,
  Slice: sliceKernel,
  StridedSlice: stridedSliceKernel,
  PadV2: padKernel,
  MaxPool: poolKernel(true),
  AvgPool: poolKernel(false),
  MaxPoolGrad: maxPoolGradKernel,
  AvgPoolGrad: avgPoolGradKernel,
  FusedBatchNorm: batchNormKernel,
};

/** Calls that fell back to the cpu kernel, per kernel name, while a profile records them (else null). */
let fallbackCounts: Map<string, number> | null = null;

/** Starts counting fallbacks (on) or stops; returns the counts since the previous start. */
export function countFallbacks(on: boolean): Map<string, number> {
  const counted = fallbackCounts ?? new Map<string, number>();
  fallbackCounts = on ? new Map() : null;
  return counted;
}

/** A tfjs kernel function running the native kernel, else the cpu backend's `fallback`. */
export function withFallback(
  name: string,
  impl: NativeKernel,
  n: NativeAddon,
  fallback: KernelFunc | null,
): KernelFunc {
  return ((args: Args) => {
    const r = impl(args, n);
    if (r !== null) return r;
    if (fallbackCounts) fallbackCounts.set(name, (fallbackCounts.get(name) ?? 0) + 1);
    if (!fallback) throw new Error(`native backend: no implementation of ${name} for these inputs`);
    return fallback(args as unknown as Parameters<KernelFunc>[0]);
  }) as unknown as KernelFunc;
}

export { batchNormGradKernel };

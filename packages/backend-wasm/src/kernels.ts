// Over 500 lines on purpose: the training kernels share one heap-access layer; their loops are unrolled by hand (measured 2x).
/**
 * Custom kernels that make the TF.js wasm backend train conv nets fast:
 * - Conv2DBackpropFilter (absent from tfjs-backend-wasm 4.22): dW as ONE dilated XNNPACK Conv2D on
 *   transposed tensors, x^T [C, Hp, Wp, N] (*) dy^T [OH, OW, N, OC] with dilation = stride. Correct
 *   for strides > 1 (reusing Conv3DBackpropFilterV2 with depth 1 is not).
 * - Conv2DBackpropInput: the stock kernel is ~10x slower; dx is an XNNPACK Conv2D of the zero-dilated
 *   dy with the flipped, transposed filter.
 * - DepthwiseConv2dNativeBackpropFilter / -Input (absent from tfjs-backend-wasm; the CP chain uses
 *   depthwise convs): per-tap products and the flipped depthwise conv of the zero-dilated dy.
 * - FusedBatchNorm gradient: the same maths as tfjs-core's, with broadcasting instead of Tile.
 * - Slow paths of stock kernels (CPU time at batch 128): BatchMatMul with a transposed operand
 *   (3.6 -> 1.0 ms for a LeNet-5 fc gradient, 68 -> 3.4 ms for [128, 4096]^T x [128, 64]: transpose
 *   first) and MaxPoolGrad (32 -> 14 ms at [128, 32, 32, 16]: a JS scatter over the wasm heap);
 *   LeNet-5 training step at batch 128: 36 -> 28 ms CPU with both. (Sum over leading axes as a
 *   product with a ones vector looked 10x faster in isolation but made a ResNet-20 step 10 %
 *   slower: XNNPACK re-packs the fresh operand every call. Not used.)
 * Kernels call other wasm kernels directly (not tf ops) so nothing is recorded on the tape, and
 * dispose every intermediate.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-layers registers TF.js's gradients on import; ours must override after that.
import '@tensorflow/tfjs-layers';
import { backend_util } from '@tensorflow/tfjs-core';
import { BATCH_NORM_TRAINING_GRAD_KERNEL, BATCH_NORM_TRAINING_KERNEL, ShapeError } from '@flatrank/protocol';
import type {
  KernelBackend,
  NamedAttrMap,
  NamedTensorInfoMap,
  Tensor,
  TensorInfo,
} from '@tensorflow/tfjs-core';

type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;
interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: KernelBackend;
  attrs: NamedAttrMap;
}

/** Runs a stock wasm kernel directly (no engine, no tape). */
function run(
  name: string,
  inputs: NamedTensorInfoMap,
  backend: KernelBackend,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const old = stock.get(name);
  if (old?.setupFunc && !stockSetUp.has(backend)) {
    // Replaced stock kernels were unregistered before the backend initialised: set them up once.
    for (const k of stock.values()) k.setupFunc?.(backend);
    stockSetUp.add(backend);
  }
  const k = old ?? tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc({ inputs, backend, attrs }) as TensorInfo;
}
const stockSetUp = new WeakSet<KernelBackend>();

/** A same-buffer view with another shape (wasm kernels read the shape from the TensorInfo). */
function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

class Scratch {
  private readonly items: TensorInfo[] = [];
  constructor(private readonly backend: KernelBackend) {}
  keep<T extends TensorInfo>(t: T): T {
    this.items.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.items) this.backend.disposeData(t.dataId);
  }
}

function convInfo(
  xShape: number[],
  filterShape: number[],
  attrs: NamedAttrMap,
  depthwise = false,
): backend_util.Conv2DInfo {
  const dataFormat = (attrs['dataFormat'] as string | undefined) ?? 'NHWC';
  if (dataFormat !== 'NHWC' && dataFormat !== 'channelsLast')
    throw new Error(`flatrank wasm conv kernels support NHWC only, got ${dataFormat}`);
  const dil = (attrs['dilations'] as number | [number, number] | undefined) ?? 1;
  const dils: [number, number] = Array.isArray(dil) ? dil : [dil, dil];
  if (dils[0] !== 1 || dils[1] !== 1)
    throw new Error('flatrank wasm conv gradient kernels support dilation 1 only');
  return backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs['strides'] as number | [number, number],
    1,
    attrs['pad'] as Pad,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
    depthwise,
    'channelsLast',
  );
}

/** Pads x to the conv's padded input and crops it to exactly (O-1)*s + F rows / cols. */
function paddedCroppedInput(
  x: TensorInfo,
  info: backend_util.Conv2DInfo,
  backend: KernelBackend,
  s: Scratch,
): TensorInfo {
  const {
    outHeight: OH,
    outWidth: OW,
    strideHeight: sh,
    strideWidth: sw,
    filterHeight: FH,
    filterWidth: FW,
    padInfo,
  } = info;
  let xp = x;
  if (padInfo.top || padInfo.bottom || padInfo.left || padInfo.right) {
    xp = s.keep(
      run('PadV2', { x }, backend, {
        paddings: [
          [0, 0],
          [padInfo.top, padInfo.bottom],
          [padInfo.left, padInfo.right],
          [0, 0],
        ],
        constantValue: 0,
      }),
    );
  }
  const needH = (OH - 1) * sh + FH;
  const needW = (OW - 1) * sw + FW;
  if (xp.shape[1] !== needH || xp.shape[2] !== needW) {
    xp = s.keep(
      run('Slice', { x: xp }, backend, {
        begin: [0, 0, 0, 0],
        size: [xp.shape[0]!, needH, needW, xp.shape[3]!],
      }),
    );
  }
  return xp;
}

/** dW[fh, fw, c, oc] = sum_{n, oh, ow} xp[n, oh*sh + fh, ow*sw + fw, c] dy[n, oh, ow, oc]. */
export function conv2DBackpropFilterWasm({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const filterShape = attrs['filterShape'] as number[];
  const info = convInfo(x.shape, filterShape, attrs);
  const s = new Scratch(backend);
  try {
    const xp = paddedCroppedInput(x, info, backend, s);
    // Batch <-> channels: the conv's "batch" is C and its reduction runs over N (and OH, OW).
    const xt = s.keep(run('Transpose', { x: xp }, backend, { perm: [3, 1, 2, 0] }));
    const dyt = s.keep(run('Transpose', { x: dy }, backend, { perm: [1, 2, 0, 3] }));
    const r = s.keep(
      run('Conv2D', { x: xt, filter: dyt }, backend, {
        strides: [1, 1],
        pad: 'valid',
        dataFormat: 'NHWC',
        dilations: [info.strideHeight, info.strideWidth],
      }),
    ); // [C, FH, FW, OC]
    return run('Transpose', { x: r }, backend, { perm: [1, 2, 0, 3] });
  } finally {
    s.dispose();
  }
}

/**
 * Zero-dilates dy by the strides and pads / crops it so that a stride-1 'valid' correlation with
 * the flipped filter yields dx. Returns null when no dy entry reaches the input (dx is zero).
 */
function dilatedPaddedDy(
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
  backend: KernelBackend,
  s: Scratch,
): { d: TensorInfo; pad: [[number, number], [number, number], [number, number], [number, number]] } | null {
  const {
    batchSize: N,
    inHeight: H,
    inWidth: W,
    outHeight: OH,
    outWidth: OW,
    strideHeight: sh,
    strideWidth: sw,
    filterHeight: FH,
    filterWidth: FW,
    padInfo,
  } = info;
  const C = dy.shape[3]!;
  let d = dy;
  if (sh > 1 || sw > 1) {
    // Interleave zeros: view dy as [N, OH, 1, OW, 1, C], pad the unit axes to the strides.
    const p6 = s.keep(
      run('PadV2', { x: view(dy, [N, OH, 1, OW, 1, C]) }, backend, {
        paddings: [
          [0, 0],
          [0, 0],
          [0, sh - 1],
          [0, 0],
          [0, sw - 1],
          [0, 0],
        ],
        constantValue: 0,
      }),
    );
    d = view(p6, [N, OH * sh, OW * sw, C]);
  }
  // The full correlation with the flipped filter needs H + F - 1 rows: F - 1 - top before the
  // dilated dy's OH*sh rows and H + top - OH*sh after. A negative amount crops instead (padding
  // wider than the filter: those dy rows only ever saw padding).
  let pt = FH - 1 - padInfo.top;
  let pl = FW - 1 - padInfo.left;
  let pb = H + padInfo.top - OH * sh;
  let pr = W + padInfo.left - OW * sw;
  if (pt < 0 || pl < 0 || pb < 0 || pr < 0) {
    const top = Math.max(0, -pt);
    const left = Math.max(0, -pl);
    const rows = d.shape[1]! - top - Math.max(0, -pb);
    const cols = d.shape[2]! - left - Math.max(0, -pr);
    if (rows <= 0 || cols <= 0) return null;
    d = s.keep(run('Slice', { x: d }, backend, { begin: [0, top, left, 0], size: [N, rows, cols, C] }));
    pt = Math.max(pt, 0);
    pl = Math.max(pl, 0);
    pb = Math.max(pb, 0);
    pr = Math.max(pr, 0);
  }
  return {
    d,
    pad: [
      [0, 0],
      [pt, pb],
      [pl, pr],
      [0, 0],
    ],
  };
}

/** dx = conv_valid(pad(dilate(dy, s)), flip(W) with in/out channels swapped). */
export function conv2DBackpropInputWasm(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const info = convInfo(attrs['inputShape'] as number[], filter.shape, attrs);
  const s = new Scratch(backend);
  try {
    const prep = dilatedPaddedDy(dy, info, backend, s);
    if (!prep) return zeros(attrs['inputShape'] as number[], backend);
    const wr = s.keep(run('Reverse', { x: filter }, backend, { dims: [0, 1] }));
    const wt = s.keep(run('Transpose', { x: wr }, backend, { perm: [0, 1, 3, 2] }));
    return run('Conv2D', { x: prep.d, filter: wt }, backend, {
      strides: [1, 1],
      pad: prep.pad,
      dataFormat: 'NHWC',
      dilations: [1, 1],
    });
  } finally {
    s.dispose();
  }
}

/**
 * Depthwise dW[fh, fw, c, m] = sum_{n, oh, ow} xp[n, oh*sh + fh, ow*sw + fw, c] dy[n, oh, ow, c*M + m]:
 * one strided slice per filter tap, a broadcast multiply and a sum.
 */
export function depthwiseBackpropFilterWasm({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const filterShape = attrs['filterShape'] as number[];
  const info = convInfo(x.shape, filterShape, attrs, true);
  const {
    batchSize: N,
    inChannels: C,
    outHeight: OH,
    outWidth: OW,
    strideHeight: sh,
    strideWidth: sw,
    filterHeight: FH,
    filterWidth: FW,
  } = info;
  const M = filterShape[3]!;
  const s = new Scratch(backend);
  try {
    const xp = paddedCroppedInput(x, info, backend, s);
    const dy5 = view(dy, [N, OH, OW, C, M]);
    const taps: TensorInfo[] = [];
    for (let i = 0; i < FH; i++)
      for (let j = 0; j < FW; j++) {
        const sl = s.keep(
          run('StridedSlice', { x: xp }, backend, {
            begin: [0, i, j, 0],
            end: [N, i + (OH - 1) * sh + 1, j + (OW - 1) * sw + 1, C],
            strides: [1, sh, sw, 1],
            beginMask: 0,
            endMask: 0,
            ellipsisMask: 0,
            newAxisMask: 0,
            shrinkAxisMask: 0,
          }),
        );
        const prod = s.keep(run('Multiply', { a: view(sl, [N, OH, OW, C, 1]), b: dy5 }, backend));
        taps.push(s.keep(run('Sum', { x: prod }, backend, { axis: [0, 1, 2], keepDims: false }))); // [C, M]
      }
    // Concat takes its inputs as an array; Reshape returns a view with its own reference.
    const parts = taps.map((t) => view(t, [1, C, M]));
    const all =
      taps.length === 1
        ? taps[0]!
        : s.keep(run('Concat', parts as unknown as NamedTensorInfoMap, backend, { axis: 0 }));
    return run('Reshape', { x: all }, backend, { shape: [FH, FW, C, M] });
  } finally {
    s.dispose();
  }
}

/**
 * Depthwise dx: for channel multiplier 1, a depthwise conv of the zero-dilated dy with the flipped
 * filter. For M > 1, dx[c] = sum_m (flipped W[:, :, c, m]) * dy[c*M + m]: the same depthwise conv
 * run with multiplier 1 on dy viewed as C*M channels, then summed over m.
 */
export function depthwiseBackpropInputWasm(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const inputShape = attrs['inputShape'] as number[];
  const info = convInfo(inputShape, filter.shape, attrs, true);
  const [FH, FW, C, M] = filter.shape as [number, number, number, number];
  const s = new Scratch(backend);
  try {
    const prep = dilatedPaddedDy(dy, info, backend, s);
    if (!prep) return zeros(inputShape, backend);
    const wr = s.keep(run('Reverse', { x: filter }, backend, { dims: [0, 1] }));
    const out = run('DepthwiseConv2dNative', { x: prep.d, filter: view(wr, [FH, FW, C * M, 1]) }, backend, {
      strides: [1, 1],
      pad: prep.pad,
      dataFormat: 'NHWC',
      dilations: [1, 1],
    });
    if (M === 1) return out;
    s.keep(out);
    const [n, h, w] = out.shape as [number, number, number, number];
    return run('Sum', { x: view(out, [n, h, w, C, M]) }, backend, { axis: [4], keepDims: false });
  } finally {
    s.dispose();
  }
}

/** A fresh float32 tensor of zeros on the wasm heap. */
function zeros(shape: number[], backend: KernelBackend): TensorInfo {
  const out = heap(backend).makeOutput(shape, 'float32');
  heap(backend).typedArrayFromHeap(out).fill(0);
  return out;
}

/** The wasm backend's heap access (BackendWasm; not part of KernelBackend's typings). */
interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}
const heap = (b: KernelBackend) => b as unknown as WasmHeapBackend;

/** Swaps the two innermost axes via the (fast) Transpose kernel. */
function transposeInner(t: TensorInfo, backend: KernelBackend): TensorInfo {
  const r = t.shape.length;
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return run('Transpose', { x: t }, backend, { perm });
}

/** BatchMatMul: materialise transposed operands, then the stock (XNNPACK) plain product. */
export function batchMatMulWasm({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
  const transposeA = Boolean(attrs['transposeA']);
  const transposeB = Boolean(attrs['transposeB']);
  if ((!transposeA && !transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32')
    return run('BatchMatMul', inputs, backend, attrs);
  const s = new Scratch(backend);
  try {
    const a2 = transposeA ? s.keep(transposeInner(a, backend)) : a;
    const b2 = transposeB ? s.keep(transposeInner(b, backend)) : b;
    return run('BatchMatMul', { a: a2, b: b2 }, backend, { transposeA: false, transposeB: false });
  } finally {
    s.dispose();
  }
}

/**
 * MaxPoolGrad: dy flows to the first maximum of each window (row-major window order, strict >),
 * as in the cpu backend; a JS loop over the heap, channels innermost.
 */
export function maxPoolGradWasm({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
  if (input.dtype !== 'float32') return run('MaxPoolGrad', inputs, backend, attrs);
  const info = backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs['filterSize'] as number | [number, number],
    attrs['strides'] as number | [number, number],
    1,
    attrs['pad'] as Pad,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
  );
  const {
    batchSize: N,
    inHeight: H,
    inWidth: W,
    inChannels: C,
    outHeight: OH,
    outWidth: OW,
    strideHeight: sh,
    strideWidth: sw,
    filterHeight: FH,
    filterWidth: FW,
    padInfo,
  } = info;
  const out = heap(backend).makeOutput(input.shape, 'float32');
  // Views after the allocation: growing the heap detaches older views.
  const dx = heap(backend).typedArrayFromHeap(out);
  const x = heap(backend).typedArrayFromHeap(input);
  const g = heap(backend).typedArrayFromHeap(dy);
  dx.fill(0);
  const best = new Float32Array(C);
  const pos = new Int32Array(C);
  for (let n = 0; n < N; n++)
    for (let oh = 0; oh < OH; oh++) {
      const r0 = oh * sh - padInfo.top;
      for (let ow = 0; ow < OW; ow++) {
        const c0 = ow * sw - padInfo.left;
        best.fill(-Infinity);
        pos.fill(-1);
        for (let fh = 0; fh < FH; fh++) {
          const r = r0 + fh;
          if (r < 0 || r >= H) continue;
          for (let fw = 0; fw < FW; fw++) {
            const c = c0 + fw;
            if (c < 0 || c >= W) continue;
            const base = ((n * H + r) * W + c) * C;
            for (let k = 0; k < C; k++) {
              const v = x[base + k]!;
              if (v > best[k]!) {
                best[k] = v;
                pos[k] = base + k;
              }
            }
          }
        }
        const o = ((n * OH + oh) * OW + ow) * C;
        for (let k = 0; k < C; k++) if (pos[k]! >= 0) dx[pos[k]!] += g[o + k]!;
      }
    }
  return out;
}

/**
 * tfjs-core's FusedBatchNorm gradient without Tile. With per-channel statistics (rank-1 mean, as
 * tfjs-layers' BatchNormalization uses) inv = 1/sqrt(var + eps) and scale are per-channel constants,
 * so the four reductions collapse to two, sum(dy) and sum(dy * (x - mean)):
 *   d mean = -inv * scale * sum(dy),  d var = -inv^3 / 2 * scale * sum(dy * (x - mean)),
 *   d scale = inv * sum(dy * (x - mean)),  d offset = sum(dy),  dx = dy * inv * scale.
 */
const fusedBatchNormGrad: tf.GradConfig = {
  kernelName: 'FusedBatchNorm',
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const g = dy as Tensor;
    const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
    const [x, mean, variance, scale] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
    const scaleValue = scale ?? tf.scalar(1);
    const inv = tf.rsqrt(tf.add(variance, tf.scalar(varianceEpsilon)));
    const minusHalfRCube = tf.mul(tf.mul(tf.mul(inv, inv), inv), tf.scalar(-0.5));
    const dx = () => tf.reshape(tf.mul(g, tf.mul(inv, scaleValue)), x.shape);
    if (mean.rank === 1) {
      const axes = backend_util.getReductionAxes(mean.shape, x.shape);
      // Eager, not memoised in the closures: the tape runs each closure in its own tidy.
      const sdy = tf.sum(g, axes);
      const sdyx = tf.sum(tf.mul(g, tf.sub(x, mean)), axes);
      return {
        x: dx,
        mean: () => tf.reshape(tf.mul(tf.mul(tf.neg(inv), scaleValue), sdy), mean.shape),
        variance: () => tf.reshape(tf.mul(tf.mul(minusHalfRCube, scaleValue), sdyx), mean.shape),
        scale: () => tf.reshape(tf.mul(inv, sdyx), mean.shape),
        offset: () => tf.reshape(sdy, mean.shape),
      };
    }
    // Statistics shaped like x: no reductions, the stock formulas with broadcasting.
    const xMinusMean = tf.sub(x, mean);
    const dyTimesScale = tf.mul(g, scaleValue);
    return {
      x: dx,
      mean: () => tf.reshape(tf.mul(tf.neg(inv), dyTimesScale), mean.shape),
      variance: () => tf.reshape(tf.mul(tf.mul(minusHalfRCube, xMinusMean), dyTimesScale), mean.shape),
      scale: () => tf.reshape(tf.mul(g, tf.mul(xMinusMean, inv)), mean.shape),
      offset: () => tf.reshape(g, mean.shape),
    };
  },
};

/** Float32 heap views of a kernel's inputs; null for an absent optional input. */
function channelVector(
  backend: KernelBackend,
  t: TensorInfo | undefined,
  C: number,
  field: string,
  kernel: string,
): Float32Array | null {
  if (!t) return null;
  if (t.dtype !== 'float32' || t.shape.reduce((a, b) => a * b, 1) !== C)
    throw new ShapeError(
      `${kernel}.${field}`,
      `${kernel}: ${field} must be float32 with ${C} values (one per channel), got ${t.dtype} [${t.shape.join(', ')}]`,
    );
  return heap(backend).typedArrayFromHeap(t);
}

/** Channel count and row count of a channels-last float32 x (all axes but the last are rows). */
function rowsAndChannels(x: TensorInfo | undefined, kernel: string): { rows: number; C: number } {
  if (!x || x.dtype !== 'float32' || x.shape.length === 0)
    throw new ShapeError(
      `${kernel}.x`,
      `${kernel}: x must be a float32 tensor of rank >= 1 (channels last), got ${x ? `${x.dtype} [${x.shape.join(', ')}]` : 'nothing'}`,
    );
  const C = x.shape[x.shape.length - 1]!;
  const size = x.shape.reduce((a, b) => a * b, 1);
  if (C === 0 || size === 0)
    throw new ShapeError(`${kernel}.x`, `${kernel}: x must not be empty, got [${x.shape.join(', ')}]`);
  return { rows: size / C, C };
}

/*
 * The four full-size loops of the training batch norm kernels. Rows are taken four at a time so
 * each channel's constants and accumulators are loaded once per four elements (2x faster in V8 than
 * one row at a time at C = 16..64; an inner loop over 8 rows was slower), then the leftover rows.
 */

/** s1[c] += sum_r (x[r, c] - shift[c]), s2[c] += sum_r (x[r, c] - shift[c])^2. */
function shiftedSums(
  X: Float32Array,
  shift: Float32Array,
  rows: number,
  C: number,
  s1: Float64Array,
  s2: Float64Array,
): void {
  const r4 = rows - (rows % 4);
  const C2 = 2 * C;
  const C3 = 3 * C;
  for (let r = 0; r < r4; r += 4) {
    const base = r * C;
    for (let c = 0; c < C; c++) {
      const sh = shift[c]!;
      const i = base + c;
      const d0 = X[i]! - sh;
      const d1 = X[i + C]! - sh;
      const d2 = X[i + C2]! - sh;
      const d3 = X[i + C3]! - sh;
      s1[c] += d0 + d1 + d2 + d3;
      s2[c] += d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3;
    }
  }
  for (let i = r4 * C; i < rows * C; i += C)
    for (let c = 0; c < C; c++) {
      const d = X[i + c]! - shift[c]!;
      s1[c] += d;
      s2[c] += d * d;
    }
}

/** y[r, c] = x[r, c] * mul[c] + add[c]. */
function affine(
  X: Float32Array,
  mul: Float64Array,
  add: Float64Array,
  rows: number,
  C: number,
  Y: Float32Array,
): void {
  const r4 = rows - (rows % 4);
  const C2 = 2 * C;
  const C3 = 3 * C;
  for (let r = 0; r < r4; r += 4) {
    const base = r * C;
    for (let c = 0; c < C; c++) {
      const m = mul[c]!;
      const a = add[c]!;
      const i = base + c;
      Y[i] = X[i]! * m + a;
      Y[i + C] = X[i + C]! * m + a;
      Y[i + C2] = X[i + C2]! * m + a;
      Y[i + C3] = X[i + C3]! * m + a;
    }
  }
  for (let i = r4 * C; i < rows * C; i += C)
    for (let c = 0; c < C; c++) Y[i + c] = X[i + c]! * mul[c]! + add[c]!;
}

/** s1[c] += sum_r dy[r, c], s2[c] += sum_r dy[r, c] (x[r, c] - mean[c]). */
function gradSums(
  DY: Float32Array,
  X: Float32Array,
  M: Float32Array,
  rows: number,
  C: number,
  s1: Float64Array,
  s2: Float64Array,
): void {
  const r4 = rows - (rows % 4);
  const C2 = 2 * C;
  const C3 = 3 * C;
  for (let r = 0; r < r4; r += 4) {
    const base = r * C;
    for (let c = 0; c < C; c++) {
      const m = M[c]!;
      const i = base + c;
      const g0 = DY[i]!;
      const g1 = DY[i + C]!;
      const g2 = DY[i + C2]!;
      const g3 = DY[i + C3]!;
      s1[c] += g0 + g1 + g2 + g3;
      s2[c] += g0 * (X[i]! - m) + g1 * (X[i + C]! - m) + g2 * (X[i + C2]! - m) + g3 * (X[i + C3]! - m);
    }
  }
  for (let i = r4 * C; i < rows * C; i += C)
    for (let c = 0; c < C; c++) {
      const g = DY[i + c]!;
      s1[c] += g;
      s2[c] += g * (X[i + c]! - M[c]!);
    }
}

/** dx[r, c] = dy[r, c] k[c] + (x[r, c] - mean[c]) B[c] + A[c]. */
function gradInput(
  DY: Float32Array,
  X: Float32Array,
  M: Float32Array,
  k: Float64Array,
  A: Float64Array,
  B: Float64Array,
  rows: number,
  C: number,
  DX: Float32Array,
): void {
  const r4 = rows - (rows % 4);
  const C2 = 2 * C;
  const C3 = 3 * C;
  for (let r = 0; r < r4; r += 4) {
    const base = r * C;
    for (let c = 0; c < C; c++) {
      const kc = k[c]!;
      const a = A[c]!;
      const b = B[c]!;
      const m = M[c]!;
      const i = base + c;
      DX[i] = DY[i]! * kc + (X[i]! - m) * b + a;
      DX[i + C] = DY[i + C]! * kc + (X[i + C]! - m) * b + a;
      DX[i + C2] = DY[i + C2]! * kc + (X[i + C2]! - m) * b + a;
      DX[i + C3] = DY[i + C3]! * kc + (X[i + C3]! - m) * b + a;
    }
  }
  for (let i = r4 * C; i < rows * C; i += C)
    for (let c = 0; c < C; c++) DX[i + c] = DY[i + c]! * k[c]! + (X[i + c]! - M[c]!) * B[c]! + A[c]!;
}

/**
 * Training-mode batch norm (BATCH_NORM_TRAINING_KERNEL), two passes over
 * the heap as the native kernel (native/src/addon.cc batchNormTrain): per-channel sums of
 * d = x - shift and d^2 in float64, shift = the first row (channels whose mean is large against
 * their spread keep their variance), then y = x * k + (offset - mean * k), k = scale / sqrt(var + eps).
 * Outputs [y, mean, biased variance] (as tf.moments over all axes but the last).
 */
export function batchNormTrainingWasm({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const name = BATCH_NORM_TRAINING_KERNEL;
  const x = inputs['x'];
  const { rows, C } = rowsAndChannels(x, name);
  const eps = Number(attrs['epsilon']);
  if (!(eps >= 0))
    throw new ShapeError(`${name}.epsilon`, `${name}: epsilon must be a number >= 0, got ${eps}`);
  const hb = heap(backend);
  const outY = hb.makeOutput([...x!.shape], 'float32');
  const outMean = hb.makeOutput([C], 'float32');
  const outVar = hb.makeOutput([C], 'float32');
  try {
    // Views after every allocation: growing the heap detaches older views.
    const X = hb.typedArrayFromHeap(x!);
    const sc = channelVector(backend, inputs['scale'], C, 'scale', name);
    const of = channelVector(backend, inputs['offset'], C, 'offset', name);
    const Y = hb.typedArrayFromHeap(outY);
    const M = hb.typedArrayFromHeap(outMean);
    const V = hb.typedArrayFromHeap(outVar);
    const shift = X.slice(0, C);
    const s1 = new Float64Array(C);
    const s2 = new Float64Array(C);
    shiftedSums(X, shift, rows, C, s1, s2);
    const mul = new Float64Array(C);
    const add = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      const md = s1[c]! / rows;
      const variance = Math.max(0, s2[c]! / rows - md * md);
      const mean = shift[c]! + md;
      M[c] = mean;
      V[c] = variance;
      const k = (sc ? sc[c]! : 1) / Math.sqrt(variance + eps);
      mul[c] = k;
      add[c] = (of ? of[c]! : 0) - mean * k;
    }
    affine(X, mul, add, rows, C, Y);
    return [outY, outMean, outVar];
  } catch (e) {
    for (const t of [outY, outMean, outVar]) backend.disposeData(t.dataId);
    throw e;
  }
}

/**
 * Gradient of batchNormTrainingWasm (BATCH_NORM_TRAINING_GRAD_KERNEL), the batch statistics being
 * functions of x; two passes as native/src/addon.cc batchNormTrainGrad. Pass 1: per channel
 * s1 = sum(dy), s2 = sum(dy * (x - mean)) in float64. Pass 2, with inv = 1/sqrt(var + eps),
 * k = scale * inv and N rows:
 *   dx = k dy + B (x - mean) + A,  A = -k s1 / N + dmean / N,  B = -k inv^2 s2 / N + 2 dvar / N
 * (the first terms from y, the dmean / dvariance terms from the statistics outputs);
 * dscale = inv s2, doffset = s1.
 */
export function batchNormTrainingGradWasm({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const name = BATCH_NORM_TRAINING_GRAD_KERNEL;
  const x = inputs['x'];
  const dy = inputs['dy'];
  const { rows, C } = rowsAndChannels(x, name);
  if (!dy || dy.dtype !== 'float32' || dy.shape.join(',') !== x!.shape.join(','))
    throw new ShapeError(
      `${name}.dy`,
      `${name}: dy must be float32 shaped like x [${x!.shape.join(', ')}], got ${dy ? `${dy.dtype} [${dy.shape.join(', ')}]` : 'nothing'}`,
    );
  for (const f of ['mean', 'variance'])
    if (!inputs[f]) throw new ShapeError(`${name}.${f}`, `${name}: ${f} is required (${C} values)`);
  const eps = Number(attrs['epsilon']);
  if (!(eps >= 0))
    throw new ShapeError(`${name}.epsilon`, `${name}: epsilon must be a number >= 0, got ${eps}`);
  const hb = heap(backend);
  const outDx = hb.makeOutput([...x!.shape], 'float32');
  const outDs = hb.makeOutput([C], 'float32');
  const outDo = hb.makeOutput([C], 'float32');
  try {
    const X = hb.typedArrayFromHeap(x!);
    const DY = hb.typedArrayFromHeap(dy);
    const vec = (f: string) => channelVector(backend, inputs[f], C, f, name);
    const sc = vec('scale');
    const M = vec('mean')!;
    const V = vec('variance')!;
    // The engine passes zeros for statistics outputs nothing used; absent ones count as zeros.
    const DM = vec('dmean');
    const DV = vec('dvariance');
    const DX = hb.typedArrayFromHeap(outDx);
    const DS = hb.typedArrayFromHeap(outDs);
    const DO = hb.typedArrayFromHeap(outDo);
    const s1 = new Float64Array(C);
    const s2 = new Float64Array(C);
    gradSums(DY, X, M, rows, C, s1, s2);
    const k = new Float64Array(C);
    const A = new Float64Array(C);
    const B = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      const inv = 1 / Math.sqrt(V[c]! + eps);
      const kc = (sc ? sc[c]! : 1) * inv;
      k[c] = kc;
      A[c] = (-kc * s1[c]! + (DM ? DM[c]! : 0)) / rows;
      B[c] = (-kc * inv * inv * s2[c]! + (DV ? 2 * DV[c]! : 0)) / rows;
      DS[c] = s2[c]! * inv;
      DO[c] = s1[c]!;
    }
    gradInput(DY, X, M, k, A, B, rows, C, DX);
    return [outDx, outDs, outDo];
  } catch (e) {
    for (const t of [outDx, outDs, outDo]) backend.disposeData(t.dataId);
    throw e;
  }
}

/** The stock wasm kernels we replace, kept for fallbacks. */
const stock = new Map<string, tf.KernelConfig>();

export const CUSTOM_WASM_KERNELS = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'BatchMatMul',
  'MaxPoolGrad',
  'FusedBatchNorm (gradient)',
  BATCH_NORM_TRAINING_KERNEL,
  BATCH_NORM_TRAINING_GRAD_KERNEL,
] as const;

let registered = false;
let stockBatchNormGrad: tf.GradConfig | null = null;

/**
 * Switches the global FusedBatchNorm gradient between TF.js's stock one (Tile-based) and flatrank's
 * broadcasting one (tests compare them; the wasm backend installs 'broadcast').
 */
export function useBatchNormGradient(which: 'stock' | 'broadcast'): void {
  if (which === 'broadcast') tf.registerGradient(fusedBatchNormGrad);
  else {
    const g = stockBatchNormGrad ?? tf.getGradient('FusedBatchNorm');
    if (!g || g === fusedBatchNormGrad) throw new Error('the stock FusedBatchNorm gradient was not captured');
    stockBatchNormGrad = g;
    tf.registerGradient(g);
  }
}

/** Registers the custom kernels for the 'wasm' backend (idempotent). */
export function registerWasmKernels(): string[] {
  if (registered) return [...CUSTOM_WASM_KERNELS];
  const replace = (kernelName: string, kernelFunc: (a: KernelArgs) => TensorInfo | TensorInfo[]): void => {
    const old = tf.getKernel(kernelName, 'wasm');
    if (old) {
      stock.set(kernelName, old);
      tf.unregisterKernel(kernelName, 'wasm');
    }
    tf.registerKernel({
      kernelName,
      backendName: 'wasm',
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  };
  replace('Conv2DBackpropFilter', conv2DBackpropFilterWasm);
  replace('Conv2DBackpropInput', conv2DBackpropInputWasm);
  replace('DepthwiseConv2dNativeBackpropFilter', depthwiseBackpropFilterWasm);
  replace('DepthwiseConv2dNativeBackpropInput', depthwiseBackpropInputWasm);
  replace('BatchMatMul', batchMatMulWasm);
  replace('MaxPoolGrad', maxPoolGradWasm);
  // Makes fusedBatchNormAvailable() true on wasm: training-mode BatchNormalization layers run
  // these two kernels instead of moments() + batchNorm() (about ten full passes each way).
  replace(BATCH_NORM_TRAINING_KERNEL, batchNormTrainingWasm);
  replace(BATCH_NORM_TRAINING_GRAD_KERNEL, batchNormTrainingGradWasm);
  // Same values as the stock gradient on every backend, so overriding it globally is safe.
  stockBatchNormGrad ??= tf.getGradient('FusedBatchNorm') ?? null;
  tf.registerGradient(fusedBatchNormGrad);
  registered = true;
  return [...CUSTOM_WASM_KERNELS];
}

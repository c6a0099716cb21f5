/**
 * Lazy loader of the native addon (native/, built by node-gyp when the package installs).
 * Loading never throws: a missing or broken build, or FLATRANK_NATIVE=0, makes the addon
 * unavailable with a one-line reason, and backend selection moves on to wasm.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The functions exported by native/src/addon.cc (all synchronous, Float32Array in/out). */
export interface NativeAddon {
  /** kind 0: y = conv(x, w [, bias]); 1: dx from (dy, w); 2: dw from (x, dy). params: see CONV_PARAMS. */
  conv(
    kind: 0 | 1 | 2,
    params: Int32Array,
    a: Float32Array,
    b: Float32Array,
    bias: Float32Array | null,
    out: Float32Array,
  ): void;
  convImpl(kind: 0 | 1 | 2, params: Int32Array, hasBias: number): string;
  /**
   * The conv calls recorded since the previous call, per kind and shape (then forgotten); `on`
   * switches recording on or off from now on (off: one relaxed atomic load per conv call).
   */
  convProfile(on: boolean): NativeConvStat[];
  matmul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    batchA: number,
    batchB: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
  ): void;
  binary(
    op: number,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    shape: Int32Array,
    stridesA: Int32Array,
    stridesB: Int32Array,
  ): void;
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void;
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, red: number, inner: number): void;
  gather(x: Float32Array, out: Float32Array, shape: Int32Array, strides: Int32Array, offset: number): void;
  pad(
    x: Float32Array,
    out: Float32Array,
    inShape: Int32Array,
    outShape: Int32Array,
    before: Int32Array,
    value: number,
  ): void;
  maxPool(params: Int32Array, x: Float32Array, y: Float32Array): void;
  avgPool(params: Int32Array, x: Float32Array, y: Float32Array): void;
  /** y: the forward output (skips the per-window max scan), or null. */
  maxPoolGrad(
    params: Int32Array,
    x: Float32Array,
    dy: Float32Array,
    dx: Float32Array,
    y: Float32Array | null,
  ): void;
  avgPoolGrad(params: Int32Array, dy: Float32Array, dx: Float32Array): void;
  batchNorm(
    x: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    offset: Float32Array | null,
    scale: Float32Array | null,
    eps: number,
    out: Float32Array,
  ): void;
  batchNormGrad(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    scale: Float32Array | null,
    eps: number,
    dx: Float32Array,
    dmean: Float32Array,
    dvariance: Float32Array,
    dscale: Float32Array,
    doffset: Float32Array,
  ): void;
  /**
   * Training-mode batch norm: y and the batch mean / biased variance over all axes but the last;
   * relu 1 rectifies y in the same pass.
   */
  batchNormTrain(
    x: Float32Array,
    scale: Float32Array | null,
    offset: Float32Array | null,
    eps: number,
    y: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    relu?: 0 | 1,
  ): void;
  /**
   * Gradient of batchNormTrain (statistics included); dmean / dvariance null when zero. reluOffset
   * (the forward offset, or an empty array for none) when the forward pass was rectified.
   */
  batchNormTrainGrad(
    dy: Float32Array,
    x: Float32Array,
    scale: Float32Array | null,
    mean: Float32Array,
    variance: Float32Array,
    dmean: Float32Array | null,
    dvariance: Float32Array | null,
    eps: number,
    dx: Float32Array,
    dscale: Float32Array,
    doffset: Float32Array,
    reluOffset?: Float32Array | null,
  ): void;
  /** One momentum-SGD step for one variable (SGD_MOMENTUM_KERNEL); buffers may be null when momentum is 0. */
  sgdMomentum(
    w: Float32Array,
    buf: Float32Array | null,
    grad: Float32Array,
    lr: number,
    momentum: number,
    weightDecay: number,
    nesterov: number,
    wOut: Float32Array,
    bufOut: Float32Array | null,
  ): void;
  setNumThreads(n: number): void;
  info(): { onednn: string; threads: number; cachedPrimitives: number };
}

/** One conv kind and shape as the addon's profiling recorded it (native/src/addon.cc convProfile). */
export interface NativeConvStat {
  kind: 0 | 1 | 2;
  /** CONV_PARAMS order (N IH IW IC OH OW OC KH KW SH SW DH DW PT PL PB PR G ACT). */
  params: number[];
  bias: boolean;
  calls: number;
  /** Whole calls, wall clock. */
  wallMs: number;
  /** oneDNN executions, summed over the threads that ran them (thread CPU clocks). */
  execCpuMs: number;
  /** Weights converted to the primitive's layout (forward, backward data), wall clock. */
  weightsMs: number;
  /** Per-chunk weight gradients summed and converted back (backward weights), wall clock. */
  reduceMs: number;
  /** oneDNN's implementation (impl_info_str) of the full-size chunk. */
  impl: string;
}

export interface NativeAddonStatus {
  available: boolean;
  /** Why it is unavailable (one line), or where it was loaded from. */
  detail: string;
}

/** native/build/Release/flatrank_native.node, relative to this file in src/ or dist/. */
export function addonPath(): string {
  return fileURLToPath(new URL('../native/build/Release/flatrank_native.node', import.meta.url));
}

let cached: { addon: NativeAddon | null; status: NativeAddonStatus } | null = null;

/**
 * Loads the addon once per process (env read on first call): FLATRANK_NATIVE=0 forces it off,
 * FLATRANK_NATIVE_ADDON=<file.node> loads another build, FLATRANK_NATIVE_THREADS=N sets the threads.
 */
export function loadNativeAddon(env: NodeJS.ProcessEnv = process.env): {
  addon: NativeAddon | null;
  status: NativeAddonStatus;
} {
  if (cached) return cached;
  cached = tryLoad(env);
  return cached;
}

/** Forgets the cached load result (tests toggle FLATRANK_NATIVE). The loaded library stays mapped. */
export function resetNativeAddonCache(): void {
  cached = null;
}

function tryLoad(env: NodeJS.ProcessEnv): { addon: NativeAddon | null; status: NativeAddonStatus } {
  const flag = env['FLATRANK_NATIVE'];
  if (flag === '0' || flag === 'false' || flag === 'off')
    return { addon: null, status: { available: false, detail: `disabled by FLATRANK_NATIVE=${flag}` } };
  const path = env['FLATRANK_NATIVE_ADDON'] || addonPath();
  if (!existsSync(path))
    return {
      addon: null,
      status: {
        available: false,
        detail: `addon not built (${path} missing; run npm run build:native -w @flatrank/backend-native)`,
      },
    };
  // Under V8's sampling profiler (--cpu-prof, --prof) oneDNN's AVX-512 kernels have aborted the
  // process with heap corruption (4 of 4 runs; none with AVX2, none without the profiler, and
  // valgrind/ASan runs are clean): cap oneDNN at AVX2 there unless the user chose an ISA.
  const execArgs = [...process.execArgv, ...(env['NODE_OPTIONS'] ?? '').split(/\s+/)];
  if (
    !env['ONEDNN_MAX_CPU_ISA'] &&
    !env['DNNL_MAX_CPU_ISA'] &&
    execArgs.some((a) => a.startsWith('--cpu-prof') || a === '--prof')
  )
    process.env['ONEDNN_MAX_CPU_ISA'] = 'AVX2';
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as NativeAddon;
    const threads = Number(env['FLATRANK_NATIVE_THREADS'] ?? '');
    if (Number.isInteger(threads) && threads > 0) addon.setNumThreads(threads);
    const i = addon.info();
    return {
      addon,
      status: { available: true, detail: `${path} (oneDNN ${i.onednn}, ${i.threads} threads)` },
    };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    return { addon: null, status: { available: false, detail: `addon failed to load: ${msg}` } };
  }
}

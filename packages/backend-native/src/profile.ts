/**
 * Per-kernel profile of work on the 'native' backend: where a training step's time goes.
 *
 * profileNative(f) runs f under TF.js's own profiler (tf.profile: every kernel the engine runs,
 * with its input and output shapes, timed by the backend's timer, which here also reads the
 * process CPU clock), the addon's conv recorder (per conv kind and shape: oneDNN's executions on
 * thread CPU clocks, the weight-layout conversions and gradient reductions around them) and
 * Node's GC observer, and counts the native kernels that fell back to the cpu ones. All of it is
 * off outside profileNative: tf.profile's hook is a flag test per kernel, the addon's one atomic
 * load per conv, the fallback counter a null test.
 *
 * summarizeProfile(runs) turns one or more profiled steps into rows: per TF.js kernel (calls, ms,
 * share of the step, FLOPs and GFLOP/s for convs and matmuls), per conv layer shape and pass
 * (forward, backprop-input, backprop-filter), and the step's time outside kernels.
 */
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import { FlatrankError } from '@flatrank/protocol';
import { loadNativeAddon, type NativeConvStat } from './addon.js';
import { NativeBackend } from './buffers.js';
import { countFallbacks } from './kernels.js';

export const PROFILE_BACKEND = 'native';

/** One kernel call as tf.profile recorded it. */
export interface KernelCall {
  name: string;
  /** Wall time of the kernel function (argument checks, output allocation and the addon call). */
  ms: number;
  /** Process CPU time over the same span (the caller and the addon's worker threads). */
  cpuMs: number | null;
  inputShapes: Array<number[] | null>;
  outputShapes: number[][];
}

/** What one profiled run of f measured. */
export interface ProfiledRun<T = unknown> {
  result: T;
  /** Wall and process CPU time of the whole run. */
  wallMs: number;
  cpuMs: number;
  /** Kernels as the engine ran them, in order (op scopes such as customGrad wrappers left out). */
  kernels: KernelCall[];
  /** Wall time of the op scopes (e.g. fused conv's customGrad), which contain kernels above. */
  scopeMs: number;
  /** Garbage collection pauses of the main thread that started during the run (may overlap kernels). */
  gcMs: number;
  gcCount: number;
  /** The addon's conv recorder: per conv kind and shape. */
  conv: NativeConvStat[];
  /** Native kernels that ran the cpu kernel instead, per name. */
  fallbacks: Record<string, number>;
  /** Output buffers the backend allocated fresh vs took from its free list during the run. */
  buffers: { allocated: number; reused: number };
  /** oneDNN conv primitives created during the run (0 once warm: the addon caches them per shape). */
  primitivesCreated: number;
}

/** Profiles f (typically one training step) on the active 'native' backend. */
export async function profileNative<T>(f: () => Promise<T> | T): Promise<ProfiledRun<T>> {
  const backend = tf.getBackend();
  const addon = loadNativeAddon().addon;
  if (backend !== PROFILE_BACKEND || !addon || !(tf.backend() instanceof NativeBackend))
    throw new FlatrankError(
      'PROFILE_BACKEND',
      `profileNative needs the active '${PROFILE_BACKEND}' backend`,
      {
        context: { backend, addon: addon !== null },
      },
    );
  const pool = (tf.backend() as NativeBackend).poolStats;
  const pool0 = { ...pool };
  const gc: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => gc.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  const primitives0 = addon.info().cachedPrimitives;
  addon.convProfile(true);
  countFallbacks(true);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let info: Awaited<ReturnType<typeof tf.profile>>;
  let wallMs = 0;
  let cpu: NodeJS.CpuUsage = { user: 0, system: 0 };
  let conv: NativeConvStat[] = [];
  let fallbacks = new Map<string, number>();
  try {
    // tf.profile awaits f, then the kernels' timers (already settled: this backend times synchronously).
    info = await tf.profile(f as () => tf.TensorContainer);
  } finally {
    wallMs = performance.now() - t0;
    cpu = process.cpuUsage(c0);
    conv = addon.convProfile(false);
    fallbacks = countFallbacks(false);
    // GC entries arrive asynchronously: let the observer's queue drain once.
    await new Promise((r) => setImmediate(r));
    observer.disconnect();
  }
  const t1 = t0 + wallMs;
  const pauses = gc.filter((e) => e.startTime >= t0 && e.startTime <= t1);
  const kernels: KernelCall[] = [];
  let scopeMs = 0;
  for (const k of info.kernels) {
    const ms = Number(k.kernelTimeMs);
    if (!tf.getKernel(k.name, backend)) {
      scopeMs += ms; // an op scope (customGrad): its kernels are recorded on their own
      continue;
    }
    const cpuMatch = /cpuMs=([0-9.eE+-]+)/.exec(String(k.extraInfo ?? ''));
    kernels.push({
      name: k.name,
      ms,
      cpuMs: cpuMatch ? Number(cpuMatch[1]) : null,
      inputShapes: k.inputShapes.map((s) => (s ? [...s] : null)),
      outputShapes: k.outputShapes.map((s) => [...s]),
    });
  }
  return {
    result: info.result as T,
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    kernels,
    scopeMs,
    gcMs: pauses.reduce((s, e) => s + e.duration, 0),
    gcCount: pauses.length,
    conv,
    fallbacks: Object.fromEntries(fallbacks),
    buffers: { allocated: pool.allocated - pool0.allocated, reused: pool.reused - pool0.reused },
    primitivesCreated: addon.info().cachedPrimitives - primitives0,
  };
}

// ---------------------------------------------------------------- geometry and flops

export type ConvPass = 'forward' | 'backprop-input' | 'backprop-filter';

const CONV_KERNELS: Record<string, { pass: ConvPass; depthwise: boolean }> = {
  Conv2D: { pass: 'forward', depthwise: false },
  FusedConv2D: { pass: 'forward', depthwise: false },
  Conv2DBackpropInput: { pass: 'backprop-input', depthwise: false },
  Conv2DBackpropFilter: { pass: 'backprop-filter', depthwise: false },
  DepthwiseConv2dNative: { pass: 'forward', depthwise: true },
  FusedDepthwiseConv2D: { pass: 'forward', depthwise: true },
  DepthwiseConv2dNativeBackpropInput: { pass: 'backprop-input', depthwise: true },
  DepthwiseConv2dNativeBackpropFilter: { pass: 'backprop-filter', depthwise: true },
};
const MATMUL_KERNELS = new Set(['BatchMatMul', '_FusedMatMul']);
const ADDON_PASS: ConvPass[] = ['forward', 'backprop-input', 'backprop-filter'];

/** A conv's geometry (NHWC) as one pass of it saw it. */
export interface ConvGeometry {
  pass: ConvPass;
  depthwise: boolean;
  n: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
}

/** The conv geometry of a recorded conv kernel call (any pass), or null for other kernels. */
export function convGeometry(
  call: Pick<KernelCall, 'name' | 'inputShapes' | 'outputShapes'>,
): ConvGeometry | null {
  const k = CONV_KERNELS[call.name];
  if (!k) return null;
  const [a, b] = call.inputShapes;
  const o = call.outputShapes[0];
  if (!a || !b || !o) return null;
  // forward: (x, filter) -> y;  backprop-input: (dy, filter) -> dx;  backprop-filter: (x, dy) -> dw.
  const [x, y, w] = k.pass === 'forward' ? [a, o, b] : k.pass === 'backprop-input' ? [o, a, b] : [a, b, o];
  if (x.length !== 4 || y.length !== 4 || w.length !== 4) return null;
  return {
    pass: k.pass,
    depthwise: k.depthwise,
    n: x[0]!,
    inH: x[1]!,
    inW: x[2]!,
    inC: x[3]!,
    outH: y[1]!,
    outW: y[2]!,
    outC: y[3]!,
    kH: w[0]!,
    kW: w[1]!,
  };
}

/** Multiply-adds x 2 of one pass (the three passes of a conv do the same number). */
export function convFlops(g: ConvGeometry): number {
  const inPerGroup = g.depthwise ? 1 : g.inC;
  return 2 * g.n * g.outH * g.outW * g.kH * g.kW * inPerGroup * g.outC;
}

/** Flops of a recorded kernel call: convs and matmuls; null for kernels that are not counted. */
export function kernelFlops(call: Pick<KernelCall, 'name' | 'inputShapes' | 'outputShapes'>): number | null {
  const g = convGeometry(call);
  if (g) return convFlops(g);
  if (MATMUL_KERNELS.has(call.name)) {
    const a = call.inputShapes[0];
    const out = call.outputShapes[0];
    if (!a || !out || a.length < 2 || out.length < 2) return null;
    const m = out[out.length - 2]!;
    const n = out[out.length - 1]!;
    const batch = out.reduce((p, d) => p * d, 1) / (m * n);
    const k = (a[a.length - 1]! * a[a.length - 2]!) / m;
    return 2 * batch * m * n * k;
  }
  return null;
}

/** `3x3 16->32 32x32->16x16` (kernel, channels, spatial in -> out). */
export function convLayerLabel(g: ConvGeometry): string {
  const dw = g.depthwise ? ' depthwise' : '';
  return `${g.kH}x${g.kW}${dw} ${g.inC}->${g.outC} ${g.inH}x${g.inW}->${g.outH}x${g.outW}`;
}

/** The geometry of an addon conv record (CONV_PARAMS order). */
export function addonConvGeometry(s: Pick<NativeConvStat, 'kind' | 'params'>): ConvGeometry {
  const [n, inH, inW, inC, outH, outW, outC, kH, kW] = s.params as number[];
  const groups = s.params[17]!;
  return {
    pass: ADDON_PASS[s.kind]!,
    depthwise: groups > 1,
    n: n!,
    inH: inH!,
    inW: inW!,
    inC: inC!,
    outH: outH!,
    outW: outW!,
    outC: outC!,
    kH: kH!,
    kW: kW!,
  };
}

const geometryKey = (g: ConvGeometry): string =>
  [g.pass, g.depthwise, g.n, g.inH, g.inW, g.inC, g.outH, g.outW, g.outC, g.kH, g.kW].join(',');

export { geometryKey as convGeometryKey };

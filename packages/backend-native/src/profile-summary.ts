/**
 * Rows of a native profile (profile.ts): per TF.js kernel, per conv layer shape and pass, and the
 * step as a whole, averaged over the profiled runs (steps). Shares are of the step's wall time;
 * the kernel shares and the share outside kernels add up to 1 by construction (outside = step -
 * kernels), so a kernel counted twice shows as a negative outside share.
 */
import { FlatrankError } from '@flatrank/protocol';
import { BATCH_NORM_GRAD_KERNEL, GRADIENT_KERNELS, NATIVE_KERNELS } from './kernels.js';
import {
  addonConvGeometry,
  convFlops,
  convGeometry,
  convGeometryKey,
  convLayerLabel,
  kernelFlops,
  type ConvGeometry,
  type ConvPass,
  type ProfiledRun,
} from './profile.js';

export interface ProfileSummaryOptions {
  /** All-core fp32 FMA peak, GFLOP/s (denominator of fractionOfPeak), or null. */
  peakGflops: number | null;
  /**
   * One thread's peak, GFLOP per CPU second (denominator of the convs' fractionOfThreadPeak, which
   * divides by oneDNN's execution time on thread CPU clocks), or null.
   */
  peakGflopsPerThread: number | null;
}

export interface KernelRow {
  kernel: string;
  /** 'native': the addon's kernel; 'cpu': the cpu backend's; 'native+fallback': some calls fell back. */
  implementation: 'native' | 'cpu' | 'native+fallback';
  calls: number;
  ms: number;
  share: number;
  cpuMs: number | null;
  gflop: number | null;
  gflops: number | null;
  fractionOfPeak: number | null;
}

export interface ConvRow {
  pass: ConvPass;
  layer: string;
  batch: number;
  calls: number;
  ms: number;
  share: number;
  gflop: number;
  gflops: number;
  fractionOfPeak: number | null;
  /** oneDNN executions on thread CPU clocks, and the flop rate per CPU second against one thread's peak. */
  execCpuMs: number | null;
  gflopsPerCpuSecond: number | null;
  fractionOfThreadPeak: number | null;
  /** Weights to the primitive's layout (forward, backprop-input) / partial sums back (backprop-filter). */
  weightsMs: number | null;
  reduceMs: number | null;
  impl: string | null;
}

export interface StepSummary {
  steps: number;
  ms: number;
  cpuMs: number;
  kernelMs: number;
  kernelCalls: number;
  outsideKernelsMs: number;
  outsideKernelsShare: number;
  /** Wall time of the op scopes (customGrad wrappers, e.g. fused conv), their kernels included. */
  scopeMs: number;
  gcMs: number;
  gcCount: number;
  buffersAllocated: number;
  buffersReused: number;
  primitivesCreated: number;
  fallbacks: Record<string, number>;
  gflop: number;
  convGflop: number;
  gflops: number;
  fractionOfPeak: number | null;
  convMs: number;
  convShare: number;
}

export interface ProfileSummary {
  step: StepSummary;
  kernels: KernelRow[];
  convs: ConvRow[];
}

const NATIVE_NAMES = new Set([
  ...Object.keys(NATIVE_KERNELS),
  ...Object.keys(GRADIENT_KERNELS),
  BATCH_NORM_GRAD_KERNEL,
]);

const perSec = (gflop: number, ms: number): number => (ms > 0 ? gflop / (ms / 1000) : 0);

function kernelRows(
  runs: ProfiledRun[],
  stepMs: number,
  o: ProfileSummaryOptions,
  fallbacks: Record<string, number>,
): KernelRow[] {
  const steps = runs.length;
  const by = new Map<string, { calls: number; ms: number; cpuMs: number | null; flop: number | null }>();
  for (const run of runs)
    for (const k of run.kernels) {
      const e = by.get(k.name) ?? { calls: 0, ms: 0, cpuMs: 0, flop: null };
      e.calls++;
      e.ms += k.ms;
      e.cpuMs = e.cpuMs === null || k.cpuMs === null ? null : e.cpuMs + k.cpuMs;
      const f = kernelFlops(k);
      if (f !== null) e.flop = (e.flop ?? 0) + f;
      by.set(k.name, e);
    }
  return [...by]
    .map(([kernel, e]): KernelRow => {
      const ms = e.ms / steps;
      const gflop = e.flop === null ? null : e.flop / steps / 1e9;
      const gflops = gflop === null ? null : perSec(gflop, ms);
      return {
        kernel,
        implementation: !NATIVE_NAMES.has(kernel) ? 'cpu' : fallbacks[kernel] ? 'native+fallback' : 'native',
        calls: e.calls / steps,
        ms,
        share: ms / stepMs,
        cpuMs: e.cpuMs === null ? null : e.cpuMs / steps,
        gflop,
        gflops,
        fractionOfPeak: gflops !== null && o.peakGflops ? gflops / o.peakGflops : null,
      };
    })
    .sort((a, b) => b.ms - a.ms);
}

function convRows(runs: ProfiledRun[], stepMs: number, o: ProfileSummaryOptions): ConvRow[] {
  const steps = runs.length;
  const by = new Map<string, { g: ConvGeometry; calls: number; ms: number }>();
  for (const run of runs)
    for (const k of run.kernels) {
      const g = convGeometry(k);
      if (!g) continue;
      const key = convGeometryKey(g);
      const e = by.get(key) ?? { g, calls: 0, ms: 0 };
      e.calls++;
      e.ms += k.ms;
      by.set(key, e);
    }
  const addon = new Map<string, { execCpuMs: number; weightsMs: number; reduceMs: number; impl: string }>();
  for (const run of runs)
    for (const s of run.conv) {
      const key = convGeometryKey(addonConvGeometry(s));
      const e = addon.get(key) ?? { execCpuMs: 0, weightsMs: 0, reduceMs: 0, impl: s.impl };
      e.execCpuMs += s.execCpuMs;
      e.weightsMs += s.weightsMs;
      e.reduceMs += s.reduceMs;
      addon.set(key, e);
    }
  const threadPeak = o.peakGflopsPerThread;
  return [...by]
    .map(([key, e]): ConvRow => {
      const ms = e.ms / steps;
      const gflop = (convFlops(e.g) * e.calls) / steps / 1e9;
      const gflops = perSec(gflop, ms);
      const a = addon.get(key);
      const execCpuMs = a ? a.execCpuMs / steps : null;
      const perCpu = execCpuMs ? perSec(gflop, execCpuMs) : null;
      return {
        pass: e.g.pass,
        layer: convLayerLabel(e.g),
        batch: e.g.n,
        calls: e.calls / steps,
        ms,
        share: ms / stepMs,
        gflop,
        gflops,
        fractionOfPeak: o.peakGflops ? gflops / o.peakGflops : null,
        execCpuMs,
        gflopsPerCpuSecond: perCpu,
        fractionOfThreadPeak: perCpu !== null && threadPeak ? perCpu / threadPeak : null,
        weightsMs: a ? a.weightsMs / steps : null,
        reduceMs: a ? a.reduceMs / steps : null,
        impl: a?.impl ?? null,
      };
    })
    .sort((a, b) => b.ms - a.ms);
}

/** Averages profiled runs (one per step) into the step summary, kernel rows and conv rows. */
export function summarizeProfile(runs: ProfiledRun[], o: ProfileSummaryOptions): ProfileSummary {
  if (runs.length === 0)
    throw new FlatrankError('PROFILE_EMPTY', 'summarizeProfile needs at least one profiled run', {
      context: { runs: 0 },
    });
  const steps = runs.length;
  const mean = (f: (r: ProfiledRun) => number): number => runs.reduce((s, r) => s + f(r), 0) / steps;
  const stepMs = mean((r) => r.wallMs);
  const fallbacks: Record<string, number> = {};
  for (const r of runs)
    for (const [k, n] of Object.entries(r.fallbacks)) fallbacks[k] = (fallbacks[k] ?? 0) + n;
  const kernels = kernelRows(runs, stepMs, o, fallbacks);
  const convs = convRows(runs, stepMs, o);
  const kernelMs = kernels.reduce((s, k) => s + k.ms, 0);
  const gflop = kernels.reduce((s, k) => s + (k.gflop ?? 0), 0);
  const convGflop = convs.reduce((s, c) => s + c.gflop, 0);
  const convMs = convs.reduce((s, c) => s + c.ms, 0);
  const gflops = perSec(gflop, stepMs);
  return {
    step: {
      steps,
      ms: stepMs,
      cpuMs: mean((r) => r.cpuMs),
      kernelMs,
      kernelCalls: kernels.reduce((s, k) => s + k.calls, 0),
      outsideKernelsMs: stepMs - kernelMs,
      outsideKernelsShare: (stepMs - kernelMs) / stepMs,
      scopeMs: mean((r) => r.scopeMs),
      gcMs: mean((r) => r.gcMs),
      gcCount: mean((r) => r.gcCount),
      buffersAllocated: mean((r) => r.buffers.allocated),
      buffersReused: mean((r) => r.buffers.reused),
      primitivesCreated: mean((r) => r.primitivesCreated),
      fallbacks,
      gflop,
      convGflop,
      gflops,
      fractionOfPeak: o.peakGflops ? gflops / o.peakGflops : null,
      convMs,
      convShare: convMs / stepMs,
    },
    kernels,
    convs,
  };
}

/**
 * `npm run bench -- profile [--model resnet32] [--batch 128] [--steps 3] [--warmup 2]
 * [--peak measured|committed|none|GFLOPS] [--peak-reps 3] [--json FILE]`: where one training step
 * of a net on the native backend spends its time, per TF.js kernel and per conv layer shape and
 * pass (forward, backprop-input, backprop-filter), with FLOPs, GFLOP/s and fractions of the FMA peak.
 *
 * The step is the training bench's (lib/training-child.ts: flatrank's MomentumSgd at batch 128),
 * run in a child process: `--warmup` untimed steps, `--steps` plain timed steps, then `--steps`
 * steps each under @flatrank/backend-native's profileNative (tf.profile with the backend's timer,
 * which adds process CPU time; the addon's conv recorder, which adds oneDNN's execution time on
 * thread CPU clocks and the weight conversions around it; GC pauses; fallbacks). The rows are the
 * profiled steps' means: `kind: 'step'` (step ms plain and profiled, time in and outside kernels,
 * GC, fresh buffers, total and conv GFLOP/s, peak RSS), `kind: 'kernel'` (one per TF.js kernel
 * name), `kind: 'conv'` (one per conv shape and pass; `calls` > 1 when several layers share a shape).
 *
 * Peak: `measured` (default) runs the peak-fma kernel of @flatrank/backend-native on all cores now
 * (best of --peak-reps; a loaded machine measures less than its peak); `committed` takes the
 * all-core row of docs/bench/peak-fma.json (measured on the machine and date it names, which may
 * not be this one); a number is taken as GFLOP/s on all cores; `none` leaves the fractions null.
 * Shares of the step stay informative on a loaded machine (every kernel slows down alike when the
 * cores are shared); absolute ms and GFLOP/s do not: the step row carries the load average.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ModelName } from '@flatrank/protocol';
import { NET_INPUT, runJob, type ProfileResult } from './lib/jobs.js';
import { median, significant } from './lib/stats.js';
import { peakRssMiB } from './training.js';

type Row = Record<string, string | number | boolean | null>;

/** docs/bench/peak-fma.json at the repository root (two levels above this package). */
function committedPeakFile(): string {
  const pkg = createRequire(import.meta.url).resolve('@flatrank/trainers/package.json');
  return join(dirname(pkg), '..', '..', 'docs', 'bench', 'peak-fma.json');
}

export interface ProfileOptions {
  net: ModelName;
  batch: number;
  steps: number;
  warmup: number;
  peak: 'measured' | 'committed' | 'none' | number;
  peakReps: number;
}

/** Options as `--name=value` or `--name value` (the root runner joins the latter). */
export function parseProfileOptions(args: string[]): ProfileOptions {
  const o: ProfileOptions = {
    net: 'resnet32',
    batch: 128,
    steps: 3,
    warmup: 2,
    peak: 'measured',
    peakReps: 3,
  };
  const int = (k: string, v: string, min: number): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min)
      throw new Error(`profile bench: ${k} must be an integer >= ${min}, got '${v}'`);
    return x;
  };
  for (const a of args) {
    const eq = a.indexOf('=');
    const [k, v] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, ''];
    if (k === '--model' || k === '--net') {
      if (!NET_INPUT[v as ModelName])
        throw new Error(`profile bench: ${k}: unknown '${v}'; allowed: ${Object.keys(NET_INPUT).join(', ')}`);
      o.net = v as ModelName;
    } else if (k === '--batch') o.batch = int(k, v, 1);
    else if (k === '--steps') o.steps = int(k, v, 1);
    else if (k === '--warmup') o.warmup = int(k, v, 0);
    else if (k === '--peak-reps') o.peakReps = int(k, v, 1);
    else if (k === '--peak') {
      const x = Number(v);
      if (v === 'measured' || v === 'committed' || v === 'none') o.peak = v;
      else if (v !== '' && Number.isFinite(x) && x > 0) o.peak = x;
      else
        throw new Error(`profile bench: --peak must be measured, committed, none or GFLOP/s > 0, got '${v}'`);
    } else throw new Error(`profile bench: unknown option ${a}`);
  }
  return o;
}

export interface Peak {
  /** All cores, GFLOP/s (wall clock). */
  gflops: number;
  /** One thread, GFLOP per CPU second (load-robust when measured; else gflops / threads). */
  perThread: number;
  threads: number;
  source: string;
}

async function resolvePeak(o: ProfileOptions): Promise<Peak | null> {
  if (o.peak === 'none') return null;
  const cores = availableParallelism();
  if (typeof o.peak === 'number')
    return {
      gflops: o.peak,
      perThread: o.peak / cores,
      threads: cores,
      source: `given: ${o.peak} GFLOP/s on ${cores} threads`,
    };
  if (o.peak === 'committed') {
    const rec = JSON.parse(readFileSync(committedPeakFile(), 'utf8')) as {
      date: string;
      host: { cpu: string };
      rows: Array<{ threads: number; gflopsPeak: number; isa: string }>;
    };
    const row = rec.rows.reduce((a, b) => (b.threads > a.threads ? b : a));
    return {
      gflops: row.gflopsPeak,
      perThread: row.gflopsPeak / row.threads,
      threads: row.threads,
      source: `committed docs/bench/peak-fma.json (${rec.date.slice(0, 10)}, ${rec.host.cpu}, ${row.isa}, ${row.threads} threads)`,
    };
  }
  const pkg = createRequire(import.meta.url).resolve('@flatrank/backend-native/package.json');
  const mod = (await import(pathToFileURL(join(dirname(pkg), 'bench', 'dist', 'peak-fma.js')).href)) as {
    measurePeakFma: (o: { threads: number; reps: number }) => Promise<{
      best: number;
      bestPerThreadCpuSecond: number;
      isa: string;
      threads: number;
    }>;
  };
  const load = loadavg()[0]!.toFixed(2);
  const p = await mod.measurePeakFma({ threads: cores, reps: o.peakReps });
  return {
    gflops: p.best,
    perThread: p.bestPerThreadCpuSecond,
    threads: p.threads,
    source: `measured now (peak-fma, ${p.isa}, ${p.threads} threads, best of ${o.peakReps}, load ${load}; per thread on CPU clocks)`,
  };
}

const sig = (x: number | null, digits = 3): number | null => (x === null ? null : significant(x, digits));

/** The suite's rows from a profile job's result. */
export function profileRows(r: ProfileResult, o: ProfileOptions, peak: Peak | null, load: number): Row[] {
  const s = r.summary;
  const plain = median(r.plainStepMs);
  const rows: Row[] = [
    {
      kind: 'step',
      net: o.net,
      batch: r.batch,
      version: r.version,
      steps: s.step.steps,
      plainStepMs: sig(plain),
      profiledStepMs: sig(s.step.ms),
      profilerOverhead: sig(s.step.ms / plain - 1, 2),
      cpuMs: sig(s.step.cpuMs),
      kernelMs: sig(s.step.kernelMs),
      kernelCalls: Math.round(s.step.kernelCalls),
      convMs: sig(s.step.convMs),
      convShare: sig(s.step.convShare),
      outsideKernelsMs: sig(s.step.outsideKernelsMs),
      outsideKernelsShare: sig(s.step.outsideKernelsShare),
      scopeMs: sig(s.step.scopeMs),
      gcMs: sig(s.step.gcMs),
      gcCount: sig(s.step.gcCount),
      buffersAllocated: sig(s.step.buffersAllocated),
      buffersReused: sig(s.step.buffersReused),
      primitivesCreated: sig(s.step.primitivesCreated),
      fallbacks:
        Object.entries(s.step.fallbacks)
          .map(([k, n]) => `${k} x${n}`)
          .join(', ') || null,
      gflop: sig(s.step.gflop),
      convGflop: sig(s.step.convGflop),
      gflops: sig(s.step.gflops),
      peakGflops: sig(peak?.gflops ?? null),
      peakGflopsPerThreadCpuSecond: sig(peak?.perThread ?? null),
      fractionOfPeak: sig(s.step.fractionOfPeak),
      peakSource: peak?.source ?? null,
      peakRssMiB: peakRssMiB([r.maxRssKb], `profile ${o.net}`),
      loadAverage: Math.round(load * 100) / 100,
      note: 'means over the profiled steps; shares hold under load, absolute times do not',
    },
  ];
  for (const k of s.kernels)
    rows.push({
      kind: 'kernel',
      kernel: k.kernel,
      implementation: k.implementation,
      calls: k.calls,
      ms: sig(k.ms),
      share: sig(k.share),
      cpuMs: sig(k.cpuMs),
      gflop: sig(k.gflop),
      gflops: sig(k.gflops),
      fractionOfPeak: sig(k.fractionOfPeak),
    });
  for (const c of s.convs)
    rows.push({
      kind: 'conv',
      pass: c.pass,
      layer: c.layer,
      calls: c.calls,
      ms: sig(c.ms),
      share: sig(c.share),
      gflop: sig(c.gflop),
      gflops: sig(c.gflops),
      fractionOfPeak: sig(c.fractionOfPeak),
      execCpuMs: sig(c.execCpuMs),
      gflopsPerCpuSecond: sig(c.gflopsPerCpuSecond),
      fractionOfThreadPeak: sig(c.fractionOfThreadPeak),
      weightsMs: sig(c.weightsMs),
      reduceMs: sig(c.reduceMs),
      impl: c.impl,
    });
  return rows;
}

export default {
  name: 'profile',
  description:
    'per-kernel profile of warm training steps on the native backend: calls, ms, share of the step, FLOPs and GFLOP/s vs the FMA peak per TF.js kernel and per conv shape and pass, and the time outside kernels',
  async run(args: string[]): Promise<Row[]> {
    const o = parseProfileOptions(args);
    const peak = await resolvePeak(o);
    const load = loadavg()[0]!;
    const r = await runJob<ProfileResult>({
      kind: 'profile',
      net: o.net,
      batch: o.batch,
      warmup: o.warmup,
      steps: o.steps,
      peakGflops: peak?.gflops ?? null,
      peakGflopsPerThread: peak?.perThread ?? null,
    });
    return profileRows(r, o, peak, load);
  },
};

/**
 * `npm run bench -- peak-fma [--reps=N] [--seconds=S] [--isa=auto|avx512|avx2|sse]`: the machine's
 * peak fp32 multiply-add throughput, GFLOP/s on 1 thread and on every core, with the instruction set
 * the native backend's convolutions run on (oneDNN's effective ISA: avx2 -> AVX2 + FMA, 8 lanes;
 * avx512_* -> AVX-512, 16 lanes). peak-fma.cc beside this file is the kernel (independent packed FMA
 * chains in registers, no memory traffic); it is compiled with g++ on first use into bench/dist/.
 * The training bench divides its achieved GFLOP/s by the all-core figure (`measurePeakFma`).
 *
 * The peak is the best repetition (noise only ever slows a repetition down); median and min say how
 * steady the machine was. `gflopsPerThreadCpuSecond` divides by each thread's CPU time instead of
 * the wall clock: one core's peak, which holds on a loaded machine too (the profile suite compares
 * oneDNN's conv executions, timed on thread CPU clocks, against it). `impliedGhz` is the clock that peak implies with two FMA pipes per core
 * (lanes x 2 flops x 2 pipes per cycle), a sanity check against the CPU's boost clock.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

type Row = Record<string, string | number | boolean | null>;

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
/** bench/dist/peak-fma.js -> bench/peak-fma.cc (the source is not copied into dist). */
const SOURCE = join(here, '..', 'peak-fma.cc');
const BINARY = join(here, 'peak-fma');

export interface PeakFma {
  /** The kernel's instruction set: 'avx512f', 'avx2+fma' or 'sse'. */
  isa: string;
  /** oneDNN's effective ISA on this CPU ('unavailable' when the kernel was built without oneDNN). */
  onednnIsa: string;
  lanes: number;
  chains: number;
  threads: number;
  /** GFLOP/s of each repetition (2 flops per lane and FMA). */
  gflops: number[];
  /** GFLOP per thread-CPU-second of each repetition: one core's peak even when other processes share the cores. */
  gflopsPerThreadCpuSecond: number[];
  best: number;
  median: number;
  min: number;
  /** The best of gflopsPerThreadCpuSecond. */
  bestPerThreadCpuSecond: number;
}

export interface PeakFmaOptions {
  threads: number;
  reps?: number;
  /** Seconds per repetition (default 0.25). */
  seconds?: number;
  isa?: 'auto' | 'avx512' | 'avx2' | 'sse';
}

/** Compiles peak-fma.cc when the binary is missing or older; returns its path. */
export function peakFmaBinary(): string {
  if (existsSync(BINARY) && statSync(BINARY).mtimeMs >= statSync(SOURCE).mtimeMs) return BINARY;
  mkdirSync(dirname(BINARY), { recursive: true });
  const base = ['-O2', '-std=c++17', '-pthread', SOURCE, '-o', BINARY];
  // With oneDNN's headers the kernel asks oneDNN which ISA it dispatches to; without, it takes the CPU's best.
  const withDnnl = existsSync('/usr/include/oneapi/dnnl/dnnl.h');
  const args = withDnnl ? ['-DFLATRANK_WITH_DNNL', ...base, '-ldnnl'] : base;
  const r = spawnSync('g++', args, { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(
      `peak-fma: could not compile ${SOURCE} (g++ ${args.join(' ')}): ${(r.stderr || String(r.error)).trim().split('\n')[0]}`,
    );
  return BINARY;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs the FMA kernel on `threads` threads in a child process (this process stays idle meanwhile). */
export async function measurePeakFma(o: PeakFmaOptions): Promise<PeakFma> {
  const bin = peakFmaBinary();
  const { stdout } = await run(
    bin,
    [
      '--threads',
      String(o.threads),
      '--reps',
      String(o.reps ?? 5),
      '--seconds',
      String(o.seconds ?? 0.25),
      '--isa',
      o.isa ?? 'auto',
    ],
    { timeout: 600_000 },
  );
  const r = JSON.parse(stdout.trim()) as Omit<PeakFma, 'best' | 'median' | 'min' | 'bestPerThreadCpuSecond'>;
  return {
    ...r,
    best: Math.max(...r.gflops),
    median: median(r.gflops),
    min: Math.min(...r.gflops),
    bestPerThreadCpuSecond: Math.max(...r.gflopsPerThreadCpuSecond),
  };
}

function option(args: string[], name: string): string | undefined {
  const eq = args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

const round = (x: number): number => Math.round(x * 10) / 10;

export default {
  name: 'peak-fma',
  description:
    "peak fp32 FMA GFLOP/s of this machine on 1 thread and on every core, with the ISA oneDNN (the native backend's convolutions) dispatches to: the denominator of the training bench's fraction of peak",
  async run(args: string[]): Promise<Row[]> {
    const reps = Number(option(args, '--reps') ?? 7);
    const seconds = Number(option(args, '--seconds') ?? 0.25);
    const isa = (option(args, '--isa') ?? 'auto') as PeakFmaOptions['isa'];
    if (!(reps >= 1) || !(seconds > 0))
      throw new Error(`peak-fma: --reps must be >= 1 and --seconds > 0, got ${reps} and ${seconds}`);
    const cores = availableParallelism();
    const rows: Row[] = [];
    for (const threads of [...new Set([1, cores])]) {
      const load1 = round(loadavg()[0]!);
      const p = await measurePeakFma({ threads, reps, seconds, isa });
      rows.push({
        threads,
        isa: p.isa,
        onednnIsa: p.onednnIsa,
        lanes: p.lanes,
        chains: p.chains,
        gflopsPeak: round(p.best),
        gflopsMedian: round(p.median),
        gflopsMin: round(p.min),
        gflopsPerThread: round(p.best / threads),
        gflopsPerThreadCpuSecond: round(p.bestPerThreadCpuSecond),
        // Two FMA pipes per core (Zen 2/3/4, Skylake-X and later): the clock this peak implies.
        impliedGhz: Math.round((p.best / threads / (2 * 2 * p.lanes)) * 100) / 100,
        reps,
        load1,
        note: `best of ${reps} repetitions of ~${seconds} s, ${p.chains} independent FMA chains per thread`,
      });
    }
    return rows;
  },
};

// Benchmark suite `core-linalg`: thin SVD of float64 matrices shaped like conv layers' lowered kernels
// (the ResNet-20/32 ones, 16x144 .. 64x576, and wider layers' 128x1152 .. 512x4608) and of small square
// ones, with every available @flatrank/core path side by side in one run: native LAPACK, pure JS (the
// fallback), randomized, the singular values alone (`singularValues`: dgesdd jobz='N', and the JS
// path without U and V; `valuesVsFull` is its time over the full SVD's on the same path), and numpy
// (LAPACK gesdd) on the very same matrix when python3 + numpy are installed. `jsVsNative` is the JS row's time
// over the native row's; `cpuMs` is the process CPU time per call (steadier than wall time on a shared
// machine for the single-threaded JS path; native may exceed its wall time with two OpenBLAS threads).
// Options: --reps=N (timed runs per row, default by size), --no-js-large (skip the pure-JS rows of
// 512x4608), --numpy-1thread (also time numpy on one OpenBLAS thread), --no-numpy (skip numpy), --quick
// (conv shapes only, no randomized rows and no decaying case).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tensor,
  createRng,
  linalgInfo,
  matmul,
  qr,
  readNpy,
  singularValues,
  svd,
  writeNpy,
  type SvdOptions,
} from '@flatrank/core';

type Row = Record<string, string | number | boolean | null>;

const NUMPY_SCRIPT = `
import json, sys, time
import numpy as np
a = np.load(sys.argv[1])
reps = int(sys.argv[2])
np.linalg.svd(a, full_matrices=False)
ts = []
for _ in range(reps):
    t = time.perf_counter()
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    ts.append((time.perf_counter() - t) * 1e3)
np.save(sys.argv[3], s)
print(json.dumps({"times": ts, "version": np.__version__}))
`;

function gaussianMatrix(m: number, n: number, seed: number): Tensor {
  const rng = createRng(seed);
  const a = Tensor.zeros([m, n]);
  for (let i = 0; i < a.size; i++) a.data[i] = rng.normal();
  return a;
}

/** Q1 diag(s) Q2^T with random orthonormal Q1, Q2 and s_i = 10 exp(-i / 25). */
function decayingMatrix(m: number, n: number, seed: number): Tensor {
  const k = Math.min(m, n);
  const q1 = qr(gaussianMatrix(m, k, seed)).Q;
  const q2 = qr(gaussianMatrix(n, k, seed + 1)).Q;
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) q1.data[i * k + j]! *= 10 * Math.exp(-j / 25);
  return matmul(q1, q2, { transposeB: true });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

function hasNumpy(): boolean {
  return spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
}

function timeNumpy(
  a: Tensor,
  reps: number,
  dir: string,
  threads?: number,
): { ms: number; s: Float64Array; version: string } | { error: string } {
  const inFile = join(dir, `a-${a.shape.join('x')}.npy`);
  const outFile = join(dir, `s-${a.shape.join('x')}.npy`);
  writeFileSync(inFile, writeNpy(a));
  const r = spawnSync('python3', ['-c', NUMPY_SCRIPT, inFile, String(reps), outFile], {
    encoding: 'utf8',
    env: threads ? { ...process.env, OPENBLAS_NUM_THREADS: String(threads) } : process.env,
    timeout: 600_000,
  });
  if (r.status !== 0)
    return { error: (r.stderr || String(r.error)).trim().split('\n').pop() ?? 'python3 failed' };
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { times: number[]; version: string };
  const s = readNpy(readFileSync(outFile), outFile);
  return { ms: median(out.times), s: Float64Array.from(s.data), version: out.version };
}

function timeSvd(
  a: Tensor,
  opts: SvdOptions,
  reps: number,
  forceJs: boolean,
): { ms: number; cpuMs: number; s: Float64Array } {
  return timeSpectrum(() => svd(a, opts).S, reps, forceJs);
}

/** `singularValues` (no U, V) on one path. */
function timeValues(a: Tensor, method: 'native' | 'js', reps: number): Timed {
  return timeSpectrum(() => singularValues(a, { method }), reps, method === 'js');
}

function timeSpectrum(
  call: () => Float64Array,
  reps: number,
  forceJs: boolean,
): { ms: number; cpuMs: number; s: Float64Array } {
  const prev = process.env.FLATRANK_LINALG;
  if (forceJs) process.env.FLATRANK_LINALG = 'js';
  try {
    // Warm-up: at least 3 calls, and up to 0.3 s of them, so that the optimising compiler (whose
    // threads count in cpuMs) is done with the kernels before the timed calls.
    let s = call();
    const warmEnd = performance.now() + 300;
    for (let w = 1; w < 3 || (w < 50 && performance.now() < warmEnd); w++) s = call();
    const ts: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < reps; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      s = call();
      ts.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    return { ms: median(ts), cpuMs: median(cpu), s };
  } finally {
    if (prev === undefined) delete process.env.FLATRANK_LINALG;
    else process.env.FLATRANK_LINALG = prev;
  }
}

/** max_i |s_i - ref_i| / ref_i over the leading s.length values. */
function maxRelDiff(s: Float64Array, ref: Float64Array): number {
  let d = 0;
  for (let i = 0; i < s.length; i++) d = Math.max(d, Math.abs(s[i]! - ref[i]!) / ref[i]!);
  return d;
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

type Timed = { ms: number; cpuMs?: number; s: Float64Array };

export default {
  name: 'core-linalg',
  description:
    'thin SVD of lowered-kernel shapes 64x576..512x4608 and small squares (float64, gaussian): native LAPACK and pure JS side by side, randomized, vs numpy in the same run',
  async run(args: string[]): Promise<Row[]> {
    const repsArg = argValue(args, '--reps');
    const skipJsLarge = args.includes('--no-js-large');
    const single = args.includes('--numpy-1thread');
    const quick = args.includes('--quick');
    const info = linalgInfo();
    const numpy = !args.includes('--no-numpy') && hasNumpy();
    const dir = mkdtempSync(join(tmpdir(), 'flatrank-bench-'));
    const rows: Row[] = [];
    try {
      const cases = [
        // ResNet-20/32 lowered kernels [T, kh kw S] (3x3 convs of 16, 32 and 64 channels; 64x576 is
        // also the stage-3 one): what every distortion decomposes.
        { m: 16, n: 144, defaultReps: 41, randRank: 4, decaying: false },
        { m: 32, n: 144, defaultReps: 41, randRank: 8, decaying: false },
        { m: 32, n: 288, defaultReps: 31, randRank: 8, decaying: false },
        { m: 64, n: 288, defaultReps: 21, randRank: 16, decaying: false },
        { m: 64, n: 576, defaultReps: 15, randRank: 16, decaying: false },
        { m: 128, n: 1152, defaultReps: 9, randRank: 32, decaying: false },
        { m: 256, n: 2304, defaultReps: 5, randRank: 32, decaying: false },
        { m: 512, n: 4608, defaultReps: 3, randRank: 64, decaying: false },
        // Small squares: Tucker core factors, EVBMF on small unfoldings.
        { m: 64, n: 64, defaultReps: 25, randRank: 8, decaying: false },
        { m: 256, n: 256, defaultReps: 7, randRank: 16, decaying: false },
        // Where randomized SVD is meant to be used: a spectrum that decays like a trained kernel's.
        { m: 512, n: 4608, defaultReps: 3, randRank: 64, decaying: true },
      ].filter((c) => !quick || (!c.decaying && c.m !== c.n));
      for (const { m, n, defaultReps, randRank, decaying } of cases) {
        const reps = repsArg ? Number(repsArg) : defaultReps;
        const a = decaying ? decayingMatrix(m, n, m * 7919 + n) : gaussianMatrix(m, n, m * 7919 + n);
        const shape = `${m}x${n}${decaying ? ' decaying' : ''}`;
        const ref = numpy
          ? timeNumpy(a, reps, dir)
          : {
              error: args.includes('--no-numpy')
                ? 'skipped (--no-numpy)'
                : 'python3 with numpy not installed',
            };
        const refOk = 'ms' in ref ? ref : null;
        let nativeRow: Timed | null = null;
        let jsRow: Timed | null = null;
        const add = (impl: string, rank: number, r: Timed | null, note: string): void => {
          const full = impl === 'native-values' ? nativeRow : impl === 'js-values' ? jsRow : null;
          rows.push({
            case: `svd ${shape}`,
            impl,
            rank,
            ms: r ? Number(r.ms.toFixed(2)) : null,
            cpuMs: r?.cpuMs !== undefined ? Number(r.cpuMs.toFixed(2)) : null,
            vsNumpy: r && refOk ? Number((r.ms / refOk.ms).toFixed(2)) : null,
            jsVsNative: impl === 'js' && r && nativeRow ? Number((r.ms / nativeRow.ms).toFixed(2)) : null,
            valuesVsFull: r && full ? Number((r.ms / full.ms).toFixed(3)) : null,
            maxRelSvDiff: r && refOk ? Number(maxRelDiff(r.s, refOk.s).toExponential(2)) : null,
            // Against LAPACK in this process: what the JS fallback must reproduce.
            maxRelSvDiffVsNative:
              r && nativeRow && impl !== 'native'
                ? Number(maxRelDiff(r.s, nativeRow.s).toExponential(2))
                : null,
            reps,
            // Other processes sharing the CPU skew every row (numpy's OpenBLAS threads suffer most).
            load1: Number(loadavg()[0]!.toFixed(2)),
            note,
          });
        };
        add(
          'numpy',
          Math.min(m, n),
          refOk,
          refOk
            ? `numpy ${refOk.version} np.linalg.svd(full_matrices=False)`
            : (ref as { error: string }).error,
        );
        if (refOk && single) {
          // numpy on one thread: a steadier yardstick when other jobs share the cores.
          const one = timeNumpy(a, reps, dir, 1);
          add('numpy-1thread', Math.min(m, n), 'ms' in one ? one : null, 'OPENBLAS_NUM_THREADS=1');
        }
        if (info.backend === 'native') {
          nativeRow = timeSvd(a, { method: 'native' }, reps, false);
          add('native', Math.min(m, n), nativeRow, `LAPACKE dgesdd, OpenBLAS ${info.threads} threads`);
          if (!decaying)
            add(
              'native-values',
              Math.min(m, n),
              timeValues(a, 'native', reps),
              'singularValues: LAPACKE dgesdd jobz=N (no U, V)',
            );
        } else {
          add('native', Math.min(m, n), null, `unavailable: ${info.reason ?? ''}`);
        }
        if (decaying) {
          // Same algorithm and cost as on the gaussian matrix of this size: not repeated.
        } else if (m >= 512 && skipJsLarge) add('js', Math.min(m, n), null, 'skipped (--no-js-large)');
        else {
          const jsReps = m >= 512 ? Math.min(reps, 3) : reps;
          const qrFirst = Math.max(m, n) >= 2 * Math.min(m, n) ? 'Householder QR, then ' : '';
          jsRow = timeSvd(a, { method: 'js' }, jsReps, true);
          add('js', Math.min(m, n), jsRow, `pure JS: ${qrFirst}Golub-Kahan-Reinsch`);
          add(
            'js-values',
            Math.min(m, n),
            timeValues(a, 'js', jsReps),
            `singularValues, pure JS: ${qrFirst}Golub-Kahan-Reinsch without U, V`,
          );
        }

        if (!quick)
          add(
            'randomized',
            randRank,
            timeSvd(a, { method: 'randomized', rank: randRank, seed: 0 }, reps, false),
            `Halko et al., oversample 10, 4 power iterations (${info.backend} QR/SVD)${decaying ? '' : '; flat spectrum: the worst case for sketching'}`,
          );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

/**
 * `npm run bench -- training [--json FILE]`: training throughput (images/s) of one SGD-with-momentum
 * step (flatrank's MomentumSgd, as trials run it) at batch 128 for LeNet-5 (28x28x1) and ResNet-20 /
 * 32 / 56 (32x32x3) on every installed TF.js backend, beside PyTorch on CPU (torch-peer.py) when
 * `import torch` works (Debian: `apt-get install python3-torch`; the bench installs nothing); the
 * achieved GFLOP/s of every row and its fraction of the machine's measured peak (the peak-fma bench
 * of @flatrank/backend-native); the peak RSS of every row; and the distortion overhead of a trial.
 * (Over 500 lines: the suite's options, row builders and coordinator read best in one place; what
 * runs in the children is in lib/.)
 *
 * Protocol. Every measurement runs in a fresh process: flatrank's in a Node child
 * (lib/training-child.ts), PyTorch's in python3, one net at a time, while this process waits (it
 * loads neither TF.js nor a backend, so it holds no threads). Per net the peers (PyTorch and each
 * backend) take turns in --rounds rounds (>= 3 for a measurement), the order rotating every round
 * (lib/stats.ts roundOrder: with two peers they alternate). In each, the peer warms up for at least
 * --warmup steps and --warmup-seconds (oneDNN primitives, JIT), then times steps until both --steps
 * and --seconds are reached (at most --max-steps); the round's figure is its median step. A row
 * reports the median over rounds and the min-max, the ratio to PyTorch as the median (and range) of
 * the per-round ratios, and the 1-minute load average sampled before each child (median, max).
 *
 * Flops: lib/flops.ts counts forward, kernel-gradient and input-gradient multiply-adds of every conv
 * and dense layer from the model's layer shapes (2 flops each); PyTorch's rows divide the same count.
 * Peak: the all-core fp32 FMA peak with oneDNN's ISA, measured before and after the nets (the best).
 *
 * Distortion overhead (ResNet-20 and ResNet-32 by default, on the native backend or the first one
 * measured; lib/distortion-overhead.ts): what the distortions of a distortion-training trial cost,
 * per decomposition (svd, tiled-svd with --tile, tucker2, cp; rank policy ratio --distortion-ratio
 * per layer, all convs but the first), in one child per net and round. After the net's training
 * step is timed as above, each decomposition starts from the same weights: its first distortion
 * (cold fits) is timed, then --distortion-reps steady-state ones, each given the last one's results
 * as runDistort gives them (CP-ALS refits warm). Before each steady one, tucker2 and cp train
 * --interval (S_D) real steps with the distortion trials' recipe (SGD momentum 0.9, lr 0.01, weight
 * decay 1e-4, fresh synthetic batches of --batch), so the kernels have moved as in a trial; svd and
 * tiled-svd (no iterative fit, no warm state) skip it and distort the start kernels again, the same
 * computation as their cold one. Per round, with step the median timed step: fractionOfTraining =
 * (cold + (k - 1) x steady) / (k x S_D x step), the share of the training time of a trial of k
 * distortions, one every S_D steps, that they take (k = --trial-distortions, default 5: the study's
 * 938-step ResNet-20 trials at S_D 200 distort at steps 200, 400, 600, 800 and at the end), and
 * steadyFractionOfTraining = steady / (S_D x step), the share of every distortion after the first;
 * medians over rounds, min-max; the goal is fractionOfTraining <= 2 %.
 * The rows also give the mean sweeps of the cold and the steady fits (HOOI, CP-ALS).
 *
 * Duration of the distortion part with the defaults (ResNet-20 and -32, 3 rounds, 1 steady
 * distortion per round, S_D 200, batch 128): 3 rounds x 2 trained decompositions x 200 = 1,200
 * training steps of each net; at ~0.2 s a ResNet-20 step and ~0.33 s a ResNet-32 one on this
 * machine's 2 cores (~0.2 s for batch 64 on one thread) that is ~11 minutes, plus the cold CP fits,
 * the step timing and process start-up: about 12 minutes, run alone with --only-distortion (no
 * training rows, PyTorch peer or peak). --interval=20 (rows then say they are a check) makes a
 * quick check of the same path; a measurement uses 200.
 *
 * Options (with '=': the root runner treats bare words as suite names):
 * --nets=lenet5,resnet20,resnet32,resnet56  --backends=native,wasm,cpu  --batch=128  --rounds=3
 * --warmup=3  --warmup-seconds=2  --steps=5  --seconds=3  --max-steps=300  --no-torch
 * --torch-device=cpu|cuda  --compare-bn (adds native and wasm ResNet rows with tfjs-layers' unfused
 * training batch norm)  --cpu-resnets (time the plain cpu backend's ResNets at batch 2; ~35 s a step)
 * --no-peak  --peak-reps=5  --no-distortion  --only-distortion  --distortion-nets=resnet20,resnet32
 * --distortion-backend=native  --distortion-reps=1  --distortion-ratio=4  --tile=16x16  --interval=200
 * --trial-distortions=5
 * Tiny check run: --rounds=1 --warmup=1 --warmup-seconds=0 --steps=1 --seconds=0 --peak-reps=1
 * --interval=2 (rows then say they are not a measurement).
 */
import { execFile } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { DECOMPOSITIONS, type BackendName, type Decomposition, type ModelName } from '@flatrank/protocol';
import {
  DISTORTION_TRIAL_STEP,
  NET_INPUT,
  runForResult,
  runJob,
  type DistortionResult,
  type ProbeResult,
  type Protocol,
  type TrainResult,
} from './lib/jobs.js';
import { median, pairedRatios, roundOrder, significant, spread } from './lib/stats.js';

const run = promisify(execFile);
const TORCH_PEER = join(dirname(fileURLToPath(import.meta.url)), '..', 'torch-peer.py');

type Row = Record<string, string | number | boolean | null>;

/** Floors the wasm backend must clear at batch 128 (measured reference: 1,108 / 22.7 images/s). */
const WASM_FLOORS: Partial<Record<ModelName, number>> = { lenet5: 1000, resnet20: 20 };
/** The native backend's goals against PyTorch (images/s ratio) and against the machine's peak. */
const RATIO_GOALS: Partial<Record<ModelName, number>> = {
  lenet5: 2,
  resnet20: 1.5,
  resnet32: 1.5,
  resnet56: 1.5,
};
const PEAK_GOALS: Partial<Record<ModelName, number>> = { resnet20: 0.5, resnet32: 0.5 };
/** Distortions may take at most this fraction of a trial's training time. */
const DISTORTION_GOAL = 0.02;

export interface Options extends Protocol {
  nets: ModelName[];
  backends: BackendName[] | null;
  batch: number;
  rounds: number;
  torch: boolean;
  compareBn: boolean;
  cpuResnets: boolean;
  torchDevice: 'cpu' | 'cuda';
  peak: boolean;
  peakReps: number;
  distortion: boolean;
  distortionNets: ModelName[];
  distortionBackend: BackendName | null;
  distortionReps: number;
  distortionRatio: number;
  tile: [number, number];
  interval: number;
  /** The distortion part alone: no training rows, no PyTorch peer, no peak. */
  onlyDistortion: boolean;
  /** k: the distortions of the trial whose training time fractionOfTraining divides by. */
  trialDistortions: number;
}

export function parse(args: string[]): Options {
  const o: Options = {
    nets: ['lenet5', 'resnet20', 'resnet32', 'resnet56'],
    backends: null,
    batch: 128,
    rounds: 3,
    warmup: 3,
    warmupSeconds: 2,
    steps: 5,
    seconds: 3,
    maxSteps: 300,
    torch: true,
    compareBn: false,
    cpuResnets: false,
    torchDevice: 'cpu',
    peak: true,
    peakReps: 5,
    distortion: true,
    distortionNets: ['resnet20', 'resnet32'],
    distortionBackend: null,
    distortionReps: 1,
    distortionRatio: 4,
    tile: [16, 16],
    interval: 200,
    onlyDistortion: false,
    trialDistortions: 5,
  };
  const num = (k: string, v: string, min: number, integer = true): number => {
    const x = Number(v);
    if (!Number.isFinite(x) || x < min || (integer && !Number.isInteger(x)))
      throw new Error(
        `training bench: ${k} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got '${v}'`,
      );
    return x;
  };
  const nets = (k: string, v: string): ModelName[] => {
    const list = v.split(',').filter(Boolean) as ModelName[];
    const unknown = list.filter((n) => !NET_INPUT[n]);
    if (unknown.length || list.length === 0)
      throw new Error(
        `training bench: ${k}: unknown ${unknown.join(', ') || '(empty)'}; allowed: ${Object.keys(NET_INPUT).join(', ')}`,
      );
    return list;
  };
  for (const a of args) {
    const [k, v = ''] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a];
    if (k === '--nets') o.nets = nets(k, v);
    else if (k === '--backends') o.backends = v.split(',').filter(Boolean) as BackendName[];
    else if (k === '--batch') o.batch = num(k, v, 1);
    else if (k === '--rounds') o.rounds = num(k, v, 1);
    else if (k === '--warmup') o.warmup = num(k, v, 0);
    else if (k === '--warmup-seconds') o.warmupSeconds = num(k, v, 0, false);
    else if (k === '--steps') o.steps = num(k, v, 1);
    else if (k === '--seconds') o.seconds = num(k, v, 0, false);
    else if (k === '--max-steps') o.maxSteps = num(k, v, 1);
    else if (k === '--no-torch') o.torch = false;
    else if (k === '--compare-bn') o.compareBn = true;
    else if (k === '--cpu-resnets') o.cpuResnets = true;
    else if (k === '--no-peak') o.peak = false;
    else if (k === '--peak-reps') o.peakReps = num(k, v, 1);
    else if (k === '--no-distortion') o.distortion = false;
    else if (k === '--distortion-nets') o.distortionNets = nets(k, v);
    else if (k === '--distortion-backend') o.distortionBackend = v as BackendName;
    else if (k === '--distortion-reps') o.distortionReps = num(k, v, 1);
    else if (k === '--distortion-ratio') o.distortionRatio = num(k, v, 1, false);
    else if (k === '--interval') o.interval = num(k, v, 1);
    else if (k === '--only-distortion') o.onlyDistortion = true;
    else if (k === '--trial-distortions') o.trialDistortions = num(k, v, 1);
    else if (k === '--tile') {
      const m = /^(\d+)x(\d+)$/.exec(v);
      if (!m) throw new Error(`training bench: --tile must be AxB (rows x columns), got '${v}'`);
      o.tile = [Number(m[1]), Number(m[2])];
    } else if (k === '--torch-device') {
      if (v !== 'cpu' && v !== 'cuda')
        throw new Error(`training bench: --torch-device must be cpu or cuda, got '${v}'`);
      o.torchDevice = v;
    } else if (k.startsWith('--')) throw new Error(`training bench: unknown option ${k}`);
  }
  if (o.onlyDistortion && !o.distortion)
    throw new Error('training bench: --only-distortion and --no-distortion leave nothing to measure');
  return o;
}

// ---- peers ------------------------------------------------------------------------------------

interface PeakFma {
  isa: string;
  onednnIsa: string;
  threads: number;
  best: number;
  median: number;
}

/** measurePeakFma of @flatrank/backend-native's peak-fma bench (compiled beside its other suites). */
async function peakFma(threads: number, reps: number): Promise<PeakFma> {
  const pkg = createRequire(import.meta.url).resolve('@flatrank/backend-native/package.json');
  const file = join(dirname(pkg), 'bench', 'dist', 'peak-fma.js');
  const mod = (await import(pathToFileURL(file).href)) as {
    measurePeakFma: (o: { threads: number; reps: number }) => Promise<PeakFma>;
  };
  return mod.measurePeakFma({ threads, reps });
}

/** The first python3 that can import torch (pyenv shims often cannot; Debian's /usr/bin/python3 may). */
async function findTorchPython(): Promise<string | null> {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      await run(py, ['-c', 'import torch'], { timeout: 60_000 });
      return py;
    } catch {
      // try the next one
    }
  }
  return null;
}

interface TorchResult {
  stepSeconds: number[];
  cpuSeconds: number[];
  threads: number;
  version: string;
  device: string;
  batch: number;
  maxRssKb: number;
}

function torchRound(python: string, net: ModelName, o: Options): Promise<TorchResult> {
  const p = [o.warmup, o.warmupSeconds, o.steps, o.seconds, o.maxSteps].map(String);
  return runForResult<TorchResult>(
    python,
    [TORCH_PEER, net, String(o.batch), ...p, o.torchDevice],
    60 * 60_000,
  );
}

export interface Peer {
  key: string;
  backend: BackendName | 'pytorch';
  variant: 'tfjs-layers-bn' | null;
}

/** One round of one peer: its median step and what came with it. */
export interface Round {
  round: number;
  load: number;
  batch: number;
  wall: number;
  cpu: number;
  steps: number;
  maxRssKb: number;
  version: string;
  threads: number;
  note: string | null;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

function peersOf(net: ModelName, backends: BackendName[], python: string | null, o: Options): Peer[] {
  const peers: Peer[] = python ? [{ key: 'pytorch', backend: 'pytorch', variant: null }] : [];
  for (const b of backends) {
    peers.push({ key: b, backend: b, variant: null });
    if ((b === 'native' || b === 'wasm') && o.compareBn && net !== 'lenet5')
      peers.push({ key: `${b}/tfjs-layers-bn`, backend: b, variant: 'tfjs-layers-bn' });
  }
  return peers;
}

async function measureRound(
  peer: Peer,
  net: ModelName,
  python: string | null,
  o: Options,
  r: number,
): Promise<Round> {
  const load = loadavg()[0]!;
  if (peer.backend === 'pytorch') {
    const t = await torchRound(python!, net, o);
    return roundOf(t, r, load, `reference (same nets, option-A shortcuts, NCHW) on ${t.device}`);
  }
  // The plain cpu backend is ~100x slower than wasm: a small batch and two steps.
  const slow = peer.backend === 'cpu';
  const batch = slow ? (net === 'lenet5' ? 16 : 2) : o.batch;
  const protocol: Protocol = slow ? { warmup: 1, warmupSeconds: 0, steps: 2, seconds: 0, maxSteps: 2 } : o;
  const t = await runJob<TrainResult>({
    kind: 'train',
    net,
    backend: peer.backend,
    batch,
    protocol,
    variant: peer.variant,
  });
  const note = t.software
    ? `software adapter ${t.adapter} (${t.software}): measures the CPU rasteriser, not a GPU; batch ${t.batch}`
    : t.batch !== o.batch
      ? `batch ${t.batch}, ${t.stepSeconds.length} steps (the cpu backend is too slow for ${o.batch})`
      : null;
  return roundOf(t, r, load, note);
}

/**
 * Largest peak RSS of a row's processes, MiB. Every child reports its own (getrusage ru_maxrss,
 * KiB: process.resourceUsage().maxRSS in Node, resource.getrusage in the PyTorch peer); a missing
 * or non-positive one is an error naming what came back, never a silent null in the row
 * (Math.max over an undefined gives NaN, which JSON writes as null).
 */
export function peakRssMiB(maxRssKb: ReadonlyArray<number | undefined>, what: string): number {
  const bad = maxRssKb.filter((kb) => typeof kb !== 'number' || !Number.isFinite(kb) || kb <= 0);
  if (maxRssKb.length === 0 || bad.length > 0)
    throw new Error(
      `training bench: ${what}: no peak RSS (maxRssKb ${JSON.stringify(maxRssKb)}); every child must report getrusage's ru_maxrss`,
    );
  return Math.round(Math.max(...(maxRssKb as number[])) / 1024);
}

/** One round's row from a peer's per-step timings (PyTorch and flatrank measure the same fields). */
export function roundOf(
  t: Pick<TrainResult, 'batch' | 'stepSeconds' | 'cpuSeconds' | 'maxRssKb' | 'version' | 'threads'>,
  r: number,
  load: number,
  note: string | null,
): Round {
  peakRssMiB([t.maxRssKb], `round ${r + 1} (${t.version})`);
  return {
    round: r,
    load,
    batch: t.batch,
    wall: median(t.stepSeconds),
    cpu: median(t.cpuSeconds),
    steps: t.stepSeconds.length,
    maxRssKb: t.maxRssKb,
    version: t.version,
    threads: t.threads,
    note,
  };
}

// ---- rows -------------------------------------------------------------------------------------

export function trainingRow(
  net: ModelName,
  peer: Peer,
  rounds: Round[],
  torch: Round[] | null,
  flopsPerImage: number | null,
  peak: number | null,
  o: Options,
): Row {
  const last = rounds.at(-1)!;
  const ips = spread(rounds.map((r) => r.batch / r.wall));
  const ipcs = median(rounds.map((r) => r.batch / r.cpu));
  const comparable = last.batch === o.batch && torch !== null && torch.length === rounds.length;
  const ratios = comparable
    ? spread(
        pairedRatios(
          rounds.map((r) => r.batch / r.wall),
          torch.map((t) => t.batch / t.wall),
        ),
      )
    : null;
  const torchIpcs = torch?.length ? median(torch.map((t) => t.batch / t.cpu)) : null;
  const gflops =
    flopsPerImage === null ? null : spread(rounds.map((r) => ((r.batch / r.wall) * flopsPerImage) / 1e9));
  const floor =
    peer.backend === 'wasm' && last.batch === 128 && !peer.variant ? (WASM_FLOORS[net] ?? null) : null;
  const ratioGoal = peer.backend === 'native' && !peer.variant ? (RATIO_GOALS[net] ?? null) : null;
  const peakGoal = peer.backend === 'native' && !peer.variant ? (PEAK_GOALS[net] ?? null) : null;
  const fraction = gflops && peak ? gflops.median / peak : null;
  const loads = spread(rounds.map((r) => r.load));
  const notes = [
    last.note,
    rounds.length < 3 ? `${rounds.length} round(s): a check, not a measurement (use --rounds >= 3)` : null,
  ].filter(Boolean);
  return {
    kind: 'training',
    net,
    backend: peer.backend,
    variant: peer.variant,
    version: last.version,
    threads: last.threads,
    inputShape: NET_INPUT[net]!.join('x'),
    batch: last.batch,
    rounds: rounds.length,
    imagesPerSecond: significant(ips.median),
    imagesPerSecondMin: significant(ips.min),
    imagesPerSecondMax: significant(ips.max),
    imagesPerCpuSecond: significant(ipcs),
    msPerStep: significant(median(rounds.map((r) => r.wall * 1000))),
    stepsPerRound: median(rounds.map((r) => r.steps)),
    pytorchImagesPerSecond: torch?.length ? significant(median(torch.map((t) => t.batch / t.wall))) : null,
    ratioToPytorch: ratios ? round2(ratios.median) : null,
    ratioToPytorchMin: ratios ? round2(ratios.min) : null,
    ratioToPytorchMax: ratios ? round2(ratios.max) : null,
    ratioToPytorchCpuTime: comparable && torchIpcs ? round2(ipcs / torchIpcs) : null,
    ratioGoal,
    meetsRatioGoal: ratioGoal !== null && ratios ? ratios.median >= ratioGoal : null,
    gflopPerImage: flopsPerImage === null ? null : significant(flopsPerImage / 1e9),
    gflops: gflops ? significant(gflops.median, 3) : null,
    gflopsMin: gflops ? significant(gflops.min, 3) : null,
    gflopsMax: gflops ? significant(gflops.max, 3) : null,
    peakGflops: peak === null ? null : significant(peak, 3),
    fractionOfPeak: fraction === null ? null : significant(fraction, 3),
    peakGoal,
    meetsPeakGoal: peakGoal !== null && fraction !== null ? fraction >= peakGoal : null,
    peakRssMiB: peakRssMiB(
      rounds.map((r) => r.maxRssKb),
      `${net} ${peer.key}`,
    ),
    loadAverage: round2(loads.median),
    loadAverageMax: round2(loads.max),
    floor,
    meetsFloor: floor === null ? null : ips.median >= floor,
    note: notes.length ? notes.join('; ') : null,
  };
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * One row per decomposition from the rounds of a net's distortion job. Per round, with step the
 * round's median training step, cold its first distortion and steady the median of its
 * steady-state ones: fractionOfTraining = (cold + (k - 1) x steady) / (k x S_D x step), the share of
 * the training time of a trial of k (--trial-distortions) distortions, one every S_D steps, that
 * its distortions take; steadyFractionOfTraining = steady / (S_D x step), the share every
 * distortion after the first takes (a long trial's limit). Medians over rounds, with min-max;
 * meetsGoal compares fractionOfTraining with the goal.
 */
export function distortionRows(
  net: ModelName,
  results: Array<DistortionResult & { load: number }>,
  o: Options,
): Row[] {
  const k = o.trialDistortions;
  // Training time between two distortions per round, ms.
  const trainingMs = results.map((r) => o.interval * median(r.stepSeconds) * 1000);
  return results[0]!.distortions.map((d) => {
    const per = results.map((r) => r.distortions.find((x) => x.decomposition === d.decomposition)!);
    const steadyPerRound = per.map((p) => median(p.ms));
    const cold = spread(per.map((p) => p.coldMs));
    const steady = spread(steadyPerRound);
    const fractions = spread(
      per.map((p, i) => (p.coldMs + (k - 1) * steadyPerRound[i]!) / (k * trainingMs[i]!)),
    );
    const steadyFractions = spread(steadyPerRound.map((s, i) => s / trainingMs[i]!));
    return {
      kind: 'distortion',
      net,
      backend: results[0]!.backend,
      version: results[0]!.version,
      decomposition: d.decomposition,
      rank: `ratio=${o.distortionRatio}`,
      tile: d.decomposition === 'tiled-svd' ? o.tile.join('x') : null,
      layers: d.layers,
      batch: o.batch,
      rounds: results.length,
      interval: o.interval,
      trainedSteps: d.trainedSteps,
      coldMs: significant(cold.median),
      coldMsMin: significant(cold.min),
      coldMsMax: significant(cold.max),
      steadyMs: significant(steady.median),
      steadyMsMin: significant(steady.min),
      steadyMsMax: significant(steady.max),
      coldSweeps: significant(mean(per.map((p) => p.coldSweeps)), 3),
      steadySweeps: significant(mean(per.flatMap((p) => p.sweeps)), 3),
      coldError: significant(mean(per.map((p) => p.coldError)), 3),
      steadyError: significant(mean(per.flatMap((p) => p.errors)), 3),
      msPerStep: significant(median(trainingMs) / o.interval),
      trialDistortions: k,
      fractionOfTraining: significant(fractions.median, 3),
      fractionOfTrainingMin: significant(fractions.min, 3),
      fractionOfTrainingMax: significant(fractions.max, 3),
      steadyFractionOfTraining: significant(steadyFractions.median, 3),
      goal: DISTORTION_GOAL,
      meetsGoal: fractions.median <= DISTORTION_GOAL,
      peakRssMiB: peakRssMiB(
        results.map((r) => r.maxRssKb),
        `${net} distortion`,
      ),
      loadAverage: round2(median(results.map((r) => r.load))),
      note: distortionNote(d.trainedSteps, results.length, o),
    };
  });
}

function distortionNote(trainedSteps: number, rounds: number, o: Options): string {
  const k = o.trialDistortions;
  const { lr, momentum, weightDecay } = DISTORTION_TRIAL_STEP;
  return [
    `fractionOfTraining = (cold + ${k - 1} x steady) / (${k} x ${o.interval} x step): a trial of ${k} distortions, one every ${o.interval} steps; steadyFractionOfTraining = steady / (${o.interval} x step)`,
    trainedSteps > 0
      ? `steady: median of ${o.distortionReps} per round, each after ${trainedSteps} SGD steps (lr ${lr}, momentum ${momentum}, weight decay ${weightDecay.toExponential()}, fresh synthetic batches of ${o.batch}) and given the last distortion's results, as in a trial (cp refits warm)`
      : `no training between distortions (no iterative fit, no warm state): steady ones distort the start kernels again, the same computation as the cold one (median of ${o.distortionReps} per round)`,
    trainedSteps > 0 && o.interval < 200
      ? `S_D ${o.interval} < 200: the kernels move less between distortions than in a trial at 200, a check`
      : null,
    rounds < 3 ? `${rounds} round(s): a check, not a measurement` : null,
  ]
    .filter(Boolean)
    .join('; ');
}

// ---- the suite --------------------------------------------------------------------------------

async function measurePeak(o: Options, when: string): Promise<PeakFma | null> {
  if (!o.peak) return null;
  try {
    const p = await peakFma(availableParallelism(), o.peakReps);
    console.error(
      `training bench: peak ${when}: ${p.best.toFixed(1)} GFLOP/s (${p.isa}, ${p.threads} threads)`,
    );
    return p;
  } catch (e) {
    console.error(`training bench: no peak (${(e as Error).message.split('\n')[0]})`);
    return null;
  }
}

interface NetRounds {
  net: ModelName;
  peers: Peer[];
  results: Map<string, Round[]>;
  failed: Map<string, string>;
}

/** Every net's peers, taking turns over the rounds. */
async function measureNets(o: Options, backends: BackendName[], python: string | null): Promise<NetRounds[]> {
  const perNet: NetRounds[] = [];
  for (const net of o.nets) {
    const peers = peersOf(net, backends, python, o);
    const results = new Map<string, Round[]>(peers.map((p) => [p.key, []]));
    const failed = new Map<string, string>();
    for (let r = 0; r < o.rounds; r++) {
      for (const peer of roundOrder(peers, r)) {
        if (failed.has(peer.key)) continue;
        if (peer.backend === 'cpu' && net !== 'lenet5' && !o.cpuResnets) {
          failed.set(
            peer.key,
            'skipped: the cpu backend trains a ResNet at ~0.06 images/s (35 s a step at batch 2); --cpu-resnets times it',
          );
          continue;
        }
        try {
          const res = await measureRound(peer, net, python, o, r);
          results.get(peer.key)!.push(res);
          console.error(
            `training bench: ${net} round ${r + 1}/${o.rounds} ${peer.key}: ${(res.batch / res.wall).toFixed(1)} images/s (load ${res.load.toFixed(2)})`,
          );
        } catch (e) {
          failed.set(peer.key, `failed: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
    perNet.push({ net, peers, results, failed });
  }
  return perNet;
}

/** The training rows of every net and peer, and the peak row (measured before and after the nets). */
async function throughputRows(o: Options, probe: ProbeResult, backends: BackendName[]): Promise<Row[]> {
  const python = o.torch ? await findTorchPython() : null;
  const rows: Row[] = [];
  const peakBefore = await measurePeak(o, 'before');
  const perNet = await measureNets(o, backends, python);
  const peakAfter = await measurePeak(o, 'after');
  const peak = Math.max(peakBefore?.best ?? 0, peakAfter?.best ?? 0) || null;
  if (o.peak)
    rows.push({
      kind: 'peak',
      threads: peakBefore?.threads ?? peakAfter?.threads ?? null,
      isa: peakBefore?.isa ?? peakAfter?.isa ?? null,
      onednnIsa: peakBefore?.onednnIsa ?? peakAfter?.onednnIsa ?? null,
      peakGflops: peak === null ? null : significant(peak, 3),
      peakGflopsBefore: peakBefore ? significant(peakBefore.best, 3) : null,
      peakGflopsAfter: peakAfter ? significant(peakAfter.best, 3) : null,
      note: 'fp32 FMA peak on all cores (best repetition of the peak-fma kernel, before and after the nets): the denominator of fractionOfPeak',
    });

  for (const { net, peers, results, failed } of perNet) {
    const torch = results.get('pytorch') ?? null;
    const flops = probe.nets[net]?.trainingFlopsPerExample ?? null;
    if (o.torch && !python)
      rows.push({
        kind: 'training',
        net,
        backend: 'pytorch',
        note: 'PyTorch not importable by python3 or /usr/bin/python3 (apt-get install python3-torch)',
      });
    for (const peer of peers) {
      const rounds = results.get(peer.key)!;
      if (rounds.length === 0) {
        rows.push({
          kind: 'training',
          net,
          backend: peer.backend,
          variant: peer.variant,
          note: failed.get(peer.key) ?? 'not measured',
        });
        continue;
      }
      const row = trainingRow(net, peer, rounds, torch?.length ? torch : null, flops, peak, o);
      if (failed.has(peer.key))
        row['note'] = [row['note'], `some rounds ${failed.get(peer.key)}`].filter(Boolean).join('; ');
      rows.push(row);
    }
  }
  return rows;
}

/** The distortion rows: per net, one child per round (cold and steady-state distortions of a trial). */
async function measureDistortions(o: Options, backends: BackendName[]): Promise<Row[]> {
  const rows: Row[] = [];
  const backend = o.distortionBackend ?? (backends.includes('native') ? 'native' : backends[0]);
  for (const net of o.distortionNets) {
    if (!backend) {
      rows.push({ kind: 'distortion', net, note: 'no backend to measure the distortion on' });
      continue;
    }
    const results: Array<DistortionResult & { load: number }> = [];
    try {
      for (let r = 0; r < o.rounds; r++) {
        const load = loadavg()[0]!;
        const res = await runJob<DistortionResult>({
          kind: 'distortion',
          net,
          backend,
          batch: o.batch,
          protocol: {
            warmup: o.warmup,
            warmupSeconds: o.warmupSeconds,
            steps: o.steps,
            seconds: o.seconds,
            maxSteps: o.maxSteps,
          },
          decompositions: [...DECOMPOSITIONS] as Decomposition[],
          ratio: o.distortionRatio,
          tile: o.tile,
          reps: o.distortionReps,
          interval: o.interval,
        });
        results.push({ ...res, load });
        console.error(
          `training bench: distortion ${net} round ${r + 1}/${o.rounds}: ` +
            res.distortions
              .map(
                (d) =>
                  `${d.decomposition} cold ${d.coldMs.toFixed(0)} ms, steady ${median(d.ms).toFixed(0)} ms`,
              )
              .join('; '),
        );
      }
      rows.push(...distortionRows(net, results, o));
    } catch (e) {
      rows.push({
        kind: 'distortion',
        net,
        backend,
        note: `failed: ${(e as Error).message.split('\n')[0]}`,
      });
    }
  }
  return rows;
}

export default {
  name: 'training',
  description:
    'training images/s per net x installed backend beside PyTorch CPU, each in its own process, alternated over rounds (median, min-max), with GFLOP/s and fraction of the FMA peak, peak RSS, and the distortion overhead of a trial at S_D 200 (cold and steady-state distortions; --only-distortion for that part alone)',
  async run(args: string[]): Promise<Row[]> {
    const o = parse(args);
    const probe = await runJob<ProbeResult>({
      kind: 'probe',
      nets: o.onlyDistortion ? o.distortionNets : [...new Set([...o.nets, ...o.distortionNets])],
    });
    const backends = (o.backends ?? probe.installed).filter((b) => probe.installed.includes(b));
    const rows = o.onlyDistortion ? [] : await throughputRows(o, probe, backends);
    if (o.distortion) rows.push(...(await measureDistortions(o, backends)));
    return rows;
  },
};

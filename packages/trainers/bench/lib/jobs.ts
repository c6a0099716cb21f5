/**
 * What the training bench (training.ts, the coordinator) asks of its measuring child processes
 * (training-child.ts) and what they answer. The coordinator imports only this file and the
 * statistics: it never loads TensorFlow.js or a backend, so while a child or the PyTorch peer runs
 * it holds no threads that could compete for the cores.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendName, Decomposition, ModelName } from '@flatrank/protocol';
import type { ProfileSummary } from '@flatrank/backend-native';

/** The nets the training bench knows, with their input (HWC). */
export const NET_INPUT: Partial<Record<ModelName, [number, number, number]>> = {
  lenet5: [28, 28, 1],
  resnet8: [32, 32, 3],
  resnet20: [32, 32, 3],
  resnet32: [32, 32, 3],
  resnet56: [32, 32, 3],
};

/** How long to warm up and to time (the same for the flatrank children and the PyTorch peer). */
export interface Protocol {
  warmup: number;
  warmupSeconds: number;
  steps: number;
  seconds: number;
  maxSteps: number;
}

/** How a stepper trains: the optimizer's settings and where its batches come from. */
export interface StepRecipe {
  lr: number;
  momentum: number;
  /** L2 weight decay of the conv and dense kernels (trainableVariables' decay flags). */
  weightDecay: number;
  /**
   * false: one fixed synthetic batch, every step (the timed training rows, as PyTorch's peer).
   * true: a new seeded synthetic batch every step, so that a net trained for hundreds of steps
   * cannot memorise its batch and its gradients keep their size, as on a real data set.
   */
  freshBatches: boolean;
}

/** The training rows' step: lr 0.01, momentum 0.9, no weight decay, as PyTorch's peer. */
export const THROUGHPUT_STEP: StepRecipe = { lr: 0.01, momentum: 0.9, weightDecay: 0, freshBatches: false };

/** The distortion trials' recipe (lr 0.01, momentum 0.9, weight decay 1e-4), on fresh batches. */
export const DISTORTION_TRIAL_STEP: StepRecipe = {
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 1e-4,
  freshBatches: true,
};

export type Job =
  | { kind: 'probe'; nets: ModelName[] }
  | {
      kind: 'train';
      net: ModelName;
      backend: BackendName;
      batch: number;
      protocol: Protocol;
      /** 'tfjs-layers-bn': tfjs-layers' unfused training batch norm instead of the fused kernel. */
      variant: 'tfjs-layers-bn' | null;
    }
  | {
      kind: 'profile';
      net: ModelName;
      batch: number;
      /** Untimed steps first (oneDNN primitives, JIT), then this many plain and as many profiled steps. */
      warmup: number;
      steps: number;
      /** All-core FMA peak (GFLOP/s) and one thread's (GFLOP per CPU second), for the fractions of peak. */
      peakGflops: number | null;
      peakGflopsPerThread: number | null;
    }
  | DistortionJob;

/**
 * The distortions of a trial, per decomposition: the first (cold) one, then `reps` steady-state
 * ones, each after `interval` real training steps for the iterative fits (tucker2, cp), from the
 * last distortion's results as distortion training passes them (CP-ALS refits warm).
 */
export interface DistortionJob {
  kind: 'distortion';
  net: ModelName;
  backend: BackendName;
  /** The batch of the timed steps and of the training between distortions. */
  batch: number;
  protocol: Protocol;
  decompositions: Decomposition[];
  /** Per-layer parameter ratio of every decomposition (rank policy 'ratio'). */
  ratio: number;
  /** The tiled-svd tile [rows, cols] of the lowered matrix. */
  tile: [number, number];
  /** Steady-state distortions per decomposition, after the cold one. */
  reps: number;
  /** S_D: training steps between two distortions of an iterative fit (tucker2, cp). */
  interval: number;
}

export interface ProbeResult {
  installed: BackendName[];
  nets: Partial<
    Record<ModelName, { trainingFlopsPerExample: number; forwardMacs: number; countedLayers: number }>
  >;
}

export interface TrainResult {
  backend: BackendName;
  version: string;
  threads: number;
  batch: number;
  /** Wall and process-CPU seconds of every timed step. */
  stepSeconds: number[];
  cpuSeconds: number[];
  /** Peak resident set of the child process (getrusage ru_maxrss), KiB. */
  maxRssKb: number;
  adapter: string | null;
  /** Set when the backend is a software WebGPU adapter (timed like the cpu backend). */
  software: string | null;
}

/** One decomposition's distortions in a distortion job (times include the kernels' read-back). */
export interface DistortionTimes {
  decomposition: Decomposition;
  layers: number;
  /**
   * Training steps before each steady-state distortion: the job's interval for tucker2 and cp; 0
   * for svd and tiled-svd, which have no warm state and distort the start kernels every time.
   */
  trainedSteps: number;
  /** The first distortion (cold fits from the start kernels), ms. */
  coldMs: number;
  /** Its mean sweeps over the targets (HOOI, CP-ALS; 0 for SVD-based ones). */
  coldSweeps: number;
  /** Its mean relative reconstruction error over the targets. */
  coldError: number;
  /** The steady-state distortions, in order: ms, mean sweeps, mean relative error. */
  ms: number[];
  sweeps: number[];
  errors: number[];
}

/** A profile job's answer: the summary of the profiled steps (see @flatrank/backend-native). */
export interface ProfileResult {
  version: string;
  threads: number;
  batch: number;
  /** Wall ms of every plain (unprofiled) step and every profiled one: the profiler's own cost. */
  plainStepMs: number[];
  profiledStepMs: number[];
  summary: ProfileSummary;
  /** Peak resident set of the child process (getrusage ru_maxrss), KiB. */
  maxRssKb: number;
}

export interface DistortionResult {
  backend: BackendName;
  version: string;
  /** The timed training steps (the training rows' step), s. */
  stepSeconds: number[];
  distortions: DistortionTimes[];
  maxRssKb: number;
}

/** The line a child prints its result on (anything else on stdout is TF.js chatter). */
export const RESULT_PREFIX = '@@flatrank-bench-result ';

/** The compiled child script (bench/dist/lib/training-child.js, beside this file once built). */
export const CHILD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'training-child.js');

/**
 * Runs `command args` to completion, its stderr passed through (progress, warnings), and returns the
 * JSON on its result line. A child that exits without one is an error carrying its exit status.
 */
export function runForResult<T>(command: string, args: string[], timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (!line) {
        reject(new Error(`${command} exited (${signal ?? `status ${code}`}) without a result line`));
        return;
      }
      const parsed = JSON.parse(line.slice(RESULT_PREFIX.length)) as {
        ok: boolean;
        error?: string;
        result?: T;
      };
      if (parsed.ok) resolve(parsed.result as T);
      else reject(new Error(parsed.error ?? 'failed'));
    });
  });
}

/** Runs one job in a fresh Node process (this process waits, doing nothing). */
export function runJob<T>(job: Job, timeoutMs = 60 * 60_000): Promise<T> {
  return runForResult<T>(process.execPath, [CHILD_SCRIPT, JSON.stringify(job)], timeoutMs);
}

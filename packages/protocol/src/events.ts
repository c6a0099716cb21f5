/**
 * Trial events: the one definition shared by the trainer (emitter), the IPC channel, the BullMQ
 * channel and the store (applier). Every event is plain JSON.
 */
import { isRetryable, serializeError, type SerializedError } from './errors.js';
import type { BackendName, Decomposition, LoweringOrder, MetricPhase, SvdScheme } from './names.js';

/** Reproducibility record of the process that ran a trial (docs/architecture.md). */
export interface RunEnvironment {
  gitCommit: string | null;
  gitDirty: boolean | null;
  /** e.g. { flatrank: '0.1.0', '@tensorflow/tfjs-core': '4.22.0', 'better-sqlite3': '12.4.1' } */
  packageVersions: Record<string, string>;
  nodeVersion: string;
  backend: BackendName;
  backendVersion: string;
  /** CPU model, or GPU name from nvidia-smi. */
  device: string;
  host: string;
  /** CUDA_VISIBLE_DEVICES as the worker saw it (null on CPU). */
  cudaVisibleDevices: string | null;
  pid: number;
}

/** Per-layer record of a compressed layer. */
export interface LayerRecord {
  name: string;
  decomposition: Decomposition;
  scheme: SvdScheme | null;
  /** Column order of the lowered matrix (svd lowered, tiled-svd); null or absent otherwise. */
  order?: LoweringOrder | null;
  /** svd/cp: [r]; tucker2: [R_S, R_T]; tiled-svd: the per-tile rank [r]. */
  ranks: number[];
  /** EVBMF raw (unclamped) estimates when the rank policy was vbmf. */
  rawRanks: number[] | null;
  tile: [number, number] | null;
  kernelShape: number[];
  paramsBefore: number;
  paramsAfter: number;
  macsBefore: number;
  macsAfter: number;
  /**
   * ||K - K'||_F / ||K||_F of this record's decomposition: for finetune / posttrain the trained
   * kernel's, for distort the final projection's (about 1e-6 once the weights are low-rank; compare
   * firstDistortionError with fine-tuning's relativeError instead).
   */
  relativeError: number;
  /** Iterative fits (Tucker-2 HOOI, CP-ALS): sweeps run and whether the tolerance was met. */
  iterations?: number | null;
  converged?: boolean | null;
  /**
   * CP-ALS only: initialisation, seed and final fit (1 - relative error); null otherwise. init
   * 'warm': started from the layer's previous distortion's factors (distortion training after its
   * first distortion), so iterations counts the sweeps of that refinement.
   */
  cp?: { init: 'svd' | 'random' | 'warm'; seed: number; fit: number } | null;
  /**
   * distort only: the relative error of the first distortion in training (how far it moved the
   * kernel it met, comparable with fine-tuning's relativeError) and of the final one.
   */
  firstDistortionError?: number | null;
  finalDistortionError?: number | null;
}

/**
 * How a trial chose the rank of each target layer: a budgeted allocation (rank policy kind
 * allocate, EVBMF scaled to a budget) or the ranks Trained Rank Pruning ended with. Emitted once
 * per attempt (a later one of the same attempt replaces it); the layer events still carry each
 * layer's full decomposition record.
 */
export interface RankAllocationRecord {
  /** The rank policy's label (rankPolicyLabel, e.g. 'model-ratio=4'), or 'trp' for the method. */
  policy: string;
  /** The whole-model budget the allocation aimed at (before / after, > 1); null when it had none (trp). */
  budget: { kind: 'params' | 'macs'; ratio: number } | null;
  /** Whole-model ratios (before / after) the chosen ranks reach. */
  achieved: { params: number; macs: number };
  /** Every target layer in model order: its chosen ranks (as LayerRecord.ranks), the error the
   * allocation predicted or measured for it, and what else it measured for that layer. */
  layers: Array<{ name: string; ranks: number[]; error?: number | null; measured?: unknown }>;
  /**
   * Plain JSON, per policy: accuracy-vs-rank curves, the EVBMF scale factor, the validation split
   * ({size, seed}), the curve cache key, TRP's rank trajectory.
   */
  measured: unknown;
}

export interface TrialSummary {
  /** Accuracy (0..1) of the starting / uncompressed model. */
  accuracyOriginal: number | null;
  /** Accuracy right after decomposition, before any fine-tuning (null for baseline). */
  accuracyAfterDecomposition: number | null;
  /** The reported accuracy (for distort: on the exactly low-rank weights). */
  accuracyFinal: number;
  paramsBefore: number;
  paramsAfter: number;
  macsBefore: number;
  macsAfter: number;
  /** Measured inference latency (ms per batch) of original and exported factored model. */
  latencyBeforeMs: number | null;
  latencyAfterMs: number | null;
  latencyBatch: number | null;
  wallSeconds: number;
  steps: number;
  epochs: number;
}

export type TrialEvent =
  | { type: 'started'; env: RunEnvironment }
  | { type: 'metric'; step: number; epoch: number; phase: MetricPhase; name: string; value: number }
  | { type: 'layer'; layer: LayerRecord }
  | { type: 'allocation'; allocation: RankAllocationRecord }
  | { type: 'artifact'; kind: 'checkpoint' | 'factored-model' | 'log' | 'other'; path: string }
  | { type: 'heartbeat'; step: number; epoch: number }
  | { type: 'finished'; summary: TrialSummary }
  | { type: 'failed'; error: SerializedError; retryable: boolean }
  | { type: 'diverged'; reason: string; step: number };

export type TrialEventType = TrialEvent['type'];

/** An event addressed to a trial attempt, as it travels over IPC or Redis. */
export interface TrialEnvelope {
  trialKey: string;
  attempt: number;
  /** Monotonic per attempt, for de-duplication by the coordinator. */
  seq: number;
  event: TrialEvent;
}

/** A terminal event ends the attempt. */
export function isTerminalEvent(
  e: TrialEvent,
): e is Extract<TrialEvent, { type: 'finished' | 'failed' | 'diverged' }> {
  return e.type === 'finished' || e.type === 'failed' || e.type === 'diverged';
}

/** The failed event of a trial that threw `e`: the error as JSON and whether it may be retried. */
export function failedEvent(e: unknown): Extract<TrialEvent, { type: 'failed' }> {
  return { type: 'failed', error: serializeError(e), retryable: isRetryable(e) };
}

/** Where a trainer sends its events. */
export type TrialEventSink = (event: TrialEvent) => void;

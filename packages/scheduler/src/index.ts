// @flatrank/scheduler: experiment specs -> grids of trial configs -> trials run in child processes
// on local slots (GPUs / CPU workers) or on BullMQ workers, with the coordinator as the one writer.
export { loadSpecFile, parseSpecText, MAX_SPEC_BYTES, type Spec } from './spec/load.js';
export {
  expandSpec,
  expandSpecInterruptible,
  countSpecPoints,
  DEFAULT_MAX_POINTS,
  type ExpandOptions,
  type GridPoint,
  type GridSize,
} from './spec/expand.js';
export { checkDataAvailable, datasetProblem } from './spec/data.js';
export { resolveCheckpointName, type ResolvedCheckpoint, type CheckpointLookup } from './spec/checkpoints.js';
export {
  specSchema,
  REPRODUCES,
  durationMs,
  type ParsedSpec,
  type Resources,
  type Reproduces,
} from './spec/schema.js';
export { NAMED_AXES, axisDef } from './spec/axes.js';
export { writeSweep, describePoints, describeNotInSpec, type PreparedSweep } from './sweep.js';
export {
  discoverGpus,
  discoverNvidiaGpus,
  parseNvidiaSmi,
  parseGpusFlag,
  planSlots,
  type GpuInfo,
  type GpuDiscovery,
  type GpuRequest,
  type Slot,
  type SlotPlan,
} from './gpus.js';
export {
  listWebgpuGpus,
  webgpuPinning,
  probePinningHost,
  driPrimeTag,
  type WebgpuGpu,
  type PinningHost,
  type WebgpuPin,
} from './webgpu-gpus.js';
export { runChildAttempt, type AttemptOutcome, type ChildAttemptOptions } from './child.js';
export { runLocal, type LocalRunOptions } from './local.js';
export { AttemptLifecycle, type AttemptRecord, type AttemptVerdict, type RunResult } from './attempt.js';
export { EXECUTORS, type ExecutorName, type CoordinatorOptions } from './options.js';
export { trialLabel } from './label.js';
export { runSpec, type RunSpecOptions, type RunSpecResult } from './run.js';
export {
  snapshotFromStore,
  renderStatus,
  progressLine,
  resultsTable,
  TtyRenderer,
  type ProgressSnapshot,
} from './progress.js';
export { createCoordinatorLogger, type Logger } from './logging.js';
export { startWorker, type WorkerOptions, type WorkerHandle } from './bullmq/worker.js';
export { runBullmqCoordinator, type BullmqRunOptions } from './bullmq/coordinator.js';
export { DEFAULT_QUEUE, checkNoEviction, redisConnection, jobId, type TrialJobData } from './bullmq/redis.js';

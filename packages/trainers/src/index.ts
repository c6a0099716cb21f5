// Backend selection, data, models.
export * from './backend/index.js';
export * from './data/index.js';
export * from './models/index.js';
// Training, compression and the trial entry point.
export { runTrial, type RunTrialOptions } from './trial.js';
export {
  trainLoop,
  learningRateAt,
  MomentumSgd,
  CancelledError,
  evaluateModel,
  saveCheckpoint,
  loadCheckpoint,
  loadCheckpointModel,
  restoreWeights,
  disposeCheckpoint,
  reestimateBatchNorm,
  momentumStartFor,
  trainableVariables,
  type Batch as TrainingBatch,
  type TrainLoopOptions,
  type TrainLoopResult,
  type EvalResult,
  type CheckpointMeta,
  type LoadedCheckpoint,
  type OptimizerState,
  type MomentumStart,
  type MomentumRestore,
} from './training/index.js';
export {
  selectTargets,
  planCompression,
  distortModel,
  decomposeTargets,
  applyReconstructions,
  fixRanks,
  readBackTargets,
  meanRelativeError,
  meanSweeps,
  buildExportModel,
  buildFactoredModel,
  layerRecords,
  modelCounts,
  measureLatency,
  type CompressionPlan,
  type DecomposeTargetsOptions,
  type LayerResult,
  type ChainStep,
} from './compression/index.js';

export { learningRateAt } from './schedule.js';
export { MomentumSgd, type SgdOptions, type TrainableVariable } from './sgd.js';
export {
  trainLoop,
  checkAborted,
  CancelledError,
  type Batch,
  type GradientInfo,
  type StepInfo,
  type TrainLoopOptions,
  type TrainLoopResult,
} from './loop.js';
export { evaluateModel, predictArrays, type ArraySplit, type EvalResult } from './evaluate.js';
export {
  saveCheckpoint,
  loadCheckpoint,
  restoreWeights,
  loadCheckpointModel,
  disposeCheckpoint,
  momentumStartFor,
  type CheckpointMeta,
  type LoadedCheckpoint,
  type LoadCheckpointOptions,
  type SaveCheckpointOptions,
} from './checkpoint.js';
export {
  restoreMomentum,
  optimizerStateMismatch,
  OPTIMIZER_STATE_KIND,
  type MomentumRestore,
  type MomentumRestoreMode,
  type MomentumStart,
  type MomentumTarget,
  type NamedShape,
  type OptimizerSlot,
  type OptimizerState,
} from './optimizer-state.js';
export { reestimateBatchNorm, batchNormLayers } from './batchnorm.js';
export {
  trainableVariables,
  outputIsSoftmax,
  crossEntropy,
  countModelParams,
  isDecayedWeight,
} from './model-utils.js';

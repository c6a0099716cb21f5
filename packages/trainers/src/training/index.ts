export { learningRateAt } from './schedule.js';
export { MomentumSgd, type SgdOptions, type TrainableVariable } from './sgd.js';
export {
  trainLoop,
  checkAborted,
  CancelledError,
  type Batch,
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
  CHECKPOINT_FORMAT,
  type CheckpointMeta,
  type LoadedCheckpoint,
} from './checkpoint.js';
export { reestimateBatchNorm, batchNormLayers } from './batchnorm.js';
export {
  trainableVariables,
  outputIsSoftmax,
  crossEntropy,
  countModelParams,
  isDecayedWeight,
} from './model-utils.js';

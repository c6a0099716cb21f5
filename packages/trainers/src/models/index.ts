export { buildModel, type BuildModelOptions } from './build.js';
export { convLayers, modelMacs, type ConvLayerInfo } from './inspect.js';
export { ShortcutA, type ShortcutAConfig } from './shortcut.js';
export {
  BatchNormalization,
  batchNormalization,
  batchNormTraining,
  fusedBatchNormAvailable,
  setFusedBatchNorm,
  BATCH_NORM_TRAINING,
  BATCH_NORM_TRAINING_GRAD,
} from './batch-normalization.js';

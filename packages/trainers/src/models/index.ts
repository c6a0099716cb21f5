export { buildModel, type BuildModelOptions } from './build.js';
export { convLayers, modelMacs, type ConvLayerInfo } from './inspect.js';
export { ShortcutA, type ShortcutAConfig } from './shortcut.js';
export {
  BatchNormalization,
  batchNormalization,
  batchNormTraining,
  fusedBatchNormAvailable,
  fusedBatchNormReluAvailable,
  setFusedBatchNorm,
} from './batch-normalization.js';

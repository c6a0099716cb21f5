export { selectTargets, type TargetableLayer } from './targets.js';
export { buildFactoredModel, type ChainStep } from './factored-model.js';
export { measureLatency, median, type LatencyOptions } from './latency.js';
export { readBackTargets } from './readback.js';
export {
  NuclearPenalty,
  RankTrajectory,
  projectedNuclearNorm,
  trpAllocationRecord,
  type TrpProjection,
} from './trp.js';
export {
  planCompression,
  allocationLayers,
  applyAllocation,
  decomposeTargets,
  applyReconstructions,
  distortModel,
  fixRanks,
  meanRelativeError,
  meanSweeps,
  layerRecords,
  hasChainExport,
  buildExportModel,
  modelCounts,
  type CompressionPlan,
  type CompressionTarget,
  type DecomposeTargetsOptions,
  type LayerResult,
  type ModelCounts,
} from './engine.js';
export { resolveAllocation, allocationRecord, curveCacheDir, type AllocationEnv } from './allocation.js';
export {
  measureSensitivity,
  modelWeightsHash,
  validationSplit,
  CURVES_FORMAT,
  type SensitivityEnv,
  type ValidationSplit,
} from './sensitivity.js';

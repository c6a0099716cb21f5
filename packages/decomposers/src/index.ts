// @flatrank/decomposers: low-rank approximation of one layer's kernel (TF.js HWIO [kh, kw, S, T] or
// dense [in, out]); see README.md for the conventions.
export {
  KERNEL_LAYOUTS,
  assertHwio,
  hwioToOihw,
  kernelDims,
  kernelDimsFromShape,
  kernelToMatrix,
  matrixShape,
  matrixToKernel,
  oihwToHwio,
  toHwio,
} from './kernel.js';
export type {
  DenseKernel,
  HwioKernel,
  KernelDims,
  KernelLayout,
  LayerKernel,
  MatrixScheme,
  OihwKernel,
} from './kernel.js';
export {
  chainShapes,
  convOutputSize,
  fullRanks,
  kernelParams,
  planCosts,
  planParams,
  planShape,
  ranksForRatio,
  resolveRanks,
} from './plan.js';
export type { PlanShape, ResolvedRanks } from './plan.js';
export {
  CP_WARM_RELATIVE_TOLERANCE,
  decompose,
  factorTensors,
  factoredLayer,
  layerCosts,
  layerRecord,
  lowRankApproximation,
  optionsFromCompression,
  planDecomposition,
  reconstruct,
} from './decompose.js';
export { modelRatioFraction } from './model-ratio.js';
export {
  ERROR_ESTIMATES,
  KNAPSACK_STEPS,
  allocateByError,
  allocateBySensitivity,
  allocateByVbmf,
  allocateDataFree,
  allocateRanks,
  checkAllocationTarget,
} from './allocation/index.js';
export type {
  AllocatePolicy,
  AllocateRanksOptions,
  AllocatedLayer,
  AllocationLayer,
  AllocationOptions,
  ErrorEstimate,
  RankAllocation,
  SensitivityCandidate,
  SensitivityMeasure,
  SensitivityMeasurement,
  SensitivityRequest,
} from './allocation/index.js';
export { nuclearSubgradient, truncatedSvdSubgradient } from './nuclear.js';
export type { NuclearSubgradient } from './nuclear.js';
export { selectTargets } from './targets.js';
export type { TargetableLayer } from './targets.js';
export {
  geometryOf,
  layerDecomposeOptions,
  modelLayers,
  modelLayersFor,
  planModelCompression,
} from './model-layers.js';
export type { ModelLayer, PlannedLayer } from './model-layers.js';
export type { ModelLayerSpec, ModelRatioResult } from './model-ratio.js';
export { PADDINGS } from './types.js';
export type * from './types.js';

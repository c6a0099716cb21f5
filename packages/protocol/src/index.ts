export * from './errors.js';
export * from './names.js';
export * from './backends.js';
export * from './datasets.js';
export * from './events.js';
export * from './ipc.js';
export * from './checkpoint.js';
export { rankPolicyLabel } from './labels.js';
export {
  TRIAL_CONFIG_VERSION,
  trialConfigSchema,
  resolveTrialConfig,
  checkTrialConfigRules,
  zodToValidationError,
  formatPath,
  canonicalJson,
  trialKey,
  sha256Hex,
  rankPolicySchema,
  allocationTargetSchema,
  allocationBudget,
  sensitivitySchema,
  SENSITIVITY_CANDIDATES,
  layerSelectionSchema,
  compressionSchema,
  distortionSchema,
  trpSchema,
  trainingSchema,
  datasetSchema,
  startSchema,
  lrScheduleSchema,
} from './trial-config.js';
export type {
  TrialConfig,
  TrialConfigInput,
  TrainingRecipe,
  DatasetConfig,
  StartPoint,
  RankPolicy,
  AllocationTarget,
  SensitivityOptions,
  LayerSelection,
  CompressionConfig,
  DistortionConfig,
  TrpConfig,
  LrSchedule,
} from './trial-config.js';

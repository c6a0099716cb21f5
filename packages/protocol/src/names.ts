/** The names every package shares: what a config, a spec, a query and the database may say. */
export const METHODS = ['baseline', 'distort', 'finetune', 'posttrain', 'trp'] as const;
export type Method = (typeof METHODS)[number];

/**
 * When TRP adds its nuclear-norm subgradient to the kernels' gradients (trp.nuclearEvery): at every
 * optimizer step (the paper's stochastic subgradient descent on the regularised loss) or only at
 * the step after each projection (the authors' code with a projection period above 1).
 */
export const TRP_NUCLEAR_SCHEDULES = ['step', 'projection'] as const;
export type TrpNuclearSchedule = (typeof TRP_NUCLEAR_SCHEDULES)[number];

export const DECOMPOSITIONS = ['svd', 'tiled-svd', 'tucker2', 'cp'] as const;
export type Decomposition = (typeof DECOMPOSITIONS)[number];

/** 2-D reshapings of a [d, d, S, T] kernel for SVD (see packages/decomposers/README.md). */
export const SVD_SCHEMES = ['lowered', 'spatial', 'input'] as const;
export type SvdScheme = (typeof SVD_SCHEMES)[number];

/**
 * Column order of the lowered T x (d*d*S) matrix: 'hwc' = (i*d + j)*S + s (tap major, TensorFlow's
 * patch order, the default), 'chw' = s*d*d + i*d + j (channel major, Caffe's / PyTorch's im2col).
 * A plain SVD does not depend on it; a tiled SVD does (it decides what a tile holds).
 */
export const LOWERING_ORDERS = ['hwc', 'chw'] as const;
export type LoweringOrder = (typeof LOWERING_ORDERS)[number];

/** The kinds of a rank policy (compression.rank.kind; see rankPolicySchema). */
export const RANK_POLICY_KINDS = [
  'rank',
  'ranks',
  'fraction',
  'ratio',
  'model-ratio',
  'energy',
  'vbmf',
  'allocate',
] as const;
export type RankPolicyKind = (typeof RANK_POLICY_KINDS)[number];

/**
 * What a budgeted rank allocation (rank policy kind 'allocate') minimises: 'error' the largest
 * relative reconstruction error over the target layers (data-free), 'sensitivity' the summed
 * validation-accuracy loss predicted from per-layer measured curves, 'vbmf' EVBMF's ranks scaled
 * by one factor to the budget.
 */
export const ALLOCATION_CRITERIA = ['error', 'sensitivity', 'vbmf'] as const;
export type AllocationCriterion = (typeof ALLOCATION_CRITERIA)[number];

/** The whole-model quantity a budget is a compression ratio of. */
export const BUDGET_BASES = ['params', 'macs'] as const;
export type BudgetBasis = (typeof BUDGET_BASES)[number];

export const MODELS = ['lenet5', 'resnet8', 'resnet20', 'resnet32', 'resnet56', 'vgg-small'] as const;
export type ModelName = (typeof MODELS)[number];

export const DATASETS = ['mnist', 'fashion-mnist', 'cifar10'] as const;
export type DatasetName = (typeof DATASETS)[number];

/** TF.js backends in automatic-selection order (webgpu only on a hardware adapter). */
export const BACKENDS = ['tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export const TRIAL_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'diverged', 'cancelled'] as const;
export type TrialStatus = (typeof TRIAL_STATUSES)[number];

export const METRIC_PHASES = ['train', 'eval', 'after-decomposition', 'final'] as const;
export type MetricPhase = (typeof METRIC_PHASES)[number];

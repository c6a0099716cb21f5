/**
 * Budgeted rank allocation: the rank policy `{kind: 'allocate', by, target}` chooses the ranks of
 * all target layers together so that the whole model meets a params or multiply-adds budget.
 * See README.md, "Rank allocation".
 */
import { SENSITIVITY_CANDIDATES, ValidationError, type RankPolicy } from '@flatrank/protocol';
import { prepare, type AllocationLayer, type AllocationOptions, type RankAllocation } from './budget.js';
import { allocateByError } from './error.js';
import { allocateBySensitivity, type SensitivityMeasure } from './sensitivity.js';
import { allocateByVbmf } from './vbmf.js';

export type AllocatePolicy = Extract<RankPolicy, { kind: 'allocate' }>;

export interface AllocateRanksOptions extends AllocationOptions {
  /** by: sensitivity only: measures the accuracy curves (the trainers', on a validation split). */
  measure?: SensitivityMeasure | null;
}

function checkPolicy(policy: AllocatePolicy): void {
  if (policy === null || typeof policy !== 'object' || policy.kind !== 'allocate')
    throw new ValidationError(
      'rank',
      `rank: expected a rank policy {kind: allocate, by, target}, got ${JSON.stringify(policy)}`,
    );
}

/** The data-free allocations (by: error, by: vbmf), which read only the kernels' spectra. */
export function allocateDataFree(
  layers: readonly AllocationLayer[],
  policy: AllocatePolicy,
  opts: AllocationOptions = {},
): RankAllocation {
  checkPolicy(policy);
  switch (policy.by) {
    case 'error':
      return allocateByError(layers, policy.target, opts);
    case 'vbmf':
      return allocateByVbmf(layers, policy.target, opts);
    case 'sensitivity':
      prepare(layers, policy.target, opts);
      throw new ValidationError(
        'rank.by',
        'allocate by sensitivity needs data (accuracy curves measured on a validation split): run it in a trial (distort, finetune, posttrain from a trained start); the data-free criteria are error and vbmf',
      );
    default:
      throw new ValidationError(
        'rank.by',
        `rank.by: unknown allocation criterion ${JSON.stringify((policy as { by: unknown }).by)}; allowed: error, sensitivity, vbmf`,
      );
  }
}

/** Any allocation; by: sensitivity calls `opts.measure` for its curves. */
export async function allocateRanks(
  layers: readonly AllocationLayer[],
  policy: AllocatePolicy,
  opts: AllocateRanksOptions = {},
): Promise<RankAllocation> {
  checkPolicy(policy);
  if (policy.by !== 'sensitivity') return allocateDataFree(layers, policy, opts);
  return allocateBySensitivity(layers, policy.target, {
    ...opts,
    candidates: policy.sensitivity?.candidates ?? SENSITIVITY_CANDIDATES,
  });
}

/**
 * Refuses, without kernel values, a budget no ranks can meet (RankError naming rank.target.params
 * or rank.target.macs) and a bad target (ValidationError): what a spec can check before training.
 */
export function checkAllocationTarget(
  layers: readonly AllocationLayer[],
  policy: AllocatePolicy,
  opts: AllocationOptions = {},
): void {
  checkPolicy(policy);
  prepare(
    layers.map(({ kernel: _k, ...l }) => l),
    policy.target,
    opts,
  );
}

export type { AllocatedLayer, AllocationLayer, AllocationOptions, RankAllocation } from './budget.js';
export type {
  SensitivityCandidate,
  SensitivityMeasure,
  SensitivityMeasurement,
  SensitivityRequest,
} from './sensitivity.js';
export { ERROR_ESTIMATES, type ErrorEstimate } from './error.js';
export { allocateByError } from './error.js';
export { allocateByVbmf } from './vbmf.js';
export { allocateBySensitivity, KNAPSACK_STEPS } from './sensitivity.js';

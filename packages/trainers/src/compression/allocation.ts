/**
 * The allocate rank policy in a trial: chooses every target's ranks together (the decomposers'
 * allocators), measuring the sensitivity curves on a validation split when asked to, and turns the
 * result into the trial's 'allocation' event.
 */
import { dirname, join } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { allocateRanks } from '@flatrank/decomposers';
import { rankPolicyLabel, sensitivitySchema, type RankAllocationRecord } from '@flatrank/protocol';
import type { Dataset } from '../data/index.js';
import { allocationLayers, applyAllocation, fixRanks, type CompressionPlan } from './engine.js';
import { readBackTargets } from './readback.js';
import { measureSensitivity, validationSplit } from './sensitivity.js';

export interface AllocationEnv {
  dataset: Dataset;
  /** The start checkpoint directory: the sensitivity curves are cached beside it. */
  startCheckpoint: string | null;
  /** Called between the evaluations of a sensitivity measurement. */
  beat(): void;
}

/** Where the curves measured on a start checkpoint are kept: a folder beside it. */
export function curveCacheDir(startCheckpoint: string | null): string | null {
  return startCheckpoint ? join(dirname(startCheckpoint), 'sensitivity-curves') : null;
}

/**
 * Resolves an allocate policy on the model as it is now (a no-op for other policies or once
 * resolved): the targets' options then hold the chosen ranks and plan.allocation the record. The
 * data-free criteria read the kernels; by sensitivity measures (or reuses) the curves first.
 */
export async function resolveAllocation(
  model: tfl.LayersModel,
  plan: CompressionPlan,
  env: AllocationEnv,
): Promise<void> {
  const policy = plan.allocate;
  if (!policy || plan.allocation) return;
  await readBackTargets(model, plan);
  if (policy.by !== 'sensitivity') {
    fixRanks(model, plan);
    return;
  }
  const s = policy.sensitivity ?? sensitivitySchema.parse({});
  const measure = measureSensitivity(model, {
    validation: validationSplit(env.dataset.train, s.validationSize, s.validationSeed),
    imageShape: env.dataset.imageShape,
    numClasses: env.dataset.numClasses,
    cacheDir: curveCacheDir(env.startCheckpoint),
    beat: env.beat,
  });
  const allocation = await allocateRanks(allocationLayers(model, plan), policy, {
    untargetedParams: plan.untargeted.params,
    untargetedMacs: plan.untargeted.macs,
    measure,
  });
  applyAllocation(plan, allocation);
}

/** The trial's 'allocation' event payload, or null when the plan's ranks were not allocated. */
export function allocationRecord(plan: CompressionPlan): RankAllocationRecord | null {
  const a = plan.allocation;
  if (!plan.allocate || !a) return null;
  return {
    policy: rankPolicyLabel(plan.allocate),
    budget: a.budget,
    achieved: a.achieved,
    layers: a.layers.map((l) => ({ name: l.name, ranks: l.ranks, error: l.error, measured: l.measured })),
    measured: {
      by: a.by,
      paramsBefore: a.paramsBefore,
      paramsAfter: a.paramsAfter,
      macsBefore: a.macsBefore,
      macsAfter: a.macsAfter,
      ...a.measured,
    },
  };
}

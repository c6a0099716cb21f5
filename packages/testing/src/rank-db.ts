/**
 * A sweep with known per-layer ranks, written through the real store API (grid insert, claims,
 * events), for the rank profile's read side (report tables, plots, show, query): LeNet-5 with SVD
 * on conv1, conv2, fc1, fc2, two seeds each of
 *   - finetune, uniform `ratio 2x`: ranks 3, 6, 40, 10 (both seeds);
 *   - finetune, `energy=0.9` standing in for a budgeted allocation: an allocation record per trial
 *     (budget params 2x) with ranks 2, 8 (seed 0) / 10 (seed 1), 30, 12; its layer events arrive
 *     out of model order (fc2 first): the allocation's order is the model order;
 *   - distort, uniform `ratio 2x`, on conv2 and fc1 only: ranks 6, 40;
 *   - the baseline.
 * Every layer has 1000 params before and 10 x rank after (layer ratio 100 / rank).
 */
import {
  resolveTrialConfig,
  trialKey,
  type RankAllocationRecord,
  type TrialConfig,
  type TrialEnvelope,
} from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import { TEMP_DB_ENVIRONMENT } from './temp-db.js';

/** The layers of the fixture in model order. */
export const RANK_DB_LAYERS = ['conv1', 'conv2', 'fc1', 'fc2'] as const;

/** The ranks each configuration's trials report, by seed (layers absent: not compressed). */
export const RANK_DB_RANKS: Record<'uniform' | 'allocated' | 'distort', Array<Record<string, number>>> = {
  uniform: [
    { conv1: 3, conv2: 6, fc1: 40, fc2: 10 },
    { conv1: 3, conv2: 6, fc1: 40, fc2: 10 },
  ],
  allocated: [
    { conv1: 2, conv2: 8, fc1: 30, fc2: 12 },
    { conv1: 2, conv2: 10, fc1: 30, fc2: 12 },
  ],
  distort: [
    { conv2: 6, fc1: 40 },
    { conv2: 6, fc1: 40 },
  ],
};

/** The allocation record of the allocated configuration's trial with `seed`. */
export function rankDbAllocation(seed: number): RankAllocationRecord {
  const ranks = RANK_DB_RANKS.allocated[seed]!;
  return {
    policy: 'energy=0.9',
    budget: { kind: 'params', ratio: 2 },
    achieved: { params: seed === 0 ? 2.01 : 1.99, macs: seed === 0 ? 1.5 : 1.7 },
    layers: RANK_DB_LAYERS.map((name, i) => ({ name, ranks: [ranks[name]!], error: 0.1 * (i + 1) })),
    measured: { fixture: true, seed },
  };
}

function config(kind: 'baseline' | keyof typeof RANK_DB_RANKS, seed: number): TrialConfig {
  const base = {
    model: 'lenet5' as const,
    dataset: { name: 'mnist' as const, trainLimit: 256, testLimit: 128 },
    training: { epochs: 1, lr: 0.05, batchSize: 32 },
    seed,
  };
  if (kind === 'baseline') return resolveTrialConfig({ ...base, method: 'baseline', compression: null });
  const rank =
    kind === 'allocated' ? { kind: 'energy' as const, threshold: 0.9 } : { kind: 'ratio' as const, ratio: 2 };
  return resolveTrialConfig({
    ...base,
    method: kind === 'distort' ? 'distort' : 'finetune',
    compression: { decomposition: 'svd', rank },
    distortion: kind === 'distort' ? { interval: 200 } : null,
  });
}

/** Writes the sweep (default name 'ranks'); returns the trial keys by configuration and seed. */
export function populateRankDb(
  store: ResultsStore,
  sweep = 'ranks',
): Record<'baseline' | keyof typeof RANK_DB_RANKS, string[]> {
  const kinds = ['baseline', 'uniform', 'allocated', 'distort'] as const;
  const configs = kinds.flatMap((kind) => [0, 1].map((seed) => ({ kind, seed, config: config(kind, seed) })));
  const { id: sweepId } = store.upsertSweep({
    name: sweep,
    specText: `name: ${sweep}\n`,
    specResolved: { name: sweep },
    specHash: 'b'.repeat(64),
  });
  store.insertTrials(
    sweepId,
    configs.map((c) => ({ key: trialKey(c.config), config: c.config })),
  );
  const keys = Object.fromEntries(kinds.map((k) => [k, [] as string[]])) as Record<
    (typeof kinds)[number],
    string[]
  >;
  for (;;) {
    const claim = store.claimTrial({ sweepId, worker: 'w', device: 'cpu', leaseMs: 60_000, maxAttempts: 1 });
    if (!claim) break;
    const { kind, seed } = configs.find((c) => trialKey(c.config) === claim.key)!;
    keys[kind][seed] = claim.key;
    let seq = 0;
    const events: TrialEnvelope[] = [];
    const push = (event: TrialEnvelope['event']) =>
      events.push({ trialKey: claim.key, attempt: claim.attempt, seq: seq++, event });
    push({ type: 'started', env: TEMP_DB_ENVIRONMENT });
    if (kind === 'allocated') push({ type: 'allocation', allocation: rankDbAllocation(seed) });
    const ranks = kind === 'baseline' ? {} : RANK_DB_RANKS[kind][seed]!;
    const names = Object.keys(ranks);
    // The allocated trials report their layers out of model order.
    for (const name of kind === 'allocated' ? [names.at(-1)!, ...names.slice(0, -1)] : names)
      push({
        type: 'layer',
        layer: {
          name,
          decomposition: 'svd',
          scheme: 'lowered',
          ranks: [ranks[name]!],
          rawRanks: null,
          tile: null,
          kernelShape: [3, 3, 4, 4],
          paramsBefore: 1000,
          paramsAfter: 10 * ranks[name]!,
          macsBefore: 1000,
          macsAfter: 100 * ranks[name]!,
          relativeError: 0.1,
        },
      });
    push({
      type: 'finished',
      summary: {
        accuracyOriginal: 0.95,
        accuracyAfterDecomposition: kind === 'baseline' ? null : 0.5,
        accuracyFinal: kind === 'baseline' ? 0.95 : kind === 'allocated' ? 0.93 : 0.92,
        paramsBefore: 60000,
        paramsAfter: kind === 'baseline' ? 60000 : 30000,
        macsBefore: 400000,
        macsAfter: kind === 'baseline' ? 400000 : 250000,
        latencyBeforeMs: null,
        latencyAfterMs: null,
        latencyBatch: null,
        wallSeconds: 1,
        steps: 10,
        epochs: 1,
      },
    });
    store.applyEvents(events);
  }
  return keys;
}

/**
 * Temporary flatrank databases for tests: a fresh SQLite file in its own temp directory (removed by
 * cleanup()), and a populator that writes a small, realistic sweep through the real store API
 * (grid insert, claims, events) so that read-side tests see what the coordinator would write.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  resolveTrialConfig,
  trialKey,
  type RankAllocationRecord,
  type RunEnvironment,
  type TrialConfig,
  type TrialConfigInput,
  type TrialEnvelope,
} from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';

export interface TempDb {
  /** Absolute path of the database file (created by createTempDb unless create: false). */
  path: string;
  /** The temp directory holding it (and anything else a test writes next to it). */
  dir: string;
  /** A writer store on the file (undefined with create: false); closed by cleanup(). */
  store: ResultsStore | undefined;
  /** Closes the store and removes the directory. Safe to call twice. */
  cleanup(): void;
}

/** A new temp directory with a fresh, migrated flatrank database (or only its path: create: false). */
export function createTempDb(opts: { create?: boolean; name?: string } = {}): TempDb {
  const dir = mkdtempSync(join(tmpdir(), 'flatrank-db-'));
  const path = join(dir, opts.name ?? 'flatrank.sqlite');
  const store = opts.create === false ? undefined : ResultsStore.open(path, { create: true });
  let done = false;
  return {
    path,
    dir,
    store,
    cleanup() {
      if (done) return;
      done = true;
      store?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A small valid trial config (lenet5 on mnist) with overrides; resolved, so defaults are filled. */
export function tempDbTrialConfig(overrides: Partial<TrialConfigInput> = {}): TrialConfig {
  const method = overrides.method ?? 'finetune';
  const base: TrialConfigInput = {
    model: 'lenet5',
    dataset: { name: 'mnist', trainLimit: 256, testLimit: 128 },
    training: { epochs: method === 'posttrain' ? 0 : 1, lr: 0.05, batchSize: 32 },
    method,
    compression:
      method === 'baseline' ? null : { decomposition: 'tucker2', rank: { kind: 'ratio', ratio: 2 } },
    distortion: method === 'distort' ? { interval: 200 } : null,
    seed: 0,
  };
  return resolveTrialConfig({ ...base, ...overrides });
}

/**
 * A budgeted allocation over LeNet-5's conv2 and fc1 with ranks scaled by `scale` (default 1:
 * conv2 [3, 8], fc1 [16]), as a trainer would report it.
 */
export function tempDbAllocation(scale = 1): RankAllocationRecord {
  return {
    policy: 'model-ratio=2',
    budget: { kind: 'params', ratio: 2 },
    achieved: { params: 2.01 / scale, macs: 1.6 / scale },
    layers: [
      {
        name: 'conv2',
        ranks: [3 * scale, 8 * scale],
        error: 0.25 / scale,
        measured: { candidates: [2, 4, 8] },
      },
      { name: 'fc1', ranks: [16 * scale], error: 0.2 / scale },
    ],
    measured: { maxError: 0.25 / scale, greedySteps: 3 },
  };
}

export const TEMP_DB_ENVIRONMENT: RunEnvironment = {
  gitCommit: '0123456789abcdef0123456789abcdef01234567',
  gitDirty: false,
  packageVersions: { flatrank: '0.1.0', 'better-sqlite3': '12.x' },
  nodeVersion: process.version,
  backend: 'cpu',
  backendVersion: '4.22.0',
  device: 'test CPU',
  host: 'testhost',
  cudaVisibleDevices: null,
  pid: 1,
};

/**
 * The events a successful trial emits: started, (an allocation when given,) metrics per step, one
 * layer, an artifact, finished.
 */
export function tempDbTrialEvents(
  key: string,
  attempt: number,
  opts: { steps?: number; accuracy?: number; allocation?: RankAllocationRecord } = {},
): TrialEnvelope[] {
  const steps = opts.steps ?? 5;
  const acc = opts.accuracy ?? 0.9;
  const out: TrialEnvelope[] = [];
  let seq = 0;
  const push = (event: TrialEnvelope['event']) => out.push({ trialKey: key, attempt, seq: seq++, event });
  push({ type: 'started', env: TEMP_DB_ENVIRONMENT });
  if (opts.allocation) push({ type: 'allocation', allocation: opts.allocation });
  for (let s = 1; s <= steps; s++)
    push({ type: 'metric', step: s, epoch: 0, phase: 'train', name: 'loss', value: 2 / s });
  push({
    type: 'layer',
    layer: {
      name: 'conv2',
      decomposition: 'tucker2',
      scheme: null,
      ranks: [3, 8],
      rawRanks: null,
      tile: null,
      kernelShape: [5, 5, 6, 16],
      paramsBefore: 2400,
      paramsAfter: 1200,
      macsBefore: 240000,
      macsAfter: 120000,
      relativeError: 0.25,
    },
  });
  push({ type: 'metric', step: steps, epoch: 1, phase: 'eval', name: 'accuracy', value: acc });
  push({ type: 'artifact', kind: 'checkpoint', path: `checkpoints/${key}.ckpt` });
  push({
    type: 'finished',
    summary: {
      accuracyOriginal: 0.95,
      accuracyAfterDecomposition: 0.5,
      accuracyFinal: acc,
      paramsBefore: 60000,
      paramsAfter: 30000,
      macsBefore: 400000,
      macsAfter: 250000,
      latencyBeforeMs: 2,
      latencyAfterMs: 1.5,
      latencyBatch: 32,
      wallSeconds: 3.5,
      steps,
      epochs: 1,
    },
  });
  return out;
}

export interface PopulatedSweep {
  sweepId: number;
  /** Keys in insertion order; the first `succeeded` ran to completion, the rest are pending. */
  keys: string[];
  configs: TrialConfig[];
}

/**
 * Writes one sweep: a grid over method x seed (finetune/distort, tucker2/cp) and runs the first
 * `succeeded` trials through claim + events. Uses only the public store API.
 */
export function populateTempDb(
  store: ResultsStore,
  opts: { sweep?: string; seeds?: number; succeeded?: number } = {},
): PopulatedSweep {
  const sweep = opts.sweep ?? 'temp-sweep';
  const seeds = opts.seeds ?? 2;
  const configs: TrialConfig[] = [];
  for (const method of ['finetune', 'distort'] as const)
    for (const decomposition of ['tucker2', 'cp'] as const)
      for (let seed = 0; seed < seeds; seed++)
        configs.push(
          tempDbTrialConfig({
            method,
            seed,
            compression: {
              decomposition,
              rank: decomposition === 'cp' ? { kind: 'rank', rank: 4 } : { kind: 'ratio', ratio: 2 },
            },
          }),
        );
  const { id: sweepId } = store.upsertSweep({
    name: sweep,
    specText: `name: ${sweep}\n`,
    specResolved: { name: sweep },
    specHash: 'f'.repeat(64),
  });
  const keys = configs.map((c) => trialKey(c));
  store.insertTrials(
    sweepId,
    configs.map((config, i) => ({ key: keys[i]!, config })),
  );
  const n = Math.min(opts.succeeded ?? 2, configs.length);
  for (let i = 0; i < n; i++) {
    const claim = store.claimTrial({
      sweepId,
      worker: 'test-worker',
      device: 'cpu',
      leaseMs: 60_000,
      maxAttempts: 3,
    });
    if (!claim) throw new Error('populateTempDb: nothing claimable');
    store.applyEvents(tempDbTrialEvents(claim.key, claim.attempt, { accuracy: 0.8 + i / 100 }));
  }
  return { sweepId, keys, configs };
}

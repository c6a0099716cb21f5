// The allocate rank policy in real trials (LeNet-5 trained briefly on 512 MNIST digits): the
// 'allocation' event, its agreement with the layer events and the summary, and the curve cache
// shared by the trials that start from one checkpoint.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RankAllocationRecord, TrialConfigInput, TrialEvent } from '@flatrank/protocol';
import { runTrial, type RunTrialOptions } from '../src/trial.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-trial-allocation-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: TrialConfigInput = {
  model: 'lenet5',
  dataset: { name: 'mnist', trainLimit: 512, testLimit: 256 },
  training: { epochs: 1, batchSize: 32, lr: 0.05 },
  method: 'baseline',
  seed: 2,
};

function opts(name: string, events: TrialEvent[], startCheckpoint: string | null = null): RunTrialOptions {
  return {
    dataDir: null,
    artifactDir: join(dir, name),
    startCheckpoint,
    backend: 'wasm',
    heartbeatMs: 1000,
    emit: (e) => events.push(e),
    logEverySteps: 8,
    latencyRepeats: 1,
  };
}

const of = <T extends TrialEvent['type']>(events: TrialEvent[], type: T) =>
  events.filter((e): e is Extract<TrialEvent, { type: T }> => e.type === type);

const sensitivity = {
  decomposition: 'svd',
  layers: { kind: 'all-but-first', includeFc: true },
  rank: {
    kind: 'allocate',
    by: 'sensitivity',
    target: { params: 3 },
    sensitivity: { candidates: [0.125, 0.25, 0.5], validationSize: 200, validationSeed: 1 },
  },
};

describe('allocate in trials', { timeout: 180_000 }, () => {
  let checkpoint: string;
  let posttrain: RankAllocationRecord;

  it('posttrain by sensitivity: one allocation event, the ranks it decomposed with, the reported ratio', async () => {
    const b: TrialEvent[] = [];
    await runTrial(base, opts('baseline', b));
    checkpoint = of(b, 'artifact').find((e) => e.kind === 'checkpoint')!.path;
    const events: TrialEvent[] = [];
    const s = await runTrial(
      {
        ...base,
        method: 'posttrain',
        training: { ...base.training, epochs: 0 },
        start: { kind: 'checkpoint', name: 'baseline' },
        compression: sensitivity,
      },
      opts('posttrain', events, checkpoint),
    );
    const allocations = of(events, 'allocation');
    expect(allocations).toHaveLength(1);
    posttrain = allocations[0]!.allocation;
    expect(posttrain.policy).toBe('alloc-sensitivity:params=3');
    expect(posttrain.budget).toEqual({ kind: 'params', ratio: 3 });
    const layers = of(events, 'layer').map((e) => e.layer);
    expect(posttrain.layers.map((l) => [l.name, l.ranks])).toEqual(layers.map((l) => [l.name, l.ranks]));
    expect(posttrain.layers.map((l) => l.name)).toEqual(['conv2', 'fc1', 'fc2', 'fc3']);
    expect(posttrain.achieved.params).toBeCloseTo(s.paramsBefore / s.paramsAfter, 10);
    expect(posttrain.achieved.params).toBeGreaterThanOrEqual(3);
    expect(posttrain.achieved.params).toBeLessThan(3 * 1.01);
    expect(posttrain.achieved.macs).toBeCloseTo(s.macsBefore / s.macsAfter, 10);
    const measured = posttrain.measured as Record<string, unknown>;
    expect(measured['validation']).toMatchObject({ source: 'train', size: 200, seed: 1, trainCount: 512 });
    expect(measured['cache']).toMatchObject({ hit: false });
    expect(measured['baselineAccuracy']).toBeGreaterThan(0.5);
    // Curves at rank 1 and the three candidates, per layer (fc3, full rank 10: 1/8 of it is rank 1).
    for (const l of posttrain.layers)
      expect((l.measured as { curve: unknown[] }).curve).toHaveLength(l.name === 'fc3' ? 3 : 4);
    const cacheDir = join(dirname(checkpoint), 'sensitivity-curves');
    expect(readdirSync(cacheDir)).toHaveLength(1);
  });

  it('distort from the same checkpoint reuses the curves and allocates the same ranks', async () => {
    const events: TrialEvent[] = [];
    await runTrial(
      {
        ...base,
        method: 'distort',
        training: { ...base.training, maxSteps: 4 },
        start: { kind: 'checkpoint', name: 'baseline' },
        compression: sensitivity,
        distortion: { interval: 2 },
      },
      opts('distort', events, checkpoint),
    );
    expect(of(events, 'finished')).toHaveLength(1);
    const [a] = of(events, 'allocation');
    expect((a!.allocation.measured as Record<string, unknown>)['cache']).toMatchObject({ hit: true });
    expect(a!.allocation.layers.map((l) => l.ranks)).toEqual(posttrain.layers.map((l) => l.ranks));
    expect(of(events, 'layer').map((e) => e.layer.ranks)).toEqual(posttrain.layers.map((l) => l.ranks));
  });

  it('finetune by error from scratch allocates on the pre-trained kernels and records their errors', async () => {
    const events: TrialEvent[] = [];
    const s = await runTrial(
      {
        ...base,
        method: 'finetune',
        training: { ...base.training, epochs: 2, maxSteps: 8 },
        compression: { ...sensitivity, rank: { kind: 'allocate', by: 'error', target: { macs: 2 } } },
      },
      opts('finetune', events),
    );
    const [a] = of(events, 'allocation');
    expect(a!.allocation.policy).toBe('alloc-error:macs=2');
    expect(a!.allocation.achieved.macs).toBeCloseTo(s.macsBefore / s.macsAfter, 10);
    expect(a!.allocation.achieved.macs).toBeGreaterThanOrEqual(2);
    expect(a!.allocation.layers.every((l) => typeof l.error === 'number' && l.error < 1)).toBe(true);
    // No start checkpoint: no curve cache anywhere near the trial.
    expect(existsSync(join(dir, 'sensitivity-curves'))).toBe(false);
  });
});

// Allocation events (how a trial chose its per-layer ranks): stored once per attempt, read back
// through trial_allocations / allocation_layers for the trial's latest attempt only.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError, trialKey, type RankAllocationRecord, type TrialEnvelope } from '@flatrank/protocol';
import {
  createTempDb,
  tempDbAllocation,
  tempDbTrialConfig,
  tempDbTrialEvents,
  type TempDb,
} from '@flatrank/testing';
import { ResultsStore, SCHEMA_VERSION, createDatabaseAtVersion } from '../src/index.js';
import { connectionOf } from '../src/internal.js';

let tmp: TempDb;
let store: ResultsStore;
beforeEach(() => {
  tmp = createTempDb();
  store = tmp.store!;
});
afterEach(() => tmp.cleanup());

const rows = (q: string, ...p: unknown[]) =>
  connectionOf(store)
    .prepare(q)
    .all(...p) as Array<Record<string, unknown>>;

/** One trial of a new sweep, claimed for its first attempt. */
function claimOne(maxAttempts = 3) {
  const sweepId = store.upsertSweep({ name: 's', specText: 's', specResolved: {}, specHash: 'h' }).id;
  const config = tempDbTrialConfig({ seed: 0 });
  store.insertTrials(sweepId, [{ key: trialKey(config), config }]);
  const claim = () => store.claimTrial({ sweepId, worker: 'w', leaseMs: 60_000, maxAttempts })!;
  return { first: claim(), claimAgain: claim };
}

const allocationEvent = (
  key: string,
  attempt: number,
  seq: number,
  allocation: RankAllocationRecord,
): TrialEnvelope => ({ trialKey: key, attempt, seq, event: { type: 'allocation', allocation } });

describe('allocation events', () => {
  it('are stored with their budget and achieved ratios, once however often they are delivered', () => {
    const { first } = claimOne();
    const events = tempDbTrialEvents(first.key, first.attempt, { allocation: tempDbAllocation() });
    store.applyEvents(events);
    expect(store.applyEvents(events).applied).toBe(0);
    expect(rows('SELECT count(*) AS n FROM allocations')).toEqual([{ n: 1 }]);
    expect(
      rows(
        'SELECT method, attempt, policy, budget_kind, budget_ratio, achieved_params_ratio, achieved_macs_ratio, layers, measured FROM trial_allocations',
      ),
    ).toEqual([
      {
        method: 'finetune',
        attempt: 1,
        policy: 'model-ratio=2',
        budget_kind: 'params',
        budget_ratio: 2,
        achieved_params_ratio: 2.01,
        achieved_macs_ratio: 1.6,
        layers: 2,
        measured: '{"maxError":0.25,"greedySteps":3}',
      },
    ]);
    expect(
      rows('SELECT layer_index, layer, ranks, error, measured FROM allocation_layers ORDER BY layer_index'),
    ).toEqual([
      { layer_index: 0, layer: 'conv2', ranks: '[3,8]', error: 0.25, measured: '{"candidates":[2,4,8]}' },
      { layer_index: 1, layer: 'fc1', ranks: '[16]', error: 0.2, measured: null },
    ]);
    const record = JSON.parse(rows('SELECT record FROM trial_allocations')[0]!['record'] as string);
    expect(record).toEqual(tempDbAllocation());
  });

  it('a second record of the same attempt replaces the first (latest wins)', () => {
    const { first } = claimOne();
    store.applyEvents([allocationEvent(first.key, 1, 0, tempDbAllocation(1))]);
    const stats = store.applyEvents([allocationEvent(first.key, 1, 1, tempDbAllocation(2))]);
    expect(stats.applied).toBe(1);
    expect(rows('SELECT ranks FROM allocation_layers ORDER BY layer_index')).toEqual([
      { ranks: '[6,16]' },
      { ranks: '[32]' },
    ]);
    expect(rows('SELECT count(*) AS n FROM allocations')).toEqual([{ n: 1 }]);
  });

  it('a trainer without budget (trp) records a null budget', () => {
    const { first } = claimOne();
    store.applyEvents([
      allocationEvent(first.key, 1, 0, { ...tempDbAllocation(), policy: 'trp', budget: null }),
    ]);
    expect(rows('SELECT policy, budget_kind, budget_ratio FROM trial_allocations')).toEqual([
      { policy: 'trp', budget_kind: null, budget_ratio: null },
    ]);
  });

  it('only the latest attempt counts: a retried trial reads back the succeeding attempt, every attempt keeps its row', () => {
    const { first, claimAgain } = claimOne();
    store.applyEvents([
      allocationEvent(first.key, 1, 0, tempDbAllocation(1)),
      {
        trialKey: first.key,
        attempt: 1,
        seq: 1,
        event: { type: 'failed', error: { name: 'E', code: 'E', message: 'boom' }, retryable: true },
      },
    ]);
    const second = claimAgain();
    expect(second.attempt).toBe(2);
    // Before the new attempt reports, the trial has no allocation to read (its attempt 1 is history).
    expect(rows('SELECT * FROM trial_allocations')).toEqual([]);
    store.applyEvents(tempDbTrialEvents(second.key, 2, { allocation: tempDbAllocation(2) }));
    // A late event of the stale attempt changes nothing.
    expect(store.applyEvents([allocationEvent(first.key, 1, 7, tempDbAllocation(3))])).toEqual({
      applied: 0,
      ignored: 1,
    });
    expect(rows('SELECT attempt, count(*) AS n FROM allocations GROUP BY attempt ORDER BY attempt')).toEqual([
      { attempt: 1, n: 1 },
      { attempt: 2, n: 1 },
    ]);
    expect(rows('SELECT attempt, achieved_params_ratio FROM trial_allocations')).toEqual([
      { attempt: 2, achieved_params_ratio: 1.005 },
    ]);
    expect(rows('SELECT layer, ranks FROM allocation_layers ORDER BY layer_index')).toEqual([
      { layer: 'conv2', ranks: '[6,16]' },
      { layer: 'fc1', ranks: '[32]' },
    ]);
    expect(store.getTrial(first.key)).toMatchObject({ status: 'succeeded', attempts: 2 });
  });

  it.each([
    [{ policy: '' }, 'event.allocation.policy'],
    [{ budget: { kind: 'flops', ratio: 2 } }, 'event.allocation.budget.kind'],
    [{ budget: { kind: 'params', ratio: -1 } }, 'event.allocation.budget.ratio'],
    [{ achieved: { params: 2 } }, 'event.allocation.achieved.macs'],
    [{ layers: [{ name: 'conv2', ranks: [1.5] }] }, 'event.allocation.layers[0].ranks'],
    [{ layers: [{ ranks: [1] }] }, 'event.allocation.layers[0].name'],
  ])('a bad record (%j) is refused naming %s, and its batch is not written', (patch, field) => {
    const { first } = claimOne();
    const bad = allocationEvent(first.key, 1, 1, {
      ...tempDbAllocation(),
      ...patch,
    } as unknown as RankAllocationRecord);
    const good: TrialEnvelope = {
      trialKey: first.key,
      attempt: 1,
      seq: 0,
      event: { type: 'metric', step: 1, epoch: 0, phase: 'train', name: 'loss', value: 1 },
    };
    let error: unknown;
    try {
      store.applyEvents([good, bad]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain(`${field}:`);
    expect(rows('SELECT count(*) AS n FROM metrics')).toEqual([{ n: 0 }]);
    expect(rows('SELECT count(*) AS n FROM allocations')).toEqual([{ n: 0 }]);
  });

  it('a schema-7 database gains the table and the views when the writer opens it, its rows kept', () => {
    const path = createDatabaseAtVersion(`${tmp.dir}/v7.sqlite`, 7);
    const old = ResultsStore.open(path);
    try {
      // 8 and every later migration.
      expect(old.migrated).toEqual(Array.from({ length: SCHEMA_VERSION - 7 }, (_, i) => 8 + i));
      const sweepId = old.upsertSweep({ name: 's', specText: 's', specResolved: {}, specHash: 'h' }).id;
      const config = tempDbTrialConfig({ seed: 4 });
      old.insertTrials(sweepId, [{ key: trialKey(config), config }]);
      const c = old.claimTrial({ sweepId, worker: 'w', leaseMs: 60_000, maxAttempts: 1 })!;
      old.applyEvents(tempDbTrialEvents(c.key, c.attempt, { allocation: tempDbAllocation() }));
      const db = connectionOf(old);
      expect(db.prepare('SELECT count(*) FROM allocation_layers').pluck().get()).toBe(2);
      expect(db.prepare('SELECT seed, policy FROM trial_allocations').get()).toEqual({
        seed: 4,
        policy: 'model-ratio=2',
      });
    } finally {
      old.close();
    }
  });
});

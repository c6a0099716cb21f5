// The attempt budget: only the trial's own failures count toward maxAttempts. An attempt ended by
// the coordinator's own interruption (endAttempt 'interrupted', or an expired lease: its coordinator
// is gone) goes back to pending uncounted; retryFailed re-opens failed points and the points
// cancelled because of them with a fresh budget, keeping the attempt numbers (and so their rows).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trialKey, type TrialEnvelope } from '@flatrank/protocol';
import { createTempDb, tempDbTrialConfig, type TempDb } from '@flatrank/testing';
import { createDatabaseAtVersion, ResultsStore, SCHEMA_VERSION } from '../src/index.js';
import { connectionOf } from '../src/internal.js';

let tmp: TempDb;
let store: ResultsStore;
beforeEach(() => {
  tmp = createTempDb();
  store = tmp.store!;
});
afterEach(() => tmp.cleanup());

function setup(n: number, deps: Array<[number, number]> = []) {
  const id = store.upsertSweep({ name: 's', specText: 'spec', specResolved: {}, specHash: 'h' }).id;
  const points = Array.from({ length: n }, (_, seed) => {
    const config = tempDbTrialConfig({ seed });
    return { key: trialKey(config), config, dependsOn: [] as string[] };
  });
  for (const [child, parent] of deps) points[child]!.dependsOn = [points[parent]!.key];
  store.syncSweepTrials(id, points);
  return { id, keys: points.map((p) => p.key) };
}

const failed = (key: string, attempt: number, retryable = true): TrialEnvelope => ({
  trialKey: key,
  attempt,
  seq: 0,
  event: { type: 'failed', error: { name: 'E', code: 'E', message: 'boom' }, retryable },
});

describe('attempt budget', () => {
  it('interrupted attempts are not counted: the trial can still fail maxAttempts times', () => {
    const { id, keys } = setup(1);
    const claim = () => store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 60_000, maxAttempts: 2 });
    for (let i = 1; i <= 3; i++) {
      expect(claim()).toMatchObject({ attempt: i });
      expect(store.endAttempt(keys[0]!, i, { status: 'interrupted', error: 'Ctrl-C' })).toBe(true);
    }
    expect(store.getTrial(keys[0]!)).toMatchObject({
      status: 'pending',
      attempts: 3,
      countedAttempts: 0,
      interruptedAttempts: 3,
      errorCode: 'INTERRUPTED',
      error: 'Ctrl-C',
    });
    expect(claim()).toMatchObject({ attempt: 4 });
    store.applyEvents([failed(keys[0]!, 4)]);
    expect(claim()).toMatchObject({ attempt: 5 }); // counted 1 of 2: retried
    store.applyEvents([failed(keys[0]!, 5)]);
    expect(claim()).toBeNull(); // counted 2 of 2
    expect(store.getTrial(keys[0]!)).toMatchObject({ status: 'failed', attempts: 5, countedAttempts: 2 });
  });

  it('an expired lease (its coordinator vanished) is re-claimed without counting, however often', () => {
    const { id, keys } = setup(1);
    const claim = (now: number) =>
      store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 10, maxAttempts: 1, now });
    expect(claim(0)).toMatchObject({ attempt: 1 });
    expect(claim(5)).toBeNull(); // lease still valid
    expect(claim(100)).toMatchObject({ attempt: 2 });
    expect(claim(200)).toMatchObject({ attempt: 3 });
    expect(store.getTrial(keys[0]!)).toMatchObject({
      status: 'running',
      attempts: 3,
      countedAttempts: 1,
      interruptedAttempts: 2,
    });
  });

  it('retryFailed re-opens failed points and their cancelled dependents only, with a fresh budget', () => {
    // 0 fails for good, 1 depends on 0, 2 succeeds, 3 fails non-retryably.
    const { id, keys } = setup(4, [[1, 0]]);
    const claim = () => store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 60_000, maxAttempts: 1 });
    for (let i = 0; i < 3; i++) {
      const c = claim()!;
      if (c.key === keys[0]) store.applyEvents([failed(c.key, 1)]);
      else if (c.key === keys[3]) store.applyEvents([failed(c.key, 1, false)]);
      else store.endAttempt(c.key, 1, { status: 'cancelled' }); // an unrelated cancellation: stays
    }
    expect(store.cancelBlocked(id, 1)).toEqual([keys[1]]);
    expect(claim()).toBeNull();
    const db = connectionOf(store);
    db.prepare(
      "INSERT INTO metrics (trial_id, attempt, seq, step, epoch, phase, name, value) SELECT id, 1, 5, 0, 0, 'train', 'loss', 1 FROM trials WHERE key = ?",
    ).run(keys[0]);
    expect(store.retryFailed(id)).toEqual({ failed: 2, cancelled: 1 });
    const byKey = new Map(store.listTrials({ sweepId: id }).map((t) => [t.key, t]));
    expect(byKey.get(keys[0]!)).toMatchObject({ status: 'pending', attempts: 1, countedAttempts: 0 });
    expect(byKey.get(keys[1]!)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(byKey.get(keys[2]!)).toMatchObject({ status: 'cancelled', errorCode: 'CANCELLED' });
    expect(byKey.get(keys[3]!)).toMatchObject({ status: 'pending', retryable: true });
    // Attempt numbers go on: the old attempt's rows stay under attempt 1.
    const again = claim()!;
    expect(again).toMatchObject({ key: keys[0], attempt: 2 });
    expect(db.prepare('SELECT count(*) FROM metrics WHERE attempt = 1').pluck().get()).toBe(1);
    expect(store.trialCounts(id)).toMatchObject({ running: 1, pending: 2, cancelled: 1, failed: 0 });
  });

  it('migration: existing trials count every attempt they made', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flatrank-budget-'));
    try {
      const file = createDatabaseAtVersion(join(dir, 'old.sqlite'), 6);
      const raw = new Database(file);
      raw
        .prepare(
          "INSERT INTO sweeps (id, name, spec_text, spec_resolved, spec_hash, created_at, updated_at) VALUES (1, 's', '', '{}', 'h', 0, 0)",
        )
        .run();
      raw
        .prepare(
          `INSERT INTO trials (sweep_id, key, config, model, dataset, method, seed, lr, epochs, batch_size, created_at, status, attempts)
           VALUES (1, 'k', '{}', 'lenet5', 'mnist', 'baseline', 0, 0.1, 1, 16, 0, 'failed', 2)`,
        )
        .run();
      raw.close();
      const s = ResultsStore.open(file);
      try {
        // Every migration above 6 runs once, in order (7 is the one this test is about).
        expect(s.migrated).toEqual(Array.from({ length: SCHEMA_VERSION - 6 }, (_, i) => 7 + i));
        const row = connectionOf(s)
          .prepare('SELECT attempts, counted_attempts, interrupted_attempts FROM trials')
          .get();
        expect(row).toEqual({ attempts: 2, counted_attempts: 2, interrupted_attempts: 0 });
      } finally {
        s.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

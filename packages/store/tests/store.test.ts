import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError, ValidationError, trialKey, type TrialEnvelope } from '@flatrank/protocol';
import { createTempDb, tempDbTrialConfig, tempDbTrialEvents, type TempDb } from '@flatrank/testing';
import { ResultsStore } from '../src/index.js';
import { connectionOf } from '../src/internal.js';

let tmp: TempDb;
let store: ResultsStore;
beforeEach(() => {
  tmp = createTempDb();
  store = tmp.store!;
});
afterEach(() => tmp.cleanup());

function grid(n: number) {
  return Array.from({ length: n }, (_, seed) => {
    const config = tempDbTrialConfig({ seed });
    return { key: trialKey(config), config };
  });
}

function sweep(name = 's1') {
  return store.upsertSweep({ name, specText: 'spec', specResolved: { a: 1 }, specHash: 'h1' }).id;
}

describe('sweeps and grid insert', () => {
  it('upsertSweep creates once and updates the spec afterwards', () => {
    const a = store.upsertSweep({ name: 's', specText: 'v1', specResolved: { v: 1 }, specHash: 'h1' });
    const b = store.upsertSweep({ name: 's', specText: 'v2', specResolved: { v: 2 }, specHash: 'h2' });
    expect(a.created).toBe(true);
    expect(b).toEqual({ id: a.id, created: false });
    expect(store.getSweep('s')).toMatchObject({
      id: a.id,
      specText: 'v2',
      specResolved: { v: 2 },
      specHash: 'h2',
      finishedAt: null,
    });
    store.finishSweep(a.id, 1234);
    expect(store.getSweep('s')!.finishedAt).toBe(1234);
    expect(store.getSweep('nope')).toBeUndefined();
  });

  it('insertTrials is idempotent by trial key and fills the axis columns', () => {
    const id = sweep();
    const g = grid(5);
    expect(store.insertTrials(id, g)).toEqual({ inserted: 5, existing: 0 });
    expect(store.insertTrials(id, g)).toEqual({ inserted: 0, existing: 5 });
    expect(store.insertTrials(id, grid(7))).toEqual({ inserted: 2, existing: 5 });
    const rows = store.listTrials({ sweepId: id });
    expect(rows).toHaveLength(7);
    expect(rows[3]).toMatchObject({ status: 'pending', attempts: 0, key: g[3]!.key, config: g[3]!.config });
    expect(rows[3]!.axes).toEqual({
      model: 'lenet5',
      dataset: 'mnist',
      method: 'finetune',
      decomposition: 'tucker2',
      scheme: null,
      rankPolicy: 'ratio=2',
      targetRatio: 2,
      distortionInterval: null,
      seed: 3,
      lr: 0.05,
      epochs: 1,
      batchSize: 32,
    });
    expect(store.trialCounts(id)).toEqual({
      pending: 7,
      running: 0,
      succeeded: 0,
      failed: 0,
      diverged: 0,
      cancelled: 0,
    });
  });

  it('a config shared by two sweeps is one trial row that belongs to both', () => {
    const a = sweep('a');
    const b = sweep('b');
    const g = grid(3);
    store.insertTrials(a, g);
    expect(store.insertTrials(b, g.slice(1))).toEqual({ inserted: 0, existing: 2 });
    expect(store.listTrials({ sweepId: b }).map((t) => t.key)).toEqual(g.slice(1).map((t) => t.key));
    expect(store.trialCounts(b).pending).toBe(2);
    expect(store.claimTrial({ sweepId: b, worker: 'w', leaseMs: 1000, maxAttempts: 2 })!.key).toBe(g[1]!.key);
  });

  it('rejects a key that is not trialKey(config) and writes nothing', () => {
    const id = sweep();
    const g = grid(2);
    expect(() => store.insertTrials(id, [g[0]!, { key: g[0]!.key, config: g[1]!.config }])).toThrow(
      ValidationError,
    );
    expect(store.listTrials({})).toHaveLength(0);
    expect(() => store.insertTrials(999, g)).toThrow(/no sweep with id 999/);
  });

  it('refuses a config the trial-config rules refuse, with the same message, and writes nothing', () => {
    const id = sweep();
    // A posttrain config that trains: only a hand-built TrialConfig can be one (the schema refuses it).
    const bad = {
      ...tempDbTrialConfig({ method: 'posttrain' }),
      training: { ...tempDbTrialConfig().training, epochs: 3 },
    };
    const ok = grid(1)[0]!;
    const e = (() => {
      try {
        store.insertTrials(id, [ok, { key: trialKey(bad), config: bad }]);
      } catch (err) {
        return err;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).field).toBe('trials[1].config.training.epochs');
    expect((e as ValidationError).message).toMatch(
      /^trials\[1\]\.config\.training\.epochs: must be 0 for method 'posttrain'/,
    );
    expect(store.listTrials({})).toHaveLength(0);
  });

  it('stores the rank policy by its one label (the rank_policy column)', () => {
    const id = sweep();
    const policies = [
      { kind: 'rank', rank: 8 },
      { kind: 'ranks', ranks: [4, 8] },
      { kind: 'ratio', ratio: 4 },
    ] as const;
    const trials = policies.map((rank) => {
      const config = tempDbTrialConfig({ compression: { decomposition: 'tucker2', rank } });
      return { key: trialKey(config), config };
    });
    store.insertTrials(id, trials);
    const rows = connectionOf(store)
      .prepare('SELECT rank_policy, target_ratio FROM trials ORDER BY id')
      .all();
    expect(rows).toEqual([
      { rank_policy: 'rank=8', target_ratio: null },
      { rank_policy: 'ranks=4x8', target_ratio: null },
      { rank_policy: 'ratio=4', target_ratio: 4 },
    ]);
  });
});

describe('claims and leases', () => {
  it('claims each pending trial once, in order, then returns null', () => {
    const id = sweep();
    const g = grid(3);
    store.insertTrials(id, g);
    const got = [1, 2, 3].map(() =>
      store.claimTrial({
        sweepId: id,
        worker: 'w1',
        device: 'cuda:0',
        leaseMs: 60_000,
        maxAttempts: 2,
        now: 1000,
      }),
    );
    expect(got.map((c) => c!.key)).toEqual(g.map((t) => t.key));
    expect(got[0]).toMatchObject({ attempt: 1, sweepId: id, dependsOn: [], config: g[0]!.config });
    expect(
      store.claimTrial({ sweepId: id, worker: 'w1', leaseMs: 60_000, maxAttempts: 2, now: 2000 }),
    ).toBeNull();
    expect(store.getTrial(g[0]!.key)).toMatchObject({
      status: 'running',
      attempts: 1,
      worker: 'w1',
      device: 'cuda:0',
      leaseExpiresAt: 61_000,
      startedAt: 1000,
    });
  });

  it('holds a trial back until every dependency has succeeded', () => {
    const id = sweep();
    const [a, b] = grid(2);
    store.insertTrials(id, [{ ...b!, dependsOn: [a!.key] }, a!]);
    const first = store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1000, maxAttempts: 1, now: 0 })!;
    expect(first.key).toBe(a!.key);
    expect(store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1000, maxAttempts: 1, now: 1 })).toBeNull();
    store.applyEvents(tempDbTrialEvents(a!.key, 1), 2);
    const second = store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1000, maxAttempts: 1, now: 3 })!;
    expect(second).toMatchObject({ key: b!.key, dependsOn: [a!.key] });
  });

  it('re-claims a running trial whose lease expired; the old attempt loses heartbeat and its events are ignored', () => {
    const id = sweep();
    const [t] = grid(1);
    store.insertTrials(id, [t!]);
    const c1 = store.claimTrial({ sweepId: id, worker: 'w1', leaseMs: 1000, maxAttempts: 3, now: 0 })!;
    expect(store.heartbeat(t!.key, 1, 1000, 900)).toBe(true); // lease now until 1900
    expect(
      store.claimTrial({ sweepId: id, worker: 'w2', leaseMs: 1000, maxAttempts: 3, now: 1800 }),
    ).toBeNull();
    const c2 = store.claimTrial({ sweepId: id, worker: 'w2', leaseMs: 1000, maxAttempts: 3, now: 2000 })!;
    expect(c2).toMatchObject({ key: c1.key, attempt: 2 });
    expect(store.heartbeat(t!.key, 1, 1000, 2100)).toBe(false);
    expect(store.heartbeat(t!.key, 2, 1000, 2100)).toBe(true);
    // The stale attempt reports success: ignored; the trial stays running for attempt 2.
    const stale = store.applyEvents(tempDbTrialEvents(t!.key, 1));
    expect(stale.applied).toBe(0);
    expect(store.getTrial(t!.key)).toMatchObject({ status: 'running', attempts: 2, worker: 'w2' });
    expect(connectionOf(store).prepare('SELECT count(*) FROM metrics').pluck().get()).toBe(0);
    expect(connectionOf(store).prepare('SELECT count(*) FROM results').pluck().get()).toBe(0);
    store.applyEvents(tempDbTrialEvents(t!.key, 2));
    expect(store.getTrial(t!.key)!.status).toBe('succeeded');
  });

  it('takes the lowest id among pending, retryable and lease-expired trials', () => {
    const id = sweep();
    const [a, b, c] = grid(3);
    store.insertTrials(id, [a!, b!, c!]);
    const claim = (now: number) =>
      store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 100, maxAttempts: 3, now });
    expect(claim(0)!.key).toBe(a!.key);
    expect(claim(0)!.key).toBe(b!.key);
    store.applyEvents([
      {
        trialKey: b!.key,
        attempt: 1,
        seq: 0,
        event: { type: 'failed', error: { name: 'E', code: 'E', message: 'x' }, retryable: true },
      },
    ]);
    // Before a's lease expires: the retryable failure b (id 2) comes before the pending c (id 3).
    expect(claim(50)).toMatchObject({ key: b!.key, attempt: 2 });
    // After a's lease expired (100) but before b's (150): a (id 1) is re-claimed before c.
    expect(claim(120)).toMatchObject({ key: a!.key, attempt: 2 });
    expect(claim(120)).toMatchObject({ key: c!.key, attempt: 1 });
    // Later b's lease expires too (id 2, now the lowest claimable).
    expect(claim(160)).toMatchObject({ key: b!.key, attempt: 3 });
    expect(store.listTrials({ sweepId: id, status: 'running' }).map((t) => t.key)).toEqual([
      a!.key,
      b!.key,
      c!.key,
    ]);
    expect(store.listTrials({ status: 'pending' })).toEqual([]);
  });

  it("an expired lease is the coordinator's interruption: re-claimed, the lost attempt not counted", () => {
    const id = sweep();
    const [t] = grid(1);
    store.insertTrials(id, [t!]);
    store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 10, maxAttempts: 1, now: 0 });
    expect(
      store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 10, maxAttempts: 1, now: 100 }),
    ).toMatchObject({
      attempt: 2,
    });
    expect(store.getTrial(t!.key)).toMatchObject({
      status: 'running',
      attempts: 2,
      countedAttempts: 1,
      interruptedAttempts: 1,
    });
  });

  it('retries retryable failures up to maxAttempts, never non-retryable failures or divergence', () => {
    const id = sweep();
    const [a, b, c] = grid(3);
    store.insertTrials(id, [a!, b!, c!]);
    const claim = () => store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 60_000, maxAttempts: 2 });
    for (let i = 0; i < 3; i++) claim();
    const err = { name: 'Error', code: 'X', message: 'boom' };
    store.applyEvents([
      { trialKey: a!.key, attempt: 1, seq: 0, event: { type: 'failed', error: err, retryable: true } },
      { trialKey: b!.key, attempt: 1, seq: 0, event: { type: 'failed', error: err, retryable: false } },
      { trialKey: c!.key, attempt: 1, seq: 0, event: { type: 'diverged', reason: 'loss is NaN', step: 7 } },
    ]);
    expect(store.getTrial(a!.key)).toMatchObject({
      status: 'failed',
      retryable: true,
      error: 'boom',
      errorCode: 'X',
    });
    expect(store.getTrial(c!.key)).toMatchObject({
      status: 'diverged',
      retryable: false,
      error: 'loss is NaN',
    });
    const again = claim()!;
    expect(again).toMatchObject({ key: a!.key, attempt: 2 });
    expect(
      store.endAttempt(a!.key, 2, { status: 'failed', error: 'worker exited with code 1', retryable: true }),
    ).toBe(true);
    expect(claim()).toBeNull(); // a: out of attempts; b: not retryable; c: diverged
    expect(store.trialCounts(id)).toMatchObject({ failed: 2, diverged: 1 });
  });

  it('endAttempt acts only on the running attempt it names; pending puts the trial back', () => {
    const id = sweep();
    const [t] = grid(1);
    store.insertTrials(id, [t!]);
    store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1000, maxAttempts: 3 });
    expect(store.endAttempt(t!.key, 7, { status: 'cancelled' })).toBe(false);
    expect(store.endAttempt(t!.key, 1, { status: 'pending' })).toBe(true);
    expect(store.getTrial(t!.key)).toMatchObject({ status: 'pending', worker: null, leaseExpiresAt: null });
    expect(store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1000, maxAttempts: 3 })!.attempt).toBe(2);
    expect(store.endAttempt(t!.key, 2, { status: 'cancelled', error: 'sweep stopped' })).toBe(true);
    expect(store.getTrial(t!.key)).toMatchObject({ status: 'cancelled', errorCode: 'CANCELLED' });
    expect(store.endAttempt(t!.key, 2, { status: 'failed' })).toBe(false);
  });

  it('cancelBlocked cancels pending trials whose dependency can no longer succeed', () => {
    const id = sweep();
    const [a, b, c] = grid(3);
    store.insertTrials(id, [a!, { ...b!, dependsOn: [a!.key] }, c!]);
    store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1000, maxAttempts: 1 });
    store.applyEvents([
      { trialKey: a!.key, attempt: 1, seq: 0, event: { type: 'diverged', reason: 'nan', step: 1 } },
    ]);
    expect(store.cancelBlocked(id, 1)).toEqual([b!.key]);
    expect(store.getTrial(b!.key)).toMatchObject({ status: 'cancelled', errorCode: 'DEPENDENCY_FAILED' });
    expect(store.getTrial(c!.key)!.status).toBe('pending');
  });

  it('validates claim options', () => {
    expect(() => store.claimTrial({ sweepId: 1, worker: 'w', leaseMs: 0, maxAttempts: 1 })).toThrow(
      /leaseMs/,
    );
    expect(() => store.claimTrial({ sweepId: 1, worker: '', leaseMs: 10, maxAttempts: 1 })).toThrow(/worker/);
  });
});

describe('applyEvents', () => {
  function runOne() {
    const id = sweep();
    const [t] = grid(1);
    store.insertTrials(id, [t!]);
    const c = store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 60_000, maxAttempts: 3 })!;
    return { id, key: c.key, events: tempDbTrialEvents(c.key, c.attempt, { steps: 4, accuracy: 0.87 }) };
  }
  const count = (table: string) => connectionOf(store).prepare(`SELECT count(*) FROM ${table}`).pluck().get();

  it('stores every event kind, and the same envelopes applied twice are stored once', () => {
    const { key, events } = runOne();
    const first = store.applyEvents(events);
    expect(first).toEqual({ applied: events.length, ignored: 0 });
    const snapshot = () => ({
      metrics: count('metrics'),
      layers: count('layers'),
      results: count('results'),
      artifacts: count('artifacts'),
      trial: store.getTrial(key),
    });
    const before = snapshot();
    expect(store.applyEvents(events)).toEqual({ applied: 0, ignored: events.length });
    // Redelivered in a different batch split and order: still stored once.
    store.applyEvents([...events.slice(3), ...events.slice(0, 3)]);
    expect(snapshot()).toEqual(before);
    expect(before).toMatchObject({ metrics: 5, layers: 1, results: 1, artifacts: 1 });
    const t = before.trial!;
    expect(t).toMatchObject({ status: 'succeeded', lastStep: 4, leaseExpiresAt: null });
    expect(t.environment).toMatchObject({
      gitCommit: '0123456789abcdef0123456789abcdef01234567',
      gitDirty: false,
      backend: 'cpu',
      device: 'test CPU',
      host: 'testhost',
    });
    const r = connectionOf(store).prepare('SELECT * FROM trial_summary WHERE key = ?').get(key) as Record<
      string,
      unknown
    >;
    expect(r).toMatchObject({
      accuracy_final: 0.87,
      accuracy_after_decomposition: 0.5,
      params_ratio: 2,
      macs_ratio: 1.6,
      wall_seconds: 3.5,
      latency_after_ms: 1.5,
    });
    expect(connectionOf(store).prepare('SELECT layer, ranks, params_ratio FROM trial_layers').get()).toEqual({
      layer: 'conv2',
      ranks: '[3,8]',
      params_ratio: 2,
    });
    expect(
      connectionOf(store).prepare("SELECT value FROM latest_metrics WHERE name = 'loss'").pluck().get(),
    ).toBe(0.5);
    expect(store.artifacts(key)).toEqual([{ kind: 'checkpoint', path: `checkpoints/${key}.ckpt` }]);
  });

  it('a second finished event cannot overwrite the result; failure after success is ignored', () => {
    const { key, events } = runOne();
    store.applyEvents(events);
    const fin = events.at(-1)!;
    const again: TrialEnvelope = {
      ...fin,
      seq: 99,
      event: {
        type: 'finished',
        summary: { ...(fin.event as { summary: never }).summary, accuracyFinal: 0.1 },
      } as TrialEnvelope['event'],
    };
    store.applyEvents([
      again,
      {
        trialKey: key,
        attempt: 1,
        seq: 100,
        event: { type: 'failed', error: { name: 'E', code: 'E', message: 'late' }, retryable: true },
      },
    ]);
    expect(connectionOf(store).prepare('SELECT accuracy_final FROM results').pluck().get()).toBe(0.87);
    expect(store.getTrial(key)!.status).toBe('succeeded');
  });

  it('ignores unknown trials and future attempts; a bad phase aborts the whole batch', () => {
    const { key } = runOne();
    const stats = store.applyEvents([
      { trialKey: 'f'.repeat(64), attempt: 1, seq: 0, event: { type: 'heartbeat', step: 1, epoch: 0 } },
      {
        trialKey: key,
        attempt: 5,
        seq: 0,
        event: { type: 'metric', step: 1, epoch: 0, phase: 'train', name: 'loss', value: 1 },
      },
      { trialKey: key, attempt: 1, seq: 0, event: { type: 'heartbeat', step: 3, epoch: 0 } },
    ]);
    expect(stats).toEqual({ applied: 1, ignored: 2 });
    expect(store.getTrial(key)!.lastStep).toBe(3);
    const bad = {
      trialKey: key,
      attempt: 1,
      seq: 1,
      event: { type: 'metric', step: 1, epoch: 0, phase: 'warmup', name: 'x', value: 1 },
    } as unknown as TrialEnvelope;
    const good: TrialEnvelope = {
      trialKey: key,
      attempt: 1,
      seq: 2,
      event: { type: 'metric', step: 1, epoch: 0, phase: 'train', name: 'x', value: 1 },
    };
    expect(() => store.applyEvents([good, bad])).toThrow(/phase/);
    expect(count('metrics')).toBe(0);
  });

  it('stores non-finite metric values as NULL', () => {
    const { key } = runOne();
    store.applyEvents([
      {
        trialKey: key,
        attempt: 1,
        seq: 0,
        event: { type: 'metric', step: 1, epoch: 0, phase: 'train', name: 'loss', value: Number.NaN },
      },
    ]);
    expect(connectionOf(store).prepare('SELECT value FROM metrics').pluck().get()).toBeNull();
  });
});

describe('read-only connections and lookups', () => {
  it('refuses every write with WRITE_REFUSED', () => {
    const id = sweep();
    store.insertTrials(id, grid(1));
    const ro = ResultsStore.open(tmp.path, { readonly: true });
    try {
      expect(ro.listTrials({ sweepId: id })).toHaveLength(1);
      for (const f of [
        () => ro.upsertSweep({ name: 'x', specText: '', specResolved: null, specHash: '' }),
        () => ro.claimTrial({ sweepId: id, worker: 'w', leaseMs: 1, maxAttempts: 1 }),
        () => ro.applyEvents([]),
        () => ro.finishSweep(id),
      ]) {
        try {
          f();
          throw new Error('expected a refusal');
        } catch (e) {
          expect(e).toBeInstanceOf(StoreError);
          expect((e as StoreError).code).toBe('WRITE_REFUSED');
        }
      }
      // The connection itself is read-only too.
      expect(() => connectionOf(ro).prepare('DELETE FROM trials').run()).toThrow(/readonly|read-only/i);
    } finally {
      ro.close();
    }
  });

  it('getTrial by unique prefix; an ambiguous prefix lists the candidates', () => {
    const id = sweep();
    const g = grid(40);
    store.insertTrials(id, g);
    const k = g[5]!.key;
    expect(store.getTrial(k.slice(0, 12))!.key).toBe(k);
    expect(store.getTrial(k.toUpperCase())!.key).toBe(k);
    expect(store.getTrial('zzzz')).toBeUndefined();
    expect(() => store.getTrial('ab')).toThrow(/at least 4/);
    // Two crafted keys sharing a 4-character prefix (written directly; configs are irrelevant here).
    const ins = connectionOf(store).prepare(
      "INSERT INTO trials (sweep_id, key, config, model, dataset, method, seed, lr, epochs, batch_size, created_at) VALUES (?, ?, '{}', 'lenet5', 'mnist', 'baseline', 0, 0.1, 1, 32, 0)",
    );
    ins.run(id, `abcd1${'0'.repeat(59)}`);
    ins.run(id, `abcd2${'0'.repeat(59)}`);
    try {
      store.getTrial('abcd');
      throw new Error('expected AMBIGUOUS_PREFIX');
    } catch (e) {
      expect(e).toBeInstanceOf(ValidationError);
      expect((e as ValidationError).code).toBe('AMBIGUOUS_PREFIX');
      expect((e as ValidationError).message).toMatch(/abcd1.*abcd2/);
    }
    expect(store.getTrial('abcd2')!.key).toBe(`abcd2${'0'.repeat(59)}`);
  });
});

describe('status counts (migration 4: sweep_status_counts kept by triggers)', () => {
  /** What trialCounts / succeededTiming must equal: a full recount over the current memberships. */
  function recount(sweepId: number) {
    const counts = connectionOf(store)
      .prepare(
        'SELECT t.status, count(*) AS n FROM sweep_trials st JOIN trials t ON t.id = st.trial_id WHERE st.sweep_id = ? AND st.active = 1 GROUP BY t.status',
      )
      .all(sweepId) as Array<{ status: string; n: number }>;
    const timing = connectionOf(store)
      .prepare(
        `SELECT count(t.finished_at - t.started_at) AS n, avg(t.finished_at - t.started_at) AS mean
         FROM sweep_trials st JOIN trials t ON t.id = st.trial_id WHERE st.sweep_id = ? AND st.active = 1 AND t.status = 'succeeded'`,
      )
      .get(sweepId) as { n: number; mean: number | null };
    return {
      counts: {
        pending: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        diverged: 0,
        cancelled: 0,
        ...Object.fromEntries(counts.map((r) => [r.status, r.n])),
      },
      timing: { trials: timing.n, meanMs: timing.mean },
    };
  }
  const expectConsistent = (...sweeps: number[]) => {
    for (const s of sweeps) {
      const want = recount(s);
      expect(store.trialCounts(s)).toEqual(want.counts);
      expect(store.succeededTiming(s)).toEqual(want.timing);
    }
  };

  it('match a recount after inserts, claims, events, failures, lease expiry, cancels and shared trials', () => {
    const a = sweep('a');
    const b = sweep('b');
    const g = grid(8);
    store.insertTrials(a, g.slice(0, 6), 1);
    // g[4], g[5] shared with b; INSERT OR IGNORE of an existing membership must not count twice.
    store.insertTrials(b, g.slice(4), 1);
    store.insertTrials(b, g.slice(4), 1);
    expectConsistent(a, b);
    expect(store.trialCounts(a).pending).toBe(6);
    expect(store.trialCounts(b).pending).toBe(4);

    const claim = (sweepId: number, now: number) =>
      store.claimTrial({ sweepId, worker: 'w', leaseMs: 100, maxAttempts: 2, now })!;
    // g[0] succeeds after 40 ms, g[1] after 100 ms.
    for (const [i, [from, to]] of [
      [1000, 1040],
      [1000, 1100],
    ].entries()) {
      const c = claim(a, from!);
      expect(c.key).toBe(g[i]!.key);
      store.applyEvents(tempDbTrialEvents(c.key, c.attempt), to);
    }
    const c2 = claim(a, 2000); // g[2]: fails, retryable
    store.applyEvents(
      [
        {
          trialKey: c2.key,
          attempt: c2.attempt,
          seq: 0,
          event: { type: 'failed', error: { name: 'E', code: 'X', message: 'x' }, retryable: true },
        },
      ],
      2010,
    );
    const c3 = claim(a, 2000); // g[2] again (retry), then lost for good
    expect(c3.key).toBe(g[2]!.key);
    store.endAttempt(c3.key, c3.attempt, { status: 'failed', error: 'lost', retryable: false }, 2100);
    expect(claim(a, 5000).key).toBe(g[3]!.key);
    expect(store.getTrial(g[2]!.key)!.errorCode).toBe('ATTEMPT_FAILED');
    const shared = claim(b, 6000); // g[4], through sweep b: counted as running in both sweeps
    expect(shared.key).toBe(g[4]!.key);
    expect(store.trialCounts(a).running).toBe(2);
    expect(store.trialCounts(b).running).toBe(1);
    store.endAttempt(shared.key, shared.attempt, { status: 'pending' }, 6100);
    store.endAttempt(g[3]!.key, 1, { status: 'cancelled' }, 6200);
    const c5 = claim(b, 7000);
    store.applyEvents(
      [
        {
          trialKey: c5.key,
          attempt: c5.attempt,
          seq: 0,
          event: { type: 'diverged', reason: 'nan', step: 3 },
        },
      ],
      7500,
    );
    expectConsistent(a, b);
    expect(store.trialCounts(a)).toEqual({
      pending: 1,
      running: 0,
      succeeded: 2,
      failed: 1,
      diverged: 1,
      cancelled: 1,
    });
    expect(store.succeededTiming(a)).toEqual({ trials: 2, meanMs: 70 });
    expect(store.succeededTiming(b)).toEqual({ trials: 0, meanMs: null });

    // Writes by plain SQL (flatrank keeps no other writer, but the counts must not drift).
    connectionOf(store).exec(
      "UPDATE trials SET status = 'cancelled', finished_at = 9000 WHERE status = 'pending'",
    );
    connectionOf(store)
      .prepare('DELETE FROM sweep_trials WHERE sweep_id = ? AND trial_id = ?')
      .run(b, store.getTrial(g[7]!.key)!.id);
    connectionOf(store).prepare('DELETE FROM trials WHERE key = ?').run(g[0]!.key);
    expectConsistent(a, b);
    expect(store.succeededTiming(a)).toEqual({ trials: 1, meanMs: 100 });
  });

  /** The old (migration 2) sweep_progress: a join over every current membership, grouped by sweep. */
  const progressRecount = () =>
    connectionOf(store)
      .prepare(
        `SELECT s.id AS sweep_id, s.name AS sweep, COUNT(t.id) AS trials,
           SUM(t.status = 'pending') AS pending, SUM(t.status = 'running') AS running,
           SUM(t.status = 'succeeded') AS succeeded, SUM(t.status = 'failed') AS failed,
           SUM(t.status = 'diverged') AS diverged, SUM(t.status = 'cancelled') AS cancelled,
           s.created_at, s.finished_at
         FROM sweeps s
         LEFT JOIN sweep_trials st ON st.sweep_id = s.id AND st.active = 1
         LEFT JOIN trials t ON t.id = st.trial_id
         GROUP BY s.id ORDER BY s.id`,
      )
      .all();
  const progressView = () =>
    connectionOf(store).prepare('SELECT * FROM sweep_progress ORDER BY sweep_id').all();

  it('follow the latest spec: retiring / restoring memberships moves trials out of / into the counts', () => {
    const a = sweep('a');
    const b = sweep('b');
    const empty = sweep('empty');
    const g = grid(6);
    store.syncSweepTrials(a, g.slice(0, 5), 1);
    store.syncSweepTrials(b, g.slice(3), 1); // g[3], g[4] shared
    const claim = (sweepId: number, now: number) =>
      store.claimTrial({ sweepId, worker: 'w', leaseMs: 100, maxAttempts: 2, now })!;
    const c0 = claim(a, 1000);
    store.applyEvents(tempDbTrialEvents(c0.key, c0.attempt), 1050); // g[0] succeeded in 50 ms
    claim(a, 1100); // g[1] running
    expectConsistent(a, b);
    expect(progressView()).toEqual(progressRecount());

    // The spec of a drops g[0] (succeeded), g[1] (running) and g[3] (shared with b), adds g[5].
    const r = store.syncSweepTrials(a, [g[2]!, g[4]!, g[5]!], 2000);
    expect(r).toMatchObject({ inserted: 0, existing: 3, retired: 3, restored: 0 });
    expect(r.notInSpec).toEqual({
      pending: 1,
      running: 1,
      succeeded: 1,
      failed: 0,
      diverged: 0,
      cancelled: 0,
    });
    expect(store.trialCounts(a)).toMatchObject({ pending: 3, running: 0, succeeded: 0 });
    expect(store.succeededTiming(a)).toEqual({ trials: 0, meanMs: null });
    expect(store.trialCounts(b).pending).toBe(3); // b's memberships are untouched
    expectConsistent(a, b, empty);
    // A retired trial changing status (its attempt ends) changes no count of a; b still counts g[3].
    store.endAttempt(g[1]!.key, 1, { status: 'pending' }, 2100);
    const c3 = claim(b, 2200);
    expect(c3.key).toBe(g[3]!.key);
    expect(store.trialCounts(b).running).toBe(1);
    expectConsistent(a, b, empty);
    expect(progressView()).toEqual(progressRecount());

    // g[0] comes back into the spec: counted again, with its timing; running it again is not needed.
    const back = store.syncSweepTrials(a, [g[0]!, g[2]!, g[4]!, g[5]!], 3000);
    expect(back).toMatchObject({ existing: 4, retired: 0, restored: 1 });
    expect(store.succeededTiming(a)).toEqual({ trials: 1, meanMs: 50 });
    expectConsistent(a, b, empty);
    // Plain-SQL deletes of retired memberships / trials leave the counts exact too.
    connectionOf(store)
      .prepare('DELETE FROM sweep_trials WHERE sweep_id = ? AND trial_id = ?')
      .run(a, store.getTrial(g[1]!.key)!.id);
    connectionOf(store).prepare('DELETE FROM trials WHERE key = ?').run(g[3]!.key);
    expectConsistent(a, b, empty);
    store.finishSweep(b, 4000);
    const view = progressView();
    expect(view).toEqual(progressRecount());
    // An empty sweep: trials 0 and NULL per-status columns, as the migration-2 view gave.
    expect(view.find((v) => (v as { sweep: string }).sweep === 'empty')).toMatchObject({
      trials: 0,
      pending: null,
    });
  });
});

describe('sweep membership in the latest spec (syncSweepTrials)', () => {
  it('never claims or cancels retired trials, keeps their rows and results, lists them on request', () => {
    const a = sweep('a');
    const g = grid(4);
    store.syncSweepTrials(a, g.slice(0, 3), 1);
    const c0 = store.claimTrial({ sweepId: a, worker: 'w', leaseMs: 60_000, maxAttempts: 2 })!;
    store.applyEvents(tempDbTrialEvents(c0.key, c0.attempt));
    const c1 = store.claimTrial({ sweepId: a, worker: 'w', leaseMs: 60_000, maxAttempts: 2 })!;
    store.endAttempt(c1.key, c1.attempt, { status: 'failed', error: 'x', retryable: true });
    // New spec: g[0] (succeeded), g[1] (failed, retryable) and g[2] (pending) are gone; g[3] is new.
    const r = store.syncSweepTrials(a, [g[3]!]);
    expect(r).toMatchObject({ inserted: 1, existing: 0, retired: 3 });
    expect(r.notInSpec).toMatchObject({ succeeded: 1, failed: 1, pending: 1 });
    const claimed = store.claimTrial({ sweepId: a, worker: 'w', leaseMs: 60_000, maxAttempts: 2 })!;
    expect(claimed.key).toBe(g[3]!.key);
    store.endAttempt(claimed.key, claimed.attempt, { status: 'cancelled' });
    expect(store.claimTrial({ sweepId: a, worker: 'w', leaseMs: 60_000, maxAttempts: 2 })).toBeNull();
    expect(store.trialKeys({ sweepId: a, status: 'pending' })).toEqual([]);
    // Rows and results are kept.
    expect(store.listTrials({})).toHaveLength(4);
    expect(store.getTrial(g[0]!.key)!.status).toBe('succeeded');
    expect(connectionOf(store).prepare('SELECT count(*) FROM results').pluck().get()).toBe(1);
    expect(store.listTrials({ sweepId: a }).map((t) => t.key)).toEqual([g[3]!.key]);
    expect(store.listTrials({ sweepId: a, membership: 'retired' }).map((t) => t.key)).toEqual(
      g.slice(0, 3).map((t) => t.key),
    );
    expect(store.listTrials({ sweepId: a, membership: 'all' })).toHaveLength(4);
    expect(store.membershipCounts(a, 'all')).toMatchObject({
      succeeded: 1,
      failed: 1,
      pending: 1,
      cancelled: 1,
    });
    expect(
      connectionOf(store)
        .prepare("SELECT key, in_spec FROM sweep_trial_summary WHERE member_sweep = 'a' ORDER BY trial_id")
        .all(),
    ).toEqual(g.map((t, i) => ({ key: t.key, in_spec: i === 3 ? 1 : 0 })));
    expect(() => store.listTrials({ sweepId: a, membership: 'old' as never })).toThrow(
      /membership: unknown value "old"; allowed: current, retired, all/,
    );
  });

  it('insertTrials links without retiring, and brings a retired point back', () => {
    const a = sweep('a');
    const g = grid(3);
    store.syncSweepTrials(a, g.slice(0, 2));
    store.syncSweepTrials(a, g.slice(1, 2));
    expect(store.membershipCounts(a).pending).toBe(1);
    store.insertTrials(a, [g[0]!, g[2]!]);
    expect(store.membershipCounts(a).pending).toBe(0);
    expect(store.trialCounts(a).pending).toBe(3);
    expect(store.claimTrial({ sweepId: a, worker: 'w', leaseMs: 60_000, maxAttempts: 1 })!.key).toBe(
      g[0]!.key,
    );
  });

  it('validates every point before writing: a bad key retires nothing', () => {
    const a = sweep('a');
    const g = grid(2);
    store.syncSweepTrials(a, g);
    expect(() => store.syncSweepTrials(a, [{ key: 'f'.repeat(64), config: g[0]!.config }])).toThrow(
      /trials\[0\]\.key: .* is not trialKey\(config\)/,
    );
    expect(store.trialCounts(a).pending).toBe(2);
  });
});

describe('trialKeys', () => {
  it('lists the keys of one status of one sweep in id order, and refuses an unknown status', () => {
    const a = sweep('a');
    const b = sweep('b');
    const g = grid(4);
    store.insertTrials(a, g.slice(0, 3));
    store.insertTrials(b, g.slice(2));
    const c = store.claimTrial({ sweepId: a, worker: 'w', leaseMs: 1000, maxAttempts: 1 })!;
    expect(store.trialKeys({ sweepId: a, status: 'pending' })).toEqual([g[1]!.key, g[2]!.key]);
    expect(store.trialKeys({ sweepId: a, status: 'running' })).toEqual([c.key]);
    expect(store.trialKeys({ sweepId: b, status: 'pending' })).toEqual([g[2]!.key, g[3]!.key]);
    expect(() => store.trialKeys({ sweepId: a, status: 'done' as never })).toThrow(
      /status: unknown value "done"; allowed: pending, running/,
    );
  });
});

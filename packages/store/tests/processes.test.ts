// Multi-process behaviour on real files: concurrent claimers, readers during a writer, and a writer
// killed with SIGKILL mid-writes. Helper scripts (tests/helpers/*.mjs) run the built store (dist).
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { trialKey } from '@flatrank/protocol';
import { createTempDb, tempDbTrialConfig, type TempDb } from '@flatrank/testing';
import { ResultsStore, SCHEMA_VERSION, listRuns } from '../src/index.js';
import { HELPERS, buildStoreDist } from './util.js';
import { MIGRATIONS, connectionOf } from '../src/internal.js';

beforeAll(() => buildStoreDist(), 120_000);

let tmp: TempDb;
const children: ChildProcess[] = [];
beforeEach(() => {
  tmp = createTempDb();
});
afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.length = 0;
  tmp.cleanup();
});

function start(script: string, args: Array<string | number>): ChildProcess {
  const c = fork(join(HELPERS, script), args.map(String), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(c);
  return c;
}

function exited(c: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (c.exitCode !== null || c.signalCode !== null)
    return Promise.resolve({ code: c.exitCode, signal: c.signalCode });
  return new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal })));
}

function seedTrials(n: number, sweep = 's'): { sweepId: number; keys: string[] } {
  const store = tmp.store!;
  const { id } = store.upsertSweep({ name: sweep, specText: '', specResolved: null, specHash: '' });
  const trials = Array.from({ length: n }, (_, seed) => {
    const config = tempDbTrialConfig({ seed });
    return { key: trialKey(config), config };
  });
  store.insertTrials(id, trials);
  return { sweepId: id, keys: trials.map((t) => t.key) };
}

describe('multi-process', () => {
  it('two processes claiming concurrently never hand out the same trial', async () => {
    const { sweepId, keys } = seedTrials(150);
    tmp.store!.close(); // the claimers are the only writers now
    const workers = ['a', 'b'].map((w) => start('claimer.mjs', [tmp.path, sweepId, w]));
    const nextMessage = (c: ChildProcess) => new Promise<unknown>((resolve) => c.once('message', resolve));
    // Both opened the database and are waiting: release them together.
    expect(await Promise.all(workers.map(nextMessage))).toEqual(['ready', 'ready']);
    const results = workers.map(
      (c) => nextMessage(c) as Promise<{ worker: string; claimed: Array<{ key: string; attempt: number }> }>,
    );
    for (const c of workers) c.send('go');
    const [ra, rb] = await Promise.all(results);
    await Promise.all(workers.map(exited));
    const all = [...ra!.claimed, ...rb!.claimed].map((c) => c.key);
    // Both really competed for the same rows (each got some).
    expect(ra!.claimed.length).toBeGreaterThan(0);
    expect(rb!.claimed.length).toBeGreaterThan(0);
    expect(new Set(all).size).toBe(all.length); // no trial handed out twice
    expect(new Set(all)).toEqual(new Set(keys)); // and every trial handed out once
    expect(ra!.claimed.every((c) => c.attempt === 1) && rb!.claimed.every((c) => c.attempt === 1)).toBe(true);
    const check = ResultsStore.open(tmp.path, { readonly: true });
    const rows = check.listTrials({ sweepId });
    check.close();
    expect(rows.every((r) => r.status === 'running' && r.attempts === 1)).toBe(true);
    const byWorker = new Map(rows.map((r) => [r.key, r.worker]));
    for (const c of ra!.claimed) expect(byWorker.get(c.key)).toBe('a');
    for (const c of rb!.claimed) expect(byWorker.get(c.key)).toBe('b');
  });

  it('two processes creating the same new database at once apply each migration exactly once', async () => {
    for (let round = 0; round < 3; round++) {
      const file = join(tmp.dir, `race-${round}.sqlite`);
      const openers = [0, 1].map(() => start('opener.mjs', [file]));
      const next = (c: ChildProcess) => new Promise<unknown>((resolve) => c.once('message', resolve));
      await Promise.all(openers.map(next));
      const results = openers.map(
        (c) => next(c) as Promise<{ migrated: number[]; version: number; journal: string; error?: string }>,
      );
      for (const c of openers) c.send('go');
      const [a, b] = await Promise.all(results);
      await Promise.all(openers.map(exited));
      expect([a!.error, b!.error]).toEqual([undefined, undefined]);
      expect(a!.version).toBe(SCHEMA_VERSION);
      expect(b!.version).toBe(SCHEMA_VERSION);
      expect([...a!.migrated, ...b!.migrated].sort()).toEqual(MIGRATIONS.map((m) => m.version));
      expect([a!.journal, b!.journal]).toEqual(['wal', 'wal']);
      const check = ResultsStore.open(file, { readonly: true });
      expect(connectionOf(check).prepare('SELECT count(*) FROM schema_migrations').pluck().get()).toBe(
        MIGRATIONS.length,
      );
      check.close();
    }
  });

  it('a reader during a writer never fails with "database is locked"', async () => {
    const { sweepId } = seedTrials(20);
    const claim = tmp.store!.claimTrial({ sweepId, worker: 'w', leaseMs: 600_000, maxAttempts: 1 })!;
    tmp.store!.close();
    const writer = start('writer.mjs', [tmp.path, claim.key, claim.attempt, 2000, 60]);
    let committed = 0;
    let done = false;
    writer.on('message', (m: { committed: number; done?: boolean }) => {
      committed = m.committed;
      if (m.done) done = true;
    });
    let reads = 0;
    let lastSeen = 0;
    const errors: string[] = [];
    while (!done && writer.exitCode === null) {
      try {
        // Fresh read-only connections and long-lived ones both see committed rows, never a lock error.
        const ro = ResultsStore.open(tmp.path, { readonly: true });
        const n = connectionOf(ro).prepare('SELECT count(*) FROM metrics').pluck().get() as number;
        expect(listRuns(ro, { where: 'seed=0' })).toHaveLength(1);
        ro.close();
        expect(n).toBeGreaterThanOrEqual(lastSeen);
        lastSeen = n;
        reads++;
      } catch (e) {
        errors.push((e as Error).message);
      }
      await new Promise((r) => setImmediate(r));
    }
    await exited(writer);
    expect(errors).toEqual([]);
    expect(committed).toBe(120_000);
    expect(reads).toBeGreaterThan(5);
    const ro = new Database(tmp.path, { readonly: true });
    expect(ro.prepare('SELECT count(*) FROM metrics').pluck().get()).toBe(120_000);
    ro.close();
  }, 60_000);

  it('a writer killed with SIGKILL mid-writes loses no committed row and leaves an intact database', async () => {
    const { sweepId } = seedTrials(3);
    const claim = tmp.store!.claimTrial({ sweepId, worker: 'w', leaseMs: 600_000, maxAttempts: 1 })!;
    tmp.store!.close();
    const writer = start('writer.mjs', [tmp.path, claim.key, claim.attempt, 500, 100_000]);
    let committed = 0;
    await new Promise<void>((resolve) => {
      writer.on('message', (m: { committed: number }) => {
        committed = m.committed;
        if (committed >= 20_000) resolve();
      });
    });
    writer.kill('SIGKILL');
    const { signal } = await exited(writer);
    expect(signal).toBe('SIGKILL');
    // The kill landed while the writer was still writing (it would have written 50M rows).
    const db = new Database(tmp.path);
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const n = db.prepare('SELECT count(*) FROM metrics').pluck().get() as number;
      expect(n).toBeGreaterThanOrEqual(committed);
      expect(n % 500).toBe(0); // whole transactions only: no partial batch survives
      expect(n).toBeLessThan(100_000 * 500);
      // Every committed row is intact: seq 0..n-1 with the values the writer wrote.
      expect(db.prepare('SELECT min(seq), max(seq), count(DISTINCT seq) FROM metrics').raw().get()).toEqual([
        0,
        n - 1,
        n,
      ]);
      expect(
        db
          .prepare('SELECT value FROM metrics WHERE seq = ?')
          .pluck()
          .get(committed - 1),
      ).toBeCloseTo(1 / committed, 12);
    } finally {
      db.close();
    }
    // The writer can take over again (WAL recovered) and the store opens normally.
    const again = ResultsStore.open(tmp.path);
    expect(again.getTrial(claim.key)!.status).toBe('running');
    again.close();
  }, 60_000);
});

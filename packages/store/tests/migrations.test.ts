import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from '@flatrank/protocol';
import {
  ResultsStore,
  SCHEMA_VERSION,
  OLDEST_READABLE_VERSION,
  FLATRANK_APPLICATION_ID,
  resolveDbPath,
  DEFAULT_DB,
} from '../src/index.js';
import { MIGRATIONS, migrate } from '../src/schema.js';
import { connectionOf } from '../src/internal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-store-mig-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function schemaObjects(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    return (
      db
        .prepare(
          "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .all() as Array<Record<string, string>>
    ).map((r) => `${r.type} ${r.name} ${r.tbl_name} ${(r.sql ?? '').replace(/\s+/g, ' ')}`);
  } finally {
    db.close();
  }
}

function expectStoreError(fn: () => unknown, code: string): StoreError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(StoreError);
    expect((e as StoreError).code).toBe(code);
    return e as StoreError;
  }
  throw new Error(`expected StoreError ${code}`);
}

describe('migrations', () => {
  it('has at least two versions, numbered 1..N', () => {
    expect(MIGRATIONS.length).toBeGreaterThanOrEqual(2);
    MIGRATIONS.forEach((m, i) => expect(m.version).toBe(i + 1));
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(OLDEST_READABLE_VERSION).toBeGreaterThanOrEqual(1);
    expect(OLDEST_READABLE_VERSION).toBeLessThanOrEqual(SCHEMA_VERSION);
  });

  it('creates a fresh database at the latest version with the flatrank marker, WAL and recorded steps', () => {
    const file = join(dir, 'fresh.sqlite');
    const store = ResultsStore.open(file, { create: true });
    expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(connectionOf(store).pragma('application_id', { simple: true })).toBe(FLATRANK_APPLICATION_ID);
    expect(connectionOf(store).pragma('journal_mode', { simple: true })).toBe('wal');
    expect(connectionOf(store).pragma('foreign_keys', { simple: true })).toBe(1);
    expect(
      connectionOf(store).prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all(),
    ).toEqual(MIGRATIONS.map((m) => m.version));
    for (const t of [
      'sweeps',
      'trials',
      'trial_dependencies',
      'sweep_trials',
      'metrics',
      'layers',
      'results',
      'artifacts',
      'allocations',
      'trial_groups',
    ])
      expect(
        connectionOf(store)
          .prepare("SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?")
          .pluck()
          .get(t),
      ).toBe(1);
    for (const v of [
      'trial_summary',
      'sweep_trial_summary',
      'trial_layers',
      'latest_metrics',
      'sweep_progress',
      'trial_allocations',
      'allocation_layers',
    ])
      expect(
        connectionOf(store)
          .prepare("SELECT count(*) FROM sqlite_master WHERE type='view' AND name=?")
          .pluck()
          .get(v),
      ).toBe(1);
    store.close();
    // Re-opening applies nothing twice.
    const again = ResultsStore.open(file);
    expect(connectionOf(again).prepare('SELECT count(*) FROM schema_migrations').pluck().get()).toBe(
      MIGRATIONS.length,
    );
    again.close();
  });

  for (const from of MIGRATIONS.map((m) => m.version).filter((v) => v < SCHEMA_VERSION)) {
    it(`upgrades a populated v${from} database to v${SCHEMA_VERSION}, keeping every row, with the same schema as a fresh one`, () => {
      const old = join(dir, `v${from}.sqlite`);
      const raw = new Database(old);
      migrate(raw, from, 1000);
      expect(raw.pragma('user_version', { simple: true })).toBe(from);
      // Rows written by a v1 coordinator (the v1 tables are a subset of every later version).
      raw
        .prepare(
          "INSERT INTO sweeps (id, name, spec_text, spec_resolved, spec_hash, created_at, updated_at) VALUES (1, 'old', 'x', '{}', 'h', 1, 1)",
        )
        .run();
      raw
        .prepare(
          `INSERT INTO trials (id, sweep_id, key, config, model, dataset, method, decomposition, seed, lr, epochs, batch_size, status, attempts, created_at)
           VALUES (1, 1, ?, '{"model":"lenet5"}', 'lenet5', 'mnist', 'finetune', 'cp', 3, 0.1, 1, 32, 'succeeded', 1, 1)`,
        )
        .run('a'.repeat(64));
      raw.prepare('INSERT INTO sweep_trials (sweep_id, trial_id) VALUES (1, 1)').run();
      raw
        .prepare(
          "INSERT INTO metrics (trial_id, attempt, seq, step, epoch, phase, name, value) VALUES (1, 1, 0, 10, 0, 'eval', 'accuracy', 0.75)",
        )
        .run();
      raw
        .prepare(
          'INSERT INTO results (trial_id, attempt, accuracy_final, params_before, params_after, macs_before, macs_after, params_ratio, macs_ratio, wall_seconds, steps, epochs, created_at) VALUES (1, 1, 0.75, 100, 25, 1000, 500, 4, 2, 1.5, 10, 1, 1)',
        )
        .run();
      raw.close();

      // A read-only open never migrates: below the oldest readable version it says what to do,
      // from it on it reads the database as it is.
      if (from < OLDEST_READABLE_VERSION)
        expectStoreError(() => ResultsStore.open(old, { readonly: true }), 'DB_OUTDATED');
      else {
        const reader = ResultsStore.open(old, { readonly: true });
        expect(reader.schemaVersion()).toBe(from);
        expect(reader.migrated).toEqual([]);
        expect(reader.listTrials().map((t) => t.key)).toEqual(['a'.repeat(64)]);
        reader.close();
      }

      const store = ResultsStore.open(old); // the writer migrates
      expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
      expect(
        connectionOf(store).prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all(),
      ).toEqual(MIGRATIONS.map((m) => m.version));
      const row = connectionOf(store)
        .prepare(
          'SELECT key, sweep, method, decomposition, seed, accuracy_final, params_ratio FROM trial_summary',
        )
        .get();
      expect(row).toEqual({
        key: 'a'.repeat(64),
        sweep: 'old',
        method: 'finetune',
        decomposition: 'cp',
        seed: 3,
        accuracy_final: 0.75,
        params_ratio: 4,
      });
      expect(connectionOf(store).prepare('SELECT name, value FROM latest_metrics').get()).toEqual({
        name: 'accuracy',
        value: 0.75,
      });
      // Migration 4 counted the existing memberships into sweep_status_counts.
      expect(store.trialCounts(1)).toMatchObject({ succeeded: 1, pending: 0 });
      // Migration 9: the trial's report grouping, from its config.
      expect(
        connectionOf(store)
          .prepare('SELECT g.shape, t.start_trial_key FROM trials t JOIN trial_groups g ON g.id = t.group_id')
          .get(),
      ).toEqual({ shape: '{"model":"lenet5"}', start_trial_key: null });
      // Migration 5: existing memberships are points of the latest spec; the rebuilt view agrees.
      expect(connectionOf(store).prepare('SELECT active FROM sweep_trials').pluck().all()).toEqual([1]);
      expect(
        connectionOf(store).prepare('SELECT trials, succeeded, pending FROM sweep_progress').get(),
      ).toEqual({
        trials: 1,
        succeeded: 1,
        pending: 0,
      });
      store.close();

      const fresh = join(dir, 'fresh.sqlite');
      ResultsStore.open(fresh, { create: true }).close();
      expect(schemaObjects(old)).toEqual(schemaObjects(fresh));
    });
  }

  it('refuses a database newer than the code (DB_TOO_NEW) without modifying it', () => {
    const file = join(dir, 'new.sqlite');
    ResultsStore.open(file, { create: true }).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    const e = expectStoreError(() => ResultsStore.open(file), 'DB_TOO_NEW');
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/Upgrade flatrank/);
    expectStoreError(() => ResultsStore.open(file, { readonly: true }), 'DB_TOO_NEW');
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION + 1);
    check.close();
  });
});

describe('opening', () => {
  it('a missing file is DB_MISSING (read or write without create) and is not created', () => {
    const file = join(dir, 'nope.sqlite');
    const e = expectStoreError(() => ResultsStore.open(file), 'DB_MISSING');
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/--db/);
    expectStoreError(() => ResultsStore.open(file, { readonly: true }), 'DB_MISSING');
    expect(existsSync(file)).toBe(false);
  });

  it('create makes missing parent directories', () => {
    const file = join(dir, 'runs', 'a', 'flatrank.sqlite');
    const s = ResultsStore.open(file, { create: true });
    expect(s.path).toBe(file);
    s.close();
    expect(existsSync(file)).toBe(true);
  });

  it('a non-SQLite file is DB_NOT_FLATRANK', () => {
    const file = join(dir, 'notes.txt');
    writeFileSync(
      file,
      'hello, this is not a database at all, but it is long enough to have a header'.repeat(10),
    );
    const e = expectStoreError(() => ResultsStore.open(file, { readonly: true }), 'DB_NOT_FLATRANK');
    expect(e.message).toContain(file);
    expectStoreError(() => ResultsStore.open(file, { create: true }), 'DB_NOT_FLATRANK');
  });

  it("another application's SQLite database is DB_NOT_FLATRANK, even with create, and is left untouched", () => {
    const file = join(dir, 'other.sqlite');
    const raw = new Database(file);
    raw.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)');
    raw.close();
    expectStoreError(() => ResultsStore.open(file, { readonly: true }), 'DB_NOT_FLATRANK');
    expectStoreError(() => ResultsStore.open(file), 'DB_NOT_FLATRANK');
    expectStoreError(() => ResultsStore.open(file, { create: true }), 'DB_NOT_FLATRANK');
    const check = new Database(file, { readonly: true });
    expect(check.prepare("SELECT name FROM sqlite_master WHERE type='table'").pluck().all()).toEqual([
      'notes',
    ]);
    expect(check.pragma('user_version', { simple: true })).toBe(0);
    check.close();
  });

  it('an empty file is not a flatrank database for readers, but create initialises it', () => {
    const file = join(dir, 'empty.sqlite');
    writeFileSync(file, '');
    expectStoreError(() => ResultsStore.open(file, { readonly: true }), 'DB_NOT_FLATRANK');
    const s = ResultsStore.open(file, { create: true });
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    s.close();
  });

  it('resolveDbPath: flag, then FLATRANK_DB, then ./flatrank.sqlite', () => {
    expect(resolveDbPath('x.sqlite', {})).toBe(join(process.cwd(), 'x.sqlite'));
    expect(resolveDbPath(undefined, { FLATRANK_DB: '/tmp/y.sqlite' })).toBe('/tmp/y.sqlite');
    expect(resolveDbPath(undefined, {})).toBe(join(process.cwd(), DEFAULT_DB));
  });
});

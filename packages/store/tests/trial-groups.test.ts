/**
 * Migration 9: each trial's report grouping (its configuration's shape: the config without seed and
 * start trial key, stored once per group, and its start trial key) is stored at write time; report
 * reads use it, and compute it on a schema-8 database.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { trialKey, type TrialConfig } from '@flatrank/protocol';
import {
  createTempDb,
  populateDashboardDb,
  populateTempDb,
  tempDbTrialConfig,
  type TempDb,
} from '@flatrank/testing';
import { ResultsStore, SCHEMA_VERSION, createDatabaseAtVersion, type Membership } from '../src/index.js';
import { connectionOf } from '../src/internal.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

const OLD_SHAPE = `json_remove(config, '$.seed', '$.start.trialKey')`;
const OLD_START_KEY = `json_extract(config, '$.start.trialKey')`;

interface Grouping {
  key: string;
  group_id: number | null;
  shape: string | null;
  start_trial_key: string | null;
}

/** Every trial's group, its shape and its start trial key, by trial key. */
function groupings(db: Database.Database): Map<string, Grouping> {
  const rows = db
    .prepare(
      'SELECT t.key, t.group_id, g.shape, t.start_trial_key FROM trials t LEFT JOIN trial_groups g ON g.id = t.group_id ORDER BY t.id',
    )
    .all() as Grouping[];
  return new Map(rows.map((r) => [r.key, r]));
}

/** Two seeds of one finetune configuration, another configuration, and a trial that starts from seed 0. */
function fixtureConfigs(): { a0: TrialConfig; a1: TrialConfig; b0: TrialConfig; child: TrialConfig } {
  const a0 = tempDbTrialConfig({ seed: 0 });
  const a1 = tempDbTrialConfig({ seed: 1 });
  const b0 = tempDbTrialConfig({
    seed: 0,
    compression: { decomposition: 'tucker2', rank: { kind: 'ratio', ratio: 4 } },
  });
  const child = tempDbTrialConfig({ seed: 3, start: { kind: 'trial', trialKey: trialKey(a0) } });
  return { a0, a1, b0, child };
}

/**
 * A schema-8 copy of `file` (closed, checkpointed): migration 9's columns dropped and its step
 * forgotten, the same rows otherwise, so the readers' schema-8 path reads exactly the same data.
 */
function schema8Copy(file: string, to: string): string {
  copyFileSync(file, to);
  const raw = new Database(to);
  try {
    raw.exec(`ALTER TABLE trials DROP COLUMN start_trial_key;
              ALTER TABLE trials DROP COLUMN group_id;
              DROP TABLE trial_groups;
              DELETE FROM schema_migrations WHERE version = 9;
              PRAGMA user_version = 8;`);
  } finally {
    raw.close();
  }
  return to;
}

/** Every report read of every sweep, each membership, and the start lookup of every trial. */
function reportReads(store: ResultsStore): unknown {
  const keys = store.listTrials().map((t) => t.key);
  return store.listSweeps().map((s) =>
    (['current', 'all', 'retired'] as Membership[]).map((membership) => {
      const lookup = store.reportStartLookup(s.id, { membership });
      return {
        sweep: s.name,
        membership,
        rows: [...store.iterateReportTrials(s.id, { membership })],
        starts: keys.map((k) => lookup(k) ?? null),
      };
    }),
  );
}

describe('trial groups (migration 9)', () => {
  it('groups the trials a schema-8 database already has, and keeps their start trial keys', () => {
    tmp = createTempDb({ create: false });
    const file = createDatabaseAtVersion(join(tmp.dir, 'v8.sqlite'), 8);
    const { a0, a1, b0, child } = fixtureConfigs();
    const raw = new Database(file);
    raw
      .prepare(
        "INSERT INTO sweeps (id, name, spec_text, spec_resolved, spec_hash, created_at, updated_at) VALUES (1, 's', '', '{}', 'h', 0, 0)",
      )
      .run();
    const insert = raw.prepare(
      `INSERT INTO trials (sweep_id, key, config, model, dataset, method, seed, lr, epochs, batch_size, created_at)
       VALUES (1, ?, ?, 'lenet5', 'mnist', 'finetune', ?, 0.1, 1, 32, 0)`,
    );
    // As the schema-8 writer stored them: JSON.stringify of the resolved config.
    for (const c of [a0, a1, b0, child]) insert.run(trialKey(c), JSON.stringify(c), c.seed);
    insert.run('f'.repeat(64), 'not json', 9); // never written by the store; must not stop the migration
    raw.close();

    const store = ResultsStore.open(file);
    try {
      expect(store.migrated).toEqual([9]);
      const db = connectionOf(store);
      const g = groupings(db);
      const of = (c: TrialConfig) => g.get(trialKey(c))!;
      // The seeds of one configuration share a key: the config's JSON without its seed.
      const { seed: _seed, ...shapeA } = a0;
      expect(of(a0).shape).toBe(JSON.stringify(shapeA));
      expect(of(a1).group_id).toBe(of(a0).group_id);
      expect(of(b0).group_id).not.toBe(of(a0).group_id);
      expect(of(b0).shape).not.toBe(of(a0).shape);
      // The start trial's key is kept apart, and is not in the shape.
      expect(of(child).start_trial_key).toBe(trialKey(a0));
      expect(JSON.parse(of(child).shape!)).toMatchObject({ start: { kind: 'trial' } });
      expect(JSON.parse(of(child).shape!).start).not.toHaveProperty('trialKey');
      expect(of(a0).start_trial_key).toBeNull();
      expect(g.get('f'.repeat(64))).toMatchObject({ group_id: null, start_trial_key: null });
      // One group per shape, numbered in the order of their first trials.
      expect(db.prepare('SELECT id FROM trial_groups ORDER BY id').pluck().all()).toEqual([1, 2, 3]);
      expect([a0, b0, child].map((c) => of(c).group_id)).toEqual([1, 2, 3]);
      // Exactly what the readers computed at read time before.
      expect(
        db
          .prepare(
            `SELECT count(*) FROM trials t LEFT JOIN trial_groups g ON g.id = t.group_id
             WHERE json_valid(config) AND (g.shape IS NOT ${OLD_SHAPE} OR start_trial_key IS NOT ${OLD_START_KEY})`,
          )
          .pluck()
          .get(),
      ).toBe(0);

      // A seed inserted by the upgraded writer joins its configuration's group.
      const a2 = tempDbTrialConfig({ seed: 2 });
      store.insertTrials(1, [{ key: trialKey(a2), config: a2 }]);
      expect(groupings(db).get(trialKey(a2))).toEqual({ ...of(a0), key: trialKey(a2) });
    } finally {
      store.close();
    }
  });

  it('sets both on every insert: seeds of one configuration share a group, other configurations differ', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { id } = store.upsertSweep({ name: 's', specText: '', specResolved: null, specHash: '' });
    const { a0, a1, b0, child } = fixtureConfigs();
    store.insertTrials(
      id,
      [a0, a1, b0, child].map((config) => ({ key: trialKey(config), config })),
    );
    const db = connectionOf(store);
    const g = groupings(db);
    const of = (c: TrialConfig) => g.get(trialKey(c))!;
    expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(of(a0).group_id).not.toBeNull();
    expect(of(a1).group_id).toBe(of(a0).group_id);
    expect(of(b0).group_id).not.toBe(of(a0).group_id);
    expect(of(child).group_id).not.toBe(of(a0).group_id);
    expect([of(a0), of(a1), of(b0)].map((r) => r.start_trial_key)).toEqual([null, null, null]);
    expect(of(child).start_trial_key).toBe(trialKey(a0));
    // A seed of the child's configuration that starts from another trial shares the child's group.
    const sibling = tempDbTrialConfig({ seed: 4, start: { kind: 'trial', trialKey: trialKey(a1) } });
    store.insertTrials(id, [{ key: trialKey(sibling), config: sibling }]);
    expect(groupings(db).get(trialKey(sibling))).toMatchObject({
      group_id: of(child).group_id,
      start_trial_key: trialKey(a1),
    });
    // Inserting a trial again (linked to another sweep) adds no group.
    const groups = db.prepare('SELECT count(*) FROM trial_groups').pluck().get();
    expect(groups).toBe(3);
    const { id: other } = store.upsertSweep({
      name: 'other',
      specText: '',
      specResolved: null,
      specHash: '',
    });
    expect(store.insertTrials(other, [{ key: trialKey(a0), config: a0 }])).toEqual({
      inserted: 0,
      existing: 1,
    });
    expect(db.prepare('SELECT count(*) FROM trial_groups').pluck().get()).toBe(groups);
  });

  it('report rows and start lookups are the same from the stored groups as from the old expressions (schema 8, read-only)', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    populateDashboardDb(store);
    const chain = populateTempDb(store, { sweep: 'chain', seeds: 2, succeeded: 3 });
    // Fine-tunes that start from trials of the sweep (two seeds: two start trials), and one retired point.
    const starts = [0, 1].map((seed) =>
      tempDbTrialConfig({ seed, start: { kind: 'trial', trialKey: chain.keys[seed]! } }),
    );
    store.insertTrials(
      chain.sweepId,
      starts.map((config) => ({ key: trialKey(config), config })),
    );
    store.syncSweepTrials(
      chain.sweepId,
      [...chain.configs.slice(1), ...starts].map((config) => ({ key: trialKey(config), config })),
    );
    // A trial written by SQL outside the store has no group: the readers compute its shape and start.
    connectionOf(store)
      .prepare('UPDATE trials SET group_id = NULL, start_trial_key = NULL WHERE key = ?')
      .run(trialKey(starts[1]!));
    const stored = reportReads(store);
    store.close();

    const old = schema8Copy(tmp.path, join(tmp.dir, 'v8.sqlite'));
    // Indistinguishable from a database created at schema 8 (columns and objects alike).
    const fresh8 = createDatabaseAtVersion(join(tmp.dir, 'fresh8.sqlite'), 8);
    const objects = (file: string) => {
      const db = new Database(file, { readonly: true });
      try {
        return (
          db
            .prepare(
              "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .all() as Array<Record<string, string>>
        ).map(
          (r) => `${r.type} ${r.name} ${(r.sql ?? '').replace(/\s+/g, ' ').replace(/ ?([(),]) ?/g, '$1')}`,
        );
      } finally {
        db.close();
      }
    };
    expect(objects(old)).toEqual(objects(fresh8));

    // A reader opens the schema-8 database as it is (never migrates) and reads the same rows.
    const reader = ResultsStore.open(old, { readonly: true });
    try {
      expect(reader.schemaVersion()).toBe(8);
      expect(reportReads(reader)).toEqual(stored);
    } finally {
      reader.close();
    }
    expect(new Database(old, { readonly: true }).pragma('user_version', { simple: true })).toBe(8);
    // And what the report groups on is really there: shared by seeds, distinct per configuration.
    const rows = (stored as Array<Array<{ membership: string; rows: Array<{ shape: string }> }>>)
      .flat()
      .filter((r) => r.membership === 'all')
      .flatMap((r) => r.rows);
    expect(rows.length).toBeGreaterThan(30);
    expect(new Set(rows.map((r) => r.shape)).size).toBeLessThan(rows.length);
    expect(new Set(rows.map((r) => r.shape)).size).toBeGreaterThan(5);
  });
});

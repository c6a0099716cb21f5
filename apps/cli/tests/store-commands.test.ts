// End to end: flatrank runs / show / query / export on a populated temporary database, through the
// real program (argument parsing, typed errors -> exit codes).
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTempDb, populateTempDb, type PopulatedSweep, type TempDb } from '@flatrank/testing';
import { SCHEMA_VERSION, createDatabaseAtVersion } from '@flatrank/store';
import { runCli, type CliResult } from './helpers.js';

let tmp: TempDb;
let sweep: PopulatedSweep;
beforeAll(() => {
  tmp = createTempDb();
  sweep = populateTempDb(tmp.store!, { sweep: 'grid', seeds: 2, succeeded: 3 });
  tmp.store!.close();
});
afterAll(() => tmp.cleanup());

const cli = (...args: string[]): Promise<CliResult> => runCli(args);

describe('flatrank runs', () => {
  it('lists every trial as a table', async () => {
    const r = await cli('runs', '--db', tmp.path);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^key\s+sweep\s+status/);
    expect(r.out).toContain('(8 rows)');
    expect(r.out.match(/succeeded/g)).toHaveLength(3);
    // Filter to the pending trials only: their result columns are all empty and hidden in the table.
    const pending = await cli('runs', '--db', tmp.path, '--status', 'pending');
    expect(pending.out).not.toContain('accuracy_final');
    expect(pending.out).toContain('(5 rows)');
    const pendingCsv = await cli('runs', '--db', tmp.path, '--status', 'pending', '--format', 'csv');
    expect(pendingCsv.out.split('\r\n')[0]).toContain('accuracy_final');
  });

  it('filters with --where / --status / --sweep and prints JSON', async () => {
    const r = await cli(
      'runs',
      '--db',
      tmp.path,
      '--where',
      'method=distort, decomposition=cp, seed=1',
      '--format',
      'json',
    );
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      method: 'distort',
      decomposition: 'cp',
      seed: 1,
      rank_policy: 'rank=4',
      distortion_interval: 200,
      status: 'pending',
    });
    const ok = JSON.parse(
      (await cli('runs', '--db', tmp.path, '--status', 'succeeded', '--sweep', 'grid', '--format', 'json'))
        .out,
    ) as Array<Record<string, unknown>>;
    expect(ok).toHaveLength(3);
    expect(ok.every((x) => typeof x.accuracy_final === 'number' && x.params_ratio === 2)).toBe(true);
    const ratio = JSON.parse(
      (await cli('runs', '--db', tmp.path, '--where', 'target_ratio>=2,seed=0|1', '--format', 'json')).out,
    ) as unknown[];
    expect(ratio).toHaveLength(4); // the tucker2 trials (cp uses a fixed rank)
  });

  it('CSV output', async () => {
    const r = await cli('runs', '--db', tmp.path, '--format', 'csv', '--where', 'seed=0');
    const lines = r.out.trim().split(/\r\n/);
    expect(lines[0]!.startsWith('key,sweep,status,attempts,model')).toBe(true);
    expect(lines).toHaveLength(5);
  });

  it('--only-changed shows just the config keys that differ', async () => {
    const r = await cli(
      'runs',
      '--db',
      tmp.path,
      '--only-changed',
      '--format',
      'json',
      '--where',
      'method=finetune',
    );
    const rows = JSON.parse(r.out) as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(4);
    const keys = Object.keys(rows[0]!);
    expect(keys).toContain('seed');
    expect(keys).toContain('compression.decomposition');
    expect(keys).toContain('compression.rank.kind');
    expect(keys).not.toContain('model');
    expect(keys).not.toContain('method');
    expect(keys).not.toContain('training.lr');
  });

  it('an unknown --where key is a usage error listing the allowed keys', async () => {
    const r = await cli('runs', '--db', tmp.path, '--where', 'methd=cp');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown key "methd"; allowed: model, dataset, method/);
    const inj = await cli('runs', '--db', tmp.path, '--where', "worker=x' OR 1=1 --");
    expect(inj.code).toBe(0); // bound as a value, not SQL: matches nothing
    expect(inj.out).toContain('(0 rows)');
    expect((await cli('runs', '--db', tmp.path, '--status', 'done')).code).toBe(2);
    expect((await cli('runs', '--db', tmp.path, '--where', 'seed=one')).err).toMatch(/seed must be a number/);
  });
});

describe('flatrank show', () => {
  it('prints config, environment, result, layers and metric history for a key prefix', async () => {
    const r = await cli('show', sweep.keys[0]!.slice(0, 10), '--db', tmp.path);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`trial ${sweep.keys[0]}`);
    expect(r.out).toMatch(/status\s+succeeded/);
    expect(r.out).toMatch(/"model": "lenet5"/);
    expect(r.out).toMatch(/git\s+0123456789abcdef/);
    expect(r.out).toMatch(/accuracy final\s+0\.8/);
    expect(r.out).toMatch(/layers \(1\):\nlayer\s+decomposition/);
    expect(r.out).toMatch(/conv2\s+tucker2/);
    expect(r.out).toMatch(/step\s+epoch\s+train\/loss\s+eval\/accuracy/);
    const json = JSON.parse(
      (await cli('show', sweep.keys[0]!, '--db', tmp.path, '--format', 'json')).out,
    ) as { metrics: unknown[]; layers: unknown[] };
    expect(json.metrics).toHaveLength(6);
    expect(json.layers).toHaveLength(1);
  });

  it('an unknown trial is a clear error', async () => {
    const r = await cli('show', 'ffffffff', '--db', tmp.path);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no trial with key or prefix "ffffffff"/);
  });
});

describe('flatrank query', () => {
  it('runs a read-only query', async () => {
    const r = await cli(
      'query',
      '--db',
      tmp.path,
      'SELECT method, count(*) AS n FROM trial_summary GROUP BY method ORDER BY method',
      '--format',
      'json',
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual([
      { method: 'distort', n: 4 },
      { method: 'finetune', n: 4 },
    ]);
  });

  it('refuses writes with exit code 6 and leaves the database unchanged', async () => {
    for (const sql of [
      "UPDATE trials SET status = 'cancelled'",
      'DELETE FROM results',
      'DROP VIEW trial_summary',
      'CREATE TABLE x (a)',
      "INSERT INTO sweeps (name, spec_text, spec_resolved, spec_hash, created_at, updated_at) VALUES ('x','','','',0,0)",
      "ATTACH DATABASE 'other.sqlite' AS o",
      'PRAGMA user_version = 99',
    ]) {
      const r = await cli('query', '--db', tmp.path, sql);
      expect(r.code, sql).toBe(6);
      expect(r.err, sql).toMatch(/query refused: flatrank query is read-only/);
    }
    const n = await cli(
      'query',
      '--db',
      tmp.path,
      "SELECT count(*) AS n FROM trials WHERE status = 'succeeded'",
      '--format',
      'csv',
    );
    expect(n.out).toBe('n\r\n3\r\n');
    expect((await cli('query', '--db', tmp.path, 'SELECT 1; SELECT 2')).code).toBe(2);
    expect((await cli('query', '--db', tmp.path, 'SELEC nothing')).code).toBe(2);
  });
});

describe('flatrank export', () => {
  it('writes a sweep as CSV to a file (atomically) and as JSON to stdout', async () => {
    const out = join(tmp.dir, 'grid.csv');
    const r = await cli('export', '--db', tmp.path, '--sweep', 'grid', '--format', 'csv', '--out', out);
    expect(r.code).toBe(0);
    const lines = readFileSync(out, 'utf8').trim().split(/\r\n/);
    expect(lines).toHaveLength(9);
    expect(lines[0]).toMatch(/^key,status,attempts,config\.version,config\.model,config\.dataset\.name,/);
    expect(lines[0]).toContain('config.distortion.interval');
    expect(lines[0]!.split(',')).not.toContain('config.distortion');
    expect(lines[0]).toContain('accuracy_final');
    expect(readdirSync(tmp.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const json = JSON.parse(
      (await cli('export', '--db', tmp.path, '--sweep', 'grid', '--format', 'json')).out,
    ) as Array<Record<string, unknown>>;
    expect(json).toHaveLength(8);
    expect(json[0]).toMatchObject({
      'config.model': 'lenet5',
      'config.training.lr': 0.05,
      status: 'succeeded',
    });
    expect((await cli('export', '--db', tmp.path, '--sweep', 'nope', '--format', 'csv')).err).toMatch(
      /no sweep named "nope"; sweeps in this database: grid/,
    );
    expect((await cli('export', '--db', tmp.path, '--sweep', 'grid', '--format', 'table')).code).toBe(2);
  });
});

describe('database errors on read commands', () => {
  it('a missing database is exit 6 and is not created', async () => {
    const missing = join(tmp.dir, 'missing.sqlite');
    for (const args of [['runs'], ['show', 'abcd'], ['query', 'SELECT 1'], ['export', '--sweep', 'grid']]) {
      const r = await cli(...args, '--db', missing);
      expect(r.code, args.join(' ')).toBe(6);
      expect(r.err).toContain(`no flatrank database at ${missing}`);
    }
    expect(existsSync(missing)).toBe(false);
  });

  it('FLATRANK_DB is the default, and a non-flatrank file is refused', async () => {
    const junk = join(tmp.dir, 'junk.sqlite');
    writeFileSync(junk, 'not a database '.repeat(100));
    const prev = process.env.FLATRANK_DB;
    process.env.FLATRANK_DB = junk;
    try {
      const r = await cli('runs');
      expect(r.code).toBe(6);
      expect(r.err).toMatch(/is not a flatrank database/);
      process.env.FLATRANK_DB = tmp.path;
      expect((await cli('runs', '--format', 'json')).code).toBe(0);
    } finally {
      if (prev === undefined) delete process.env.FLATRANK_DB;
      else process.env.FLATRANK_DB = prev;
    }
  });
});

describe('flatrank migrate', () => {
  it('upgrades an older database that read commands refuse, and never creates one', async () => {
    const old = join(tmp.dir, 'old.sqlite');
    createDatabaseAtVersion(old, 1);
    const refused = await cli('runs', '--db', old);
    expect(refused.code).toBe(6);
    expect(refused.err).toContain(
      `has schema version 1; this flatrank needs ${SCHEMA_VERSION}. Run "flatrank migrate --db ${old}"`,
    );
    const m = await cli('migrate', '--db', old);
    expect(m.code).toBe(0);
    expect(m.out).toContain(`migrated from schema version 1 to ${SCHEMA_VERSION}`);
    expect((await cli('migrate', '--db', old)).out).toContain(`already at schema version ${SCHEMA_VERSION}`);
    expect((await cli('runs', '--db', old)).out).toContain('(0 rows)');
    const missing = join(tmp.dir, 'never.sqlite');
    expect((await cli('migrate', '--db', missing)).code).toBe(6);
    expect(existsSync(missing)).toBe(false);
  });
});

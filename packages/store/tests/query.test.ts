import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreError, ValidationError } from '@flatrank/protocol';
import { createTempDb, populateTempDb, type TempDb } from '@flatrank/testing';
import {
  ResultsStore,
  changedConfigKeys,
  exportRows,
  listRuns,
  parseWhere,
  runUserQuery,
  trialDetail,
} from '../src/index.js';

let tmp: TempDb;
beforeAll(() => {
  tmp = createTempDb();
  populateTempDb(tmp.store!, { seeds: 3, succeeded: 4 });
});
afterAll(() => tmp.cleanup());

describe('parseWhere', () => {
  it('binds every value as a parameter on a known column', () => {
    expect(parseWhere('method=distort, seed=1')).toEqual({
      sql: 't.method = ? AND t.seed = ?',
      params: ['distort', 1],
    });
    expect(parseWhere('S_D>=100,lr<0.1,seed=1|2,decomposition!=null')).toEqual({
      sql: 't.distortion_interval >= ? AND t.lr < ? AND t.seed IN (?, ?) AND t.decomposition IS NOT NULL',
      params: [100, 0.1, 1, 2],
    });
    const evil = parseWhere("worker=x' OR '1'='1");
    expect(evil.sql).toBe('t.worker = ?');
    expect(evil.params).toEqual(["x' OR '1'='1"]);
    expect(parseWhere(undefined)).toEqual({ sql: '', params: [] });
  });

  it('rejects unknown keys (listing the allowed ones), bad numbers and bad operators', () => {
    const bad = (w: string, re: RegExp) => {
      try {
        parseWhere(w);
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        expect((e as ValidationError).field).toBe('--where');
        expect((e as Error).message).toMatch(re);
        return;
      }
      throw new Error(`accepted ${w}`);
    };
    bad('sql=1; DROP TABLE trials', /unknown key "sql"; allowed: model, dataset, method, decomposition/);
    bad('seed=abc', /seed must be a number/);
    bad('method>cp', /method is text; use = or !=/);
    bad('seed', /is not key=value/);
    bad('status=done', /status: unknown value "done"; allowed: pending, running/);
    bad(
      'method=cp',
      /method: unknown value "cp"; allowed: baseline, distort, finetune, posttrain, trp \("cp" is a decomposition: use decomposition=cp\)/,
    );
    bad('model=resnet21', /model: unknown value "resnet21"; allowed: lenet5/);
    bad('seed>null', /null can only be used alone/);
  });
});

describe('read helpers', () => {
  it('listRuns filters on axes and sweep; results come from the summary view', () => {
    const store = ResultsStore.open(tmp.path, { readonly: true });
    try {
      expect(listRuns(store)).toHaveLength(12);
      const cp = listRuns(store, { where: 'decomposition=cp', sweep: 'temp-sweep' });
      expect(cp).toHaveLength(6);
      expect(cp.every((r) => r.rank_policy === 'rank=4' && r.target_ratio === null)).toBe(true);
      const acc = listRuns(store, { status: 'succeeded' }).map((r) => r.accuracy_final as number);
      expect(acc).toHaveLength(4);
      acc.forEach((a, i) => expect(a).toBeCloseTo(0.8 + i / 100, 12));
      expect(() => listRuns(store, { sweep: 'nope' })).toThrow(
        /no sweep named "nope"; sweeps in this database: temp-sweep/,
      );
    } finally {
      store.close();
    }
  });

  it('changedConfigKeys keeps only differing paths (null-vs-object keeps the leaves)', () => {
    expect(
      changedConfigKeys([
        { a: 1, b: { c: 2, d: 3 } },
        { a: 1, b: { c: 2, d: 4 } },
      ]),
    ).toEqual(['b.d']);
    expect(
      changedConfigKeys([
        { x: null, y: 1 },
        { x: { i: 1 }, y: 1 },
      ]),
    ).toEqual(['x.i']);
    expect(changedConfigKeys([{ a: [1, 2] }, { a: [1, 2] }])).toEqual([]);
  });

  it('trialDetail and exportRows', () => {
    const store = ResultsStore.open(tmp.path, { readonly: true });
    try {
      const first = listRuns(store)[0]!;
      const d = trialDetail(store, String(first.key).slice(0, 8));
      expect(d.sweeps).toEqual(['temp-sweep']);
      expect(d.layers).toHaveLength(1);
      expect(d.metrics.map((m) => m.name)).toEqual(['loss', 'loss', 'loss', 'loss', 'loss', 'accuracy']);
      expect(d.result).toMatchObject({ accuracy_final: 0.8, params_ratio: 2 });
      const ex = exportRows(store, 'temp-sweep');
      expect(ex.rows).toHaveLength(12);
      expect(ex.columns.filter((c) => c.startsWith('config.')).length).toBeGreaterThan(20);
      for (const r of ex.rows) expect(Object.keys(r).sort()).toEqual([...ex.columns].sort());
    } finally {
      store.close();
    }
  });
});

describe('runUserQuery', () => {
  it('runs queries with parameters and returns typed rows', () => {
    const r = runUserQuery(
      tmp.path,
      'SELECT method, decomposition, count(*) AS n, avg(accuracy_final) AS acc FROM trial_summary WHERE seed = ? GROUP BY 1, 2 ORDER BY 1, 2',
      [0],
    );
    expect(r.columns).toEqual(['method', 'decomposition', 'n', 'acc']);
    expect(r.rows).toHaveLength(4);
    expect(r.rows[0]).toMatchObject({ method: 'distort', decomposition: 'cp', n: 1 });
    const dup = runUserQuery(
      tmp.path,
      'SELECT t.id, r.id, t.key FROM trials t JOIN results r ON r.trial_id = t.id ORDER BY t.id LIMIT 1',
    );
    expect(dup.columns).toEqual(['id', 'id_2', 'key']);
    expect(typeof dup.rows[0]!.id_2).toBe('number');
  });

  it('refuses writes (statement check and read-only connection) and keeps data intact', () => {
    for (const sql of [
      'DELETE FROM metrics',
      'UPDATE results SET accuracy_final = 1',
      "REPLACE INTO artifacts (trial_id, attempt, kind, path, created_at) VALUES (1,1,'a','b',0)",
      'VACUUM',
      "ATTACH ':memory:' AS m",
      'PRAGMA journal_mode = DELETE',
    ]) {
      try {
        runUserQuery(tmp.path, sql);
        throw new Error(`accepted ${sql}`);
      } catch (e) {
        expect(e, sql).toBeInstanceOf(StoreError);
        expect((e as StoreError).code).toBe('WRITE_REFUSED');
        expect((e as Error).message).toContain(tmp.path);
      }
    }
    expect(runUserQuery(tmp.path, 'SELECT count(*) AS n FROM metrics').rows[0]!.n).toBe(24);
    expect(() => runUserQuery(tmp.path, '')).toThrow(ValidationError);
    expect(() => runUserQuery(tmp.path, 'SELECT * FROM no_such_table')).toThrow(/no such table/);
  });
});

describe('README', () => {
  it('every example query in the README runs on a real database', async () => {
    const { readFileSync } = await import('node:fs');
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const block = /```sql\n([\s\S]*?)```/.exec(readme)![1]!;
    const statements = block
      .split(/;\s*\n/)
      .map((s) => s.replace(/^--.*$/gm, '').trim())
      .filter(Boolean);
    expect(statements.length).toBeGreaterThanOrEqual(6);
    for (const sql of statements) expect(() => runUserQuery(tmp.path, sql), sql).not.toThrow();
  });
});

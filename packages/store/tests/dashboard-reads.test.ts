import { afterEach, describe, expect, it } from 'vitest';
import { TRIAL_STATUSES } from '@flatrank/protocol';
import { createTempDb, populateDashboardDb, type TempDb } from '@flatrank/testing';
import { ResultsStore, SWEEP_TRIAL_COLUMNS, type SweepTrialFilter } from '../src/index.js';
import { sweepTrialStatements } from '../src/dashboard-reads.js';
import { connectionOf } from '../src/internal.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

describe('dashboard reads', () => {
  it('sweepOverviews: every sweep with the counts trialCounts gives, and the mean succeeded duration', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { finished, running } = populateDashboardDb(store);
    const overviews = store.sweepOverviews();
    expect(overviews.map((o) => o.name)).toEqual(['finished-sweep', 'running-sweep']);
    for (const [o, id] of [
      [overviews[0]!, finished.sweepId],
      [overviews[1]!, running.sweepId],
    ] as const) {
      const counts = store.trialCounts(id);
      for (const s of TRIAL_STATUSES) expect(o.counts[s]).toBe(counts[s]);
      expect(o.counts.trials).toBe(Object.values(counts).reduce((a, b) => a + b, 0));
      expect(o.succeededMeanMs).toBe(store.succeededTiming(id).meanMs);
    }
    expect(overviews[0]!.finishedAt).not.toBeNull();
    expect(overviews[1]!.counts).toMatchObject({ running: 1, succeeded: 3, pending: 6 });
    expect(overviews[0]!.description).toBe('finished-sweep of the dashboard fixture');
  });

  it('sweepTrialPage: filters (NULL included), sorts with NULLs last, pages, counts the total', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { finished, running } = populateDashboardDb(store);
    const col = (c: (typeof SWEEP_TRIAL_COLUMNS)[number]) => SWEEP_TRIAL_COLUMNS.indexOf(c);
    const all = store.sweepTrialPage(finished.sweepId, { limit: 1000 });
    expect(all.total).toBe(15);
    expect(all.rows.map((r) => r[0])).toEqual(finished.keys);
    const baseline = store.sweepTrialPage(finished.sweepId, { decomposition: [null] });
    expect(baseline.rows.map((r) => r[col('method')])).toEqual(['baseline', 'baseline', 'baseline']);
    const either = store.sweepTrialPage(finished.sweepId, { decomposition: [null, 'svd'] });
    expect(either.total).toBe(9);
    const sd = store.sweepTrialPage(finished.sweepId, {
      distortionInterval: [4],
      rankPolicy: ['ratio=2'],
    });
    expect(sd.total).toBe(3);
    const byAfter = store.sweepTrialPage(finished.sweepId, {
      sort: 'accuracy_after_decomposition',
      order: 'desc',
      limit: 1000,
    });
    const after = byAfter.rows.map((r) => r[col('accuracy_after_decomposition')] as number | null);
    expect(after.slice(-3)).toEqual([null, null, null]);
    const values = after.filter((v): v is number => v !== null);
    expect(values).toEqual([...values].sort((a, b) => b - a));
    const page = store.sweepTrialPage(finished.sweepId, { offset: 10, limit: 10 });
    expect(page.total).toBe(15);
    expect(page.rows.map((r) => r[0])).toEqual(finished.keys.slice(10));
    const live = store.sweepTrialPage(running.sweepId, { status: ['running', 'pending'] });
    expect(live.total).toBe(7);
  });

  it('sweepTrialPage: ranges (any on one column, all across columns), scheme, and a top-k', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { finished } = populateDashboardDb(store);
    const col = (c: (typeof SWEEP_TRIAL_COLUMNS)[number]) => SWEEP_TRIAL_COLUMNS.indexOf(c);
    const all = store.sweepTrialPage(finished.sweepId, { limit: 1000 }).rows;
    const acc = (r: unknown[]) => r[col('accuracy_final')] as number;
    const within = (r: unknown[], lo: number, hi: number) => acc(r) >= lo && acc(r) <= hi;
    const keys = (rows: unknown[][]) => rows.map((r) => r[0]).sort();

    const one = store.sweepTrialPage(finished.sweepId, {
      ranges: [{ column: 'accuracy_final', min: 0.955, max: 0.965 }],
      limit: 1000,
    });
    const expected = all.filter((r) => within(r, 0.955, 0.965));
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan(all.length);
    expect(keys(one.rows)).toEqual(keys(expected));
    expect(one.total).toBe(expected.length);

    const either = store.sweepTrialPage(finished.sweepId, {
      ranges: [
        { column: 'accuracy_final', min: 0.955, max: 0.965 },
        { column: 'accuracy_final', min: 0.97, max: 1 },
        { column: 'seed', min: 1, max: 2 },
      ],
      limit: 1000,
    });
    const both = all.filter(
      (r) => (within(r, 0.955, 0.965) || within(r, 0.97, 1)) && (r[col('seed')] as number) >= 1,
    );
    expect(keys(either.rows)).toEqual(keys(both));

    const lowered = store.sweepTrialPage(finished.sweepId, { scheme: ['lowered'] });
    expect(lowered.total).toBe(6);
    expect(store.sweepTrialPage(finished.sweepId, { scheme: [null] }).total).toBe(9);

    const best = store.sweepTrialPage(finished.sweepId, {
      sort: 'accuracy_final',
      order: 'desc',
      limit: 1000,
    });
    const top = store.sweepTrialPage(finished.sweepId, {
      sort: 'accuracy_final',
      order: 'desc',
      top: 4,
      offset: 2,
      limit: 10,
    });
    expect(top.total).toBe(4);
    expect(top.rows.map((r) => r[0])).toEqual(best.rows.slice(2, 4).map((r) => r[0]));
  });

  it('sweepTrialPage spread: the first rows, then every n-th of the rest, never more than limit', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { finished } = populateDashboardDb(store);
    const sorted: SweepTrialFilter = { status: ['succeeded'], sort: 'accuracy_final', order: 'desc' };
    const best = store.sweepTrialPage(finished.sweepId, { ...sorted, limit: 1000 }).rows.map((r) => r[0]);
    expect(best).toHaveLength(15);
    // 15 rows into 5: the best 2, then every ceil(13 / 3) = 5th of the other 13.
    const spread = store.sweepTrialPage(finished.sweepId, { ...sorted, limit: 5, spread: 2 });
    expect(spread.total).toBe(15);
    expect(spread.spread).toEqual({ head: 2, step: 5 });
    expect(spread.rows.map((r) => r[0])).toEqual([0, 1, 2, 7, 12].map((i) => best[i]));
    // Deterministic: the same request, the same rows.
    expect(store.sweepTrialPage(finished.sweepId, { ...sorted, limit: 5, spread: 2 }).rows).toEqual(
      spread.rows,
    );
    // Everything when it fits; within a top-k when one is given.
    const fits = store.sweepTrialPage(finished.sweepId, { ...sorted, limit: 20, spread: 3 });
    expect(fits.rows.map((r) => r[0])).toEqual(best);
    expect(fits.spread).toEqual({ head: 15, step: 1 });
    const topK = store.sweepTrialPage(finished.sweepId, { ...sorted, top: 9, limit: 4, spread: 1 });
    expect(topK.total).toBe(9);
    expect(topK.rows.map((r) => r[0])).toEqual([0, 1, 4, 7].map((i) => best[i]));
    for (const limit of [1, 2, 3, 4, 6, 7, 14])
      for (const head of [0, 1, Math.min(limit, 5)]) {
        const rows = store.sweepTrialPage(finished.sweepId, { ...sorted, limit, spread: head }).rows;
        expect(rows.length).toBeLessThanOrEqual(limit);
        expect(rows.length).toBeGreaterThanOrEqual(Math.min(limit, Math.ceil(limit / 2)));
        expect(rows.slice(0, head).map((r) => r[0])).toEqual(best.slice(0, head));
      }
  });

  it('sweepTrialPage reads by key: no full scan of a table, no sort for the default order', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { finished } = populateDashboardDb(store);
    const db = connectionOf(store);
    const plan = (sql: string, params: unknown[]) =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map(
        (r) => r.detail,
      );
    const filters: SweepTrialFilter[] = [
      {},
      { sort: 'accuracy_final', order: 'desc' },
      { status: ['succeeded'], method: ['distort'], sort: 'accuracy_final', order: 'desc', spread: 3 },
      { decomposition: [null, 'svd'], ranges: [{ column: 'params_ratio', min: 1, max: 3 }] },
      { rankPolicy: ['ratio=2'], distortionInterval: [4], scheme: ['lowered'], sort: 'seed', top: 3 },
    ];
    for (const f of filters) {
      const q = sweepTrialStatements(finished.sweepId, f);
      const extra = f.spread === undefined ? [10, 0] : [10, 3, 3, 2, 10];
      for (const steps of [
        plan(q.count.sql, q.count.params),
        plan(q.rows.sql, [...q.rows.params, ...extra]),
      ]) {
        expect(steps.join(' | ')).toMatch(/SEARCH st USING PRIMARY KEY|SEARCH t USING/);
        for (const step of steps) expect(step, JSON.stringify(f)).not.toMatch(/^SCAN (st|t|r)\b/);
      }
    }
    const q = sweepTrialStatements(finished.sweepId, {});
    expect(plan(q.rows.sql, [...q.rows.params, 10, 0]).join(' | ')).not.toMatch(/TEMP B-TREE/);
    expect(plan(q.count.sql, q.count.params)).toEqual(['SEARCH st USING PRIMARY KEY (sweep_id=?)']);
  });

  it('sweepTrialPage: refuses bad pages, statuses and sort columns, naming the field', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    expect(() => store.sweepTrialPage(1, { limit: 0 })).toThrow(/limit: an integer from 1 to 50000/);
    expect(() => store.sweepTrialPage(1, { offset: -1 })).toThrow(/offset/);
    expect(() => store.sweepTrialPage(1, { status: ['done' as never] })).toThrow(
      /status: unknown value "done"/,
    );
    expect(() => store.sweepTrialPage(1, { sort: 'config; DROP TABLE trials' as never })).toThrow(
      /sort: unknown column/,
    );
    expect(() => store.sweepTrialPage(1, { order: 'up' as never })).toThrow(/order: asc or desc/);
    expect(() =>
      store.sweepTrialPage(1, { ranges: [{ column: 'config' as never, min: 0, max: 1 }] }),
    ).toThrow(/range: unknown column "config"; allowed: target_ratio/);
    expect(() => store.sweepTrialPage(1, { ranges: [{ column: 'seed', min: 2, max: 1 }] })).toThrow(
      /range: seed needs finite min <= max/,
    );
    expect(() => store.sweepTrialPage(1, { ranges: [{ column: 'lr', min: Number.NaN, max: 1 }] })).toThrow(
      /range: lr needs finite/,
    );
    expect(() => store.sweepTrialPage(1, { top: 0 })).toThrow(/top: an integer >= 1/);
    expect(() => store.sweepTrialPage(1, { spread: -1 })).toThrow(/spread: an integer >= 0/);
    expect(() => store.sweepTrialPage(1, { spread: 1, offset: 5 })).toThrow(/offset: a spread sample/);
    expect(() => store.sweepTrialPage(1, { spread: 20, limit: 10 })).toThrow(/spread: at most limit \(10\)/);
  });

  it('dataVersion moves when another connection commits, not on reads', () => {
    tmp = createTempDb();
    const writer = tmp.store!;
    const fixture = populateDashboardDb(writer);
    const reader = ResultsStore.open(tmp.path, { readonly: true });
    try {
      const v0 = reader.dataVersion();
      reader.sweepOverviews();
      expect(reader.dataVersion()).toBe(v0);
      fixture.finishNext();
      expect(reader.dataVersion()).not.toBe(v0);
    } finally {
      reader.close();
    }
  });

  it('revision: moves when a trial of the sweep changes status, not on progress events', () => {
    tmp = createTempDb();
    const writer = tmp.store!;
    const fixture = populateDashboardDb(writer);
    const reader = ResultsStore.open(tmp.path, { readonly: true });
    try {
      const revisions = () => reader.sweepOverviews().map((o) => o.revision);
      const [finished0, running0] = revisions();
      const live = reader.sweepTrialPage(fixture.running.sweepId, { status: ['running'] })
        .rows[0]![0] as string;
      const v0 = reader.dataVersion();
      writer.applyEvents([
        { trialKey: live, attempt: 1, seq: 100, event: { type: 'heartbeat', step: 5, epoch: 0 } },
        {
          trialKey: live,
          attempt: 1,
          seq: 101,
          event: { type: 'metric', step: 5, epoch: 0, phase: 'train', name: 'loss', value: 0.5 },
        },
      ]);
      expect(reader.dataVersion()).not.toBe(v0);
      expect(revisions()).toEqual([finished0, running0]);
      fixture.finishNext();
      const [finished1, running1] = revisions();
      expect(running1).not.toBe(running0);
      // A result written anywhere moves every revision (results are what reports read).
      expect(finished1).not.toBe(finished0);
    } finally {
      reader.close();
    }
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { TRIAL_STATUSES } from '@flatrank/protocol';
import { createTempDb, populateDashboardDb, type TempDb } from '@flatrank/testing';
import { ResultsStore, SWEEP_TRIAL_COLUMNS } from '../src/index.js';

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
});

// Per-sweep commands after the sweep's spec dropped points: status / runs --sweep / export show the
// points of the latest spec; status says how many earlier points are kept outside it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTempDb, populateTempDb, type PopulatedSweep, type TempDb } from '@flatrank/testing';
import { runCli } from './helpers.js';

let tmp: TempDb;
let sweep: PopulatedSweep;
beforeAll(() => {
  tmp = createTempDb();
  // 8 trials, the first 3 (by id) succeeded; the latest spec keeps trials 2..5 only.
  sweep = populateTempDb(tmp.store!, { sweep: 'grid', seeds: 2, succeeded: 3 });
  const keep = [2, 3, 4, 5].map((i) => ({ key: sweep.keys[i]!, config: sweep.configs[i]! }));
  tmp.store!.syncSweepTrials(sweep.sweepId, keep);
  tmp.store!.close();
});
afterAll(() => tmp.cleanup());

describe('commands over a sweep whose spec dropped points', () => {
  it('status counts the current points and reports the dropped ones once', async () => {
    const r = await runCli(['status', 'grid', '--db', tmp.path]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      'sweep grid: 4 points no longer in the spec (kept, not run; 2 of them succeeded)',
    );
    const all = await runCli(['status', '--db', tmp.path]);
    expect(all.out).toMatch(/grid.*1\/4/);
  });

  it('runs --sweep and export list the current points only; runs without --sweep lists every trial', async () => {
    const runs = await runCli(['runs', '--db', tmp.path, '--sweep', 'grid', '--format', 'json']);
    expect((JSON.parse(runs.out) as Array<{ key: string }>).map((r) => r.key)).toEqual(
      sweep.keys.slice(2, 6),
    );
    const exp = await runCli(['export', '--db', tmp.path, '--sweep', 'grid', '--format', 'json']);
    expect((JSON.parse(exp.out) as unknown[]).length).toBe(4);
    expect((await runCli(['runs', '--db', tmp.path])).out).toContain('(8 rows)');
  });
});

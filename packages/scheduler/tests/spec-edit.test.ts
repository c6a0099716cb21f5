// Re-running an edited spec (local backend, fake trainer): only the points of the current expansion
// run; points the spec dropped keep their rows and results and are never started again.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SchedulerError } from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { readFakeLog } from '@flatrank/testing';
import { assertNoDuplicates, baselineSpec, runFake, sandbox, sql, waitFor, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

/** Attempts the fake trainer started, by seed. */
function startsBySeed(): Map<number, number> {
  const m = new Map<number, number>();
  for (const r of readFakeLog(sb.logFile))
    if (r.kind === 'start') m.set(Number(r.seed), (m.get(Number(r.seed)) ?? 0) + 1);
  return m;
}

function statusBySeed(): Record<number, string> {
  return Object.fromEntries(
    sql(sb.db, 'SELECT seed, status FROM trials ORDER BY seed').map((r) => [r['seed'], r['status']]),
  ) as Record<number, string>;
}

function store<T>(fn: (s: ResultsStore, sweepId: number) => T, name: string): T {
  const s = ResultsStore.open(sb.db, { readonly: true });
  try {
    return fn(s, s.getSweep(name)!.id);
  } finally {
    s.close();
  }
}

describe('re-running an edited spec', { timeout: 60_000 }, () => {
  it('dropped points (failed-retryable, succeeded) never run again; the added one runs; results stay', async () => {
    // v1: seed 2 fails (retryable) and, with maxAttempts 1, is left failed.
    const v1 = sb.spec('edit', baselineSpec('edit', [0, 1, 2, 3], 'resources: { maxAttempts: 1 }\n'));
    const fake = {
      default: { steps: 2, stepMs: 5 },
      bySeed: { '2': { steps: 2, stepMs: 5, action: 'fail-retryable' as const } },
    };
    const first = await runFake(sb, v1, fake, { gpus: 'none', workers: 2 });
    expect((first.error as SchedulerError).code).toBe('TRIALS_FAILED');
    expect(statusBySeed()).toEqual({ 0: 'succeeded', 1: 'succeeded', 2: 'failed', 3: 'succeeded' });

    // v2 drops seeds 1 (succeeded) and 2 (failed, retryable: claimable again with maxAttempts 2), adds 4.
    const v2 = sb.spec('edit', baselineSpec('edit', [0, 3, 4], 'resources: { maxAttempts: 2 }\n'));
    const second = await runFake(sb, v2, fake, { gpus: 'none', workers: 2 });
    expect(second.error).toBeUndefined();
    expect(second.result).toMatchObject({ points: 3, inserted: 1, existing: 2 });
    expect(second.err).toContain(
      'sweep edit: 2 points no longer in the spec (kept, not run; 1 of them succeeded)',
    );
    expect(second.result?.run?.attempts.map((a) => a.key)).toHaveLength(1);
    expect(Object.fromEntries(startsBySeed())).toEqual({ 0: 1, 1: 1, 2: 1, 3: 1, 4: 1 });
    // Rows and results of the dropped points are kept; the sweep's counts are the current points.
    expect(statusBySeed()).toEqual({
      0: 'succeeded',
      1: 'succeeded',
      2: 'failed',
      3: 'succeeded',
      4: 'succeeded',
    });
    expect(assertNoDuplicates(sb.db).results).toBe(4);
    expect(second.out).toMatch(/edit: 3 succeeded, 0 diverged, 0 failed, 0 cancelled, 0 pending/);
    expect(store((s, id) => s.trialCounts(id), 'edit')).toMatchObject({ succeeded: 3, failed: 0 });
    expect(sql(sb.db, "SELECT trials, succeeded, failed FROM sweep_progress WHERE sweep = 'edit'")).toEqual([
      { trials: 3, succeeded: 3, failed: 0 },
    ]);

    // Putting seed 1 back brings its recorded result back into the sweep: nothing runs.
    const v3 = sb.spec('edit', baselineSpec('edit', [0, 1, 3, 4], 'resources: { maxAttempts: 2 }\n'));
    const third = await runFake(sb, v3, fake, { gpus: 'none', workers: 2 });
    expect(third.error).toBeUndefined();
    expect(third.result?.run?.attempts).toHaveLength(0);
    expect(third.err).toContain(
      'sweep edit: 1 point no longer in the spec (kept, not run; 0 of them succeeded)',
    );
    expect(third.out).toMatch(/edit: 4 succeeded/);
  });

  it('resume after a cancelled run: the dropped pending points never start, the added one runs', async () => {
    const v1 = sb.spec('resume', baselineSpec('resume', [0, 1, 2, 3, 4, 5]));
    const ac = new AbortController();
    const running = runFake(
      sb,
      v1,
      { default: { steps: 40, stepMs: 25 }, bySeed: { '0': { steps: 1, stepMs: 5 } } },
      { gpus: 'none', workers: 1, signal: ac.signal },
    );
    // Seed 0 finished (result stored), seed 1 running: cancel.
    await waitFor(() => startsBySeed().get(1) === 1, 20_000, 'the second trial to start');
    ac.abort('SIGINT');
    const r = await running;
    expect((r.error as SchedulerError).code).toBe('INTERRUPTED');
    expect(statusBySeed()).toEqual({
      0: 'succeeded',
      1: 'pending',
      2: 'pending',
      3: 'pending',
      4: 'pending',
      5: 'pending',
    });

    // v2 drops seed 0 (succeeded) and the pending seeds 1 (cancelled mid-attempt), 3 and 5; adds 6.
    const v2 = sb.spec('resume', baselineSpec('resume', [2, 4, 6]));
    const resumed = await runFake(sb, v2, { default: { steps: 2, stepMs: 5 } }, { gpus: 'none', workers: 2 });
    expect(resumed.error).toBeUndefined();
    expect(resumed.err).toContain(
      'sweep resume: 4 points no longer in the spec (kept, not run; 1 of them succeeded)',
    );
    expect(Object.fromEntries(startsBySeed())).toEqual({ 0: 1, 1: 1, 2: 1, 4: 1, 6: 1 });
    expect(statusBySeed()).toEqual({
      0: 'succeeded',
      1: 'pending',
      2: 'succeeded',
      3: 'pending',
      4: 'succeeded',
      5: 'pending',
      6: 'succeeded',
    });
    expect(resumed.out).toMatch(
      /resume: 3 succeeded, 0 diverged, 0 failed, 0 cancelled, 0 pending, 0 running/,
    );
    // The sweep finished (every current point succeeded); the dropped ones are listed on request.
    expect(store((s) => s.getSweep('resume')!.finishedAt, 'resume')).not.toBeNull();
    expect(
      store(
        (s, id) => s.listTrials({ sweepId: id, membership: 'retired' }).map((t) => t.axes.seed),
        'resume',
      ),
    ).toEqual([0, 1, 3, 5]);
    expect(assertNoDuplicates(sb.db).results).toBe(4);
  });
});

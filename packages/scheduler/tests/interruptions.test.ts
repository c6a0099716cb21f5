// Interruptions never cost a retry: an attempt ended by the coordinator's own interruption (Ctrl-C,
// a coordinator that died, a lost lease: see the store's claim tests) goes back to pending without counting toward maxAttempts;
// only the trial's own failures count. `--retry-failed` gives failed points, and the points
// cancelled because of them, a fresh budget of attempts, keeping the old attempts' rows.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SchedulerError } from '@flatrank/protocol';
import { readFakeLog } from '@flatrank/testing';
import {
  assertNoDuplicates,
  baselineSpec,
  runFake,
  sandbox,
  sql,
  trials,
  waitFor,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

/** Runs until `n` attempts have started, then interrupts the run (Ctrl-C). */
async function interruptAfterStarts(spec: string, n: number) {
  const ac = new AbortController();
  const running = runFake(
    sb,
    spec,
    { default: { steps: 5000, stepMs: 20 } },
    { gpus: 'none', workers: 1, signal: ac.signal },
  );
  await waitFor(
    () => readFakeLog(sb.logFile).filter((x) => x.kind === 'start').length >= n,
    30_000,
    `${n} attempts started`,
  );
  ac.abort('SIGINT');
  const r = await running;
  expect((r.error as SchedulerError).code).toBe('INTERRUPTED');
}

describe('interruptions and retries', () => {
  it('repeated Ctrl-C costs no attempt: a crash afterwards is still retried', async () => {
    const spec = sb.spec('int', baselineSpec('int', [0], 'resources: { maxAttempts: 2 }\n'));
    // Three Ctrl-Cs, each mid-attempt: attempts 1..3 are interrupted.
    for (let i = 1; i <= 3; i++) await interruptAfterStarts(spec, i);
    let [t] = trials(sb.db);
    expect(t).toMatchObject({ status: 'pending', attempts: 3, countedAttempts: 0, interruptedAttempts: 3 });
    expect(t!.errorCode).toBe('INTERRUPTED');
    // Attempt 4 crashes (the trial's own failure: counts), attempt 5 succeeds: within maxAttempts 2.
    const r = await runFake(
      sb,
      spec,
      {
        default: { steps: 4, stepMs: 10 },
        bySeed: { '0': { steps: 4, stepMs: 10, action: 'crash', attempts: [4] } },
      },
      { gpus: 'none' },
    );
    expect(r.error).toBeUndefined();
    [t] = trials(sb.db);
    expect(t).toMatchObject({ status: 'succeeded', attempts: 5, countedAttempts: 2, interruptedAttempts: 3 });
    expect(r.err).toMatch(/lost {2}[0-9a-f]{10} baseline seed=0: .*exited with code 1.* \(will retry\)/);
    assertNoDuplicates(sb.db);
  });

  it('--retry-failed gives failed points and their cancelled dependents a fresh budget; old rows stay', async () => {
    const spec = sb.spec(
      'retry',
      `name: retry
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: baseline
methods:
  baseline: {}
  pt: { method: posttrain, compression: { decomposition: svd, rank: 2 } }
grid:
  seed: [0, 1]
resources: { maxAttempts: 2 }
`,
    );
    // Seed 1's baseline crashes every time: failed after 2 attempts, its posttrain point cancelled.
    const crash = {
      bySeed: { '1': { steps: 4, stepMs: 10, action: 'crash' as const } },
      default: { steps: 4, stepMs: 10 },
    };
    const first = await runFake(sb, spec, crash, { gpus: 'none' });
    expect((first.error as SchedulerError).code).toBe('TRIALS_FAILED');
    const failedKey = trials(sb.db).find((t) => t.config.seed === 1 && t.config.method === 'baseline')!.key;
    expect(
      Number(
        sql(
          sb.db,
          `SELECT count(*) AS n FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.key = '${failedKey}'`,
        )[0]!['n'],
      ),
    ).toBeGreaterThan(0);
    const metricsBefore = sql(sb.db, 'SELECT trial_id, attempt, seq FROM metrics ORDER BY 1, 2, 3');
    // Without --retry-failed nothing runs again.
    const again = await runFake(sb, spec, {}, { gpus: 'none' });
    expect((again.error as SchedulerError).code).toBe('TRIALS_FAILED');
    expect(again.result).toBeUndefined();
    expect(readFakeLog(sb.logFile).filter((x) => x.kind === 'start')).toHaveLength(4);
    // With it: the failed baseline runs again (attempts 3 and 4 allowed), then its dependent.
    const retried = await runFake(
      sb,
      spec,
      { default: { steps: 4, stepMs: 10 } },
      { gpus: 'none', retryFailed: true },
    );
    expect(retried.error).toBeUndefined();
    expect(retried.err).toMatch(/--retry-failed: 1 failed and 1 cancelled point\(s\) get a fresh budget/);
    const all = trials(sb.db);
    expect(all.every((t) => t.status === 'succeeded')).toBe(true);
    expect(all.find((t) => t.key === failedKey)).toMatchObject({ attempts: 3, countedAttempts: 1 });
    // The failed attempts' rows are still there, next to the new attempt's.
    const metricsAfter = sql(sb.db, 'SELECT trial_id, attempt, seq FROM metrics ORDER BY 1, 2, 3');
    expect(metricsAfter).toEqual(expect.arrayContaining(metricsBefore));
    expect(metricsAfter.length).toBeGreaterThan(metricsBefore.length);
    assertNoDuplicates(sb.db);
  });
});

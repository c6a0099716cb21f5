// `flatrank run / status` as processes of the built CLI (local backend, fake trainer, fake GPUs).
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ResultsStore } from '@flatrank/store';
import {
  assertNoDuplicates,
  baselineSpec,
  fakeTrainerPath,
  installFakeNvidiaSmi,
  readFakeLog,
  waitFor,
  type ProcessSandbox,
} from '@flatrank/testing';
import { assertBuilt, cliSandbox, runArgs } from './processes.js';

let sb: ProcessSandbox;
beforeAll(() => assertBuilt());
beforeEach(() => {
  sb = cliSandbox();
});
afterEach(() => sb.cleanup());

/** `flatrank run <spec>` on two CPU workers with the fake trainer. */
const cpuRunArgs = (spec: string): string[] =>
  runArgs(sb, spec, '--gpus', 'none', '--workers', '2', '--child-entry', fakeTrainerPath);

function statuses(): Record<string, number> {
  const s = ResultsStore.open(sb.db, { readonly: true });
  try {
    const out: Record<string, number> = {};
    for (const t of s.listTrials({})) out[t.status] = (out[t.status] ?? 0) + 1;
    return out;
  } finally {
    s.close();
  }
}

describe('flatrank run (CLI, local backend)', { timeout: 90_000 }, () => {
  it('coordinator killed (kill -9) and restarted: only the unfinished points run', async () => {
    const args = cpuRunArgs(sb.spec('coord', baselineSpec('coord', [0, 1, 2, 3, 4, 5])));
    const first = sb.spawn(args, { fake: { default: { steps: 10, stepMs: 60 } } });
    // Two results in the database (the fake trainer's own 'end' record comes before the coordinator
    // has stored the result: killing on that record lost the race under load).
    const succeeded = () => {
      try {
        const r = ResultsStore.open(sb.db, { readonly: true });
        try {
          return r.trialCounts(r.getSweep('coord')!.id).succeeded;
        } finally {
          r.close();
        }
      } catch {
        return 0; // not created / not migrated yet
      }
    };
    await waitFor(() => succeeded() >= 2, 40_000, 'two stored results');
    first.proc.kill('SIGKILL');
    await first.exited;
    const s = ResultsStore.open(sb.db, { readonly: true });
    const done = s.listTrials({ status: 'succeeded' }).map((t) => t.key);
    const wasRunning = s.listTrials({ status: 'running' }).map((t) => t.key);
    s.close();
    expect(done.length).toBeGreaterThanOrEqual(2);
    // The orphaned children noticed their coordinator is gone and stopped (no orphan training).
    await waitFor(
      () => {
        const log = readFakeLog(sb.logFile);
        return log
          .filter((x) => x.kind === 'start')
          .every((st) => st.attempt !== 1 || !wasRunning.includes(st.key) || !isAlive(st.pid));
      },
      10_000,
      'orphaned children to exit',
    );
    const second = sb.spawn(args, { fake: { default: { steps: 2, stepMs: 10 } } });
    expect(await second.exited, second.output()).toBe(0);
    expect(statuses()).toEqual({ succeeded: 6 });
    const starts = readFakeLog(sb.logFile).filter((x) => x.kind === 'start');
    for (const k of done) expect(starts.filter((x) => x.key === k)).toHaveLength(1);
    // The interrupted attempts were recovered at once (dead coordinator pid), not after a lease.
    if (wasRunning.length)
      expect(second.output()).toMatch(
        /interrupted: the coordinator \(pid \d+\) running attempt 1 is gone; back to pending/,
      );
    assertNoDuplicates(sb.db);
  });

  it('SIGINT: cancels running trials, exits non-zero; the next run resumes; status shows the sweep', async () => {
    const args = cpuRunArgs(sb.spec('int', baselineSpec('int', [0, 1, 2, 3])));
    // Trials that would run for minutes: the status below sees them running however slow the machine.
    const first = sb.spawn(args, { fake: { default: { steps: 5000, stepMs: 40 } } });
    await sb.waitForLog((x) => x.kind === 'start', 'two running trials', { count: 2, timeoutMs: 40_000 });
    const status = sb.spawn(['status', 'int', '--db', sb.db], { fake: {} });
    expect(await status.exited).toBe(0);
    expect(status.output()).toMatch(/int: 0\/4 done, 2 running, 2 pending/);
    expect(status.output()).toMatch(/baseline seed=\d\s+cpu/);
    first.proc.kill('SIGINT');
    expect(await first.exited).toBe(8);
    expect(first.output()).toMatch(/interrupted: 4 trials left pending; run the same spec again to resume/);
    expect(statuses()).toEqual({ pending: 4 });
    expect(readFakeLog(sb.logFile).filter((x) => x.kind === 'end' && x.outcome === 'CANCELLED')).toHaveLength(
      2,
    );
    const second = sb.spawn(args, { fake: { default: { steps: 2, stepMs: 10 } } });
    expect(await second.exited, second.output()).toBe(0);
    expect(statuses()).toEqual({ succeeded: 4 });
    const all = sb.spawn(['status', '--db', sb.db], { fake: {} });
    expect(await all.exited).toBe(0);
    expect(all.output()).toMatch(
      /int: 4\/4 done, 0 running, 0 pending, 0 failed, 0 diverged, ETA 0s \(finished\)/,
    );
  });

  it('--gpus auto uses nvidia-smi (a fake one on PATH): one slot per GPU, CUDA_VISIBLE_DEVICES per child', async () => {
    const path = installFakeNvidiaSmi(join(sb.dir, 'bin'), 2);
    const spec = sb.spec('smi', baselineSpec('smi', [0, 1, 2, 3]));
    const p = sb.spawn(runArgs(sb, spec, '--child-entry', fakeTrainerPath), {
      fake: { default: { steps: 5, stepMs: 40 } },
      env: { PATH: path },
    });
    expect(await p.exited, p.output()).toBe(0);
    expect(p.output()).toMatch(/nvidia-smi found 2 GPUs; 2 slots: gpu0, gpu1/);
    expect(new Set(readFakeLog(sb.logFile).map((x) => x.cuda))).toEqual(new Set(['0', '1']));
  });

  it('a malformed spec exits 2 with the file, line and field', async () => {
    const spec = sb.spec('bad', baselineSpec('bad', [0]).replace('model: lenet5', 'model: alexnet'));
    const p = sb.spawn(['run', spec, '--db', sb.db], { fake: {} });
    expect(await p.exited).toBe(2);
    expect(p.output()).toMatch(/bad\.yaml:2: model: unknown value "alexnet"; allowed: lenet5/);
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

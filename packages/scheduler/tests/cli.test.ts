// `flatrank run / status` as processes of the built CLI (local backend, fake trainer, fake GPUs).
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ResultsStore } from '@flatrank/store';
import { fakeTrainerEnv, fakeTrainerPath, installFakeNvidiaSmi, readFakeLog } from '@flatrank/testing';
import { discoverGpus, parseGpusFlag, parseNvidiaSmi, planSlots } from '../src/index.js';
import {
  assertBuilt,
  assertNoDuplicates,
  baselineSpec,
  sandbox,
  spawnCli,
  waitFor,
  type Proc,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
const procs: Proc[] = [];
beforeAll(() => assertBuilt());
beforeEach(() => {
  sb = sandbox();
});
afterEach(async () => {
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  procs.length = 0;
  sb.cleanup();
});

function cli(args: string[], fake: object, extraEnv: Record<string, string> = {}): Proc {
  const p = spawnCli(
    args,
    { ...fakeTrainerEnv({ logFile: sb.logFile, pidDir: sb.pidDir, ...fake }), ...extraEnv },
    sb.dir,
  );
  procs.push(p);
  return p;
}

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
    const spec = sb.spec('coord', baselineSpec('coord', [0, 1, 2, 3, 4, 5]));
    const args = [
      'run',
      spec,
      '--db',
      sb.db,
      '--runs-dir',
      sb.runsDir,
      '--gpus',
      'none',
      '--workers',
      '2',
      '--child-entry',
      fakeTrainerPath,
    ];
    const first = cli(args, { default: { steps: 10, stepMs: 60 } });
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
    const second = cli(args, { default: { steps: 2, stepMs: 10 } });
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
    const spec = sb.spec('int', baselineSpec('int', [0, 1, 2, 3]));
    const args = [
      'run',
      spec,
      '--db',
      sb.db,
      '--runs-dir',
      sb.runsDir,
      '--gpus',
      'none',
      '--workers',
      '2',
      '--child-entry',
      fakeTrainerPath,
    ];
    // Trials that would run for minutes: the status below sees them running however slow the machine.
    const first = cli(args, { default: { steps: 5000, stepMs: 40 } });
    await waitFor(
      () => readFakeLog(sb.logFile).filter((x) => x.kind === 'start').length >= 2,
      40_000,
      'two running trials',
    );
    const status = cli(['status', 'int', '--db', sb.db], {});
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
    const second = cli(args, { default: { steps: 2, stepMs: 10 } });
    expect(await second.exited, second.output()).toBe(0);
    expect(statuses()).toEqual({ succeeded: 4 });
    const all = cli(['status', '--db', sb.db], {});
    expect(await all.exited).toBe(0);
    expect(all.output()).toMatch(
      /int: 4\/4 done, 0 running, 0 pending, 0 failed, 0 diverged, ETA 0s \(finished\)/,
    );
  });

  it('--gpus auto uses nvidia-smi (a fake one on PATH): one slot per GPU, CUDA_VISIBLE_DEVICES per child', async () => {
    const path = installFakeNvidiaSmi(join(sb.dir, 'bin'), 2);
    const spec = sb.spec('smi', baselineSpec('smi', [0, 1, 2, 3]));
    const p = cli(
      ['run', spec, '--db', sb.db, '--runs-dir', sb.runsDir, '--child-entry', fakeTrainerPath],
      { default: { steps: 5, stepMs: 40 } },
      { PATH: path },
    );
    expect(await p.exited, p.output()).toBe(0);
    expect(p.output()).toMatch(/nvidia-smi found 2 GPUs; 2 slots: gpu0, gpu1/);
    expect(new Set(readFakeLog(sb.logFile).map((x) => x.cuda))).toEqual(new Set(['0', '1']));
  });

  it('a malformed spec exits 2 with the file, line and field', async () => {
    const spec = sb.spec('bad', baselineSpec('bad', [0]).replace('model: lenet5', 'model: alexnet'));
    const p = cli(['run', spec, '--db', sb.db], {});
    expect(await p.exited).toBe(2);
    expect(p.output()).toMatch(/bad\.yaml:2: model: unknown value "alexnet"; allowed: lenet5/);
  });
});

describe('GPU discovery', () => {
  it('parses nvidia-smi output and plans slots', async () => {
    expect(parseNvidiaSmi('0, NVIDIA A100-SXM4-40GB, GPU-abc\n1, NVIDIA A100-SXM4-40GB, GPU-def\n')).toEqual([
      { index: 0, name: 'NVIDIA A100-SXM4-40GB', uuid: 'GPU-abc' },
      { index: 1, name: 'NVIDIA A100-SXM4-40GB', uuid: 'GPU-def' },
    ]);
    const plan = await planSlots({
      gpus: 'auto',
      workersPerGpu: 2,
      cpuWorkers: 3,
      discover: async () => parseNvidiaSmi('0, T4, x\n1, T4, y\n'),
    });
    expect(plan.slots.map((s) => [s.id, s.cudaVisibleDevices])).toEqual([
      ['gpu0#0', '0'],
      ['gpu0#1', '0'],
      ['gpu1#0', '1'],
      ['gpu1#1', '1'],
    ]);
    const cpu = await planSlots({
      gpus: 'none',
      workersPerGpu: 2,
      cpuWorkers: 3,
      discover: async () => parseNvidiaSmi('0, T4, x\n'),
    });
    expect(cpu.slots.map((s) => [s.id, s.cudaVisibleDevices])).toEqual([
      ['cpu0', ''],
      ['cpu1', ''],
      ['cpu2', ''],
    ]);
    const picked = await planSlots({
      gpus: [1],
      workersPerGpu: 1,
      cpuWorkers: 1,
      discover: async () => parseNvidiaSmi('0, T4, x\n1, V100, y\n'),
    });
    expect(picked.slots).toEqual([{ id: 'gpu1', cudaVisibleDevices: '1', device: 'cuda:1 V100', env: {} }]);
  });

  it('falls back to CPU when nvidia-smi is absent; finds a fake one on PATH', async () => {
    const saved = process.env['PATH'];
    try {
      process.env['PATH'] = join(sb.dir, 'empty');
      expect(await discoverGpus()).toEqual([]);
      process.env['PATH'] = installFakeNvidiaSmi(join(sb.dir, 'bin'), 3);
      expect((await discoverGpus()).map((g) => g.index)).toEqual([0, 1, 2]);
    } finally {
      process.env['PATH'] = saved;
    }
  });

  it('validates --gpus', () => {
    expect(parseGpusFlag('auto')).toBe('auto');
    expect(parseGpusFlag('0, 2')).toEqual([0, 2]);
    expect(() => parseGpusFlag('gpu0')).toThrow(
      /--gpus: must be auto, none, or a comma-separated list of GPU indices/,
    );
    expect(() => parseGpusFlag('1,1')).toThrow(/lists a GPU twice/);
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

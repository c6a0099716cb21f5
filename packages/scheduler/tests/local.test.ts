import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SchedulerError, type RankAllocationRecord } from '@flatrank/protocol';
import { maxConcurrency, readFakeLog } from '@flatrank/testing';
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

describe('local backend', () => {
  it('N GPU slots run N trials at once, each with its own CUDA_VISIBLE_DEVICES', async () => {
    // Trials of 2 s: long enough to overlap however slowly a loaded machine forks their processes.
    const spec = sb.spec('gpus', baselineSpec('gpus', [0, 1, 2, 3, 4, 5]));
    const r = await runFake(sb, spec, { default: { steps: 20, stepMs: 100 } }, { fakeGpus: 3 });
    expect(r.error).toBeUndefined();
    const log = readFakeLog(sb.logFile);
    expect(log.filter((x) => x.kind === 'start')).toHaveLength(6);
    expect(maxConcurrency(log)).toBe(3);
    // Every child saw exactly one GPU, in PCI bus order, and two overlapping attempts never shared one.
    const starts = log.filter((x) => x.kind === 'start');
    expect(new Set(starts.map((s) => s.cuda))).toEqual(new Set(['0', '1', '2']));
    for (const s of starts) expect(s.order).toBe('PCI_BUS_ID');
    const spans = starts.map((s) => ({
      cuda: s.cuda,
      t0: s.t,
      t1: log.find((e) => e.kind === 'end' && e.key === s.key && e.attempt === s.attempt)!.t,
    }));
    for (const a of spans)
      for (const b of spans)
        if (a !== b && a.cuda === b.cuda) expect(a.t1 <= b.t0 || b.t1 <= a.t0).toBe(true);
    // The store records each trial's device and what its process saw.
    for (const t of trials(sb.db)) {
      expect(t.status).toBe('succeeded');
      expect(t.device).toMatch(/^cuda:[012] Fake Tesla T4$/);
      expect(t.environment?.cudaVisibleDevices).toBe(t.device!.slice(5, 6));
    }
    expect(r.out).toMatch(/3 succeeded|6 succeeded/);
  });

  it('CPU workers hide every GPU (CUDA_VISIBLE_DEVICES empty) and --workers sets their number', async () => {
    // Trials of 2 s (see above).
    const spec = sb.spec('cpu', baselineSpec('cpu', [0, 1, 2, 3]));
    const r = await runFake(sb, spec, { default: { steps: 20, stepMs: 100 } }, { gpus: 'none', workers: 2 });
    expect(r.error).toBeUndefined();
    const log = readFakeLog(sb.logFile);
    expect(maxConcurrency(log)).toBe(2);
    for (const s of log.filter((x) => x.kind === 'start')) expect(s.cuda).toBe('');
  });

  it('kill -9 of a trial process mid-trial: retried, finished, no duplicate rows', async () => {
    const spec = sb.spec('kill', baselineSpec('kill', [0, 1]));
    const running = runFake(sb, spec, { default: { steps: 30, stepMs: 40 } }, { gpus: 'none', workers: 2 });
    // Kill the first attempt of one trial once it has started streaming metrics.
    const pidFile = await waitFor(
      () => existsSync(sb.pidDir) && readdirSync(sb.pidDir).find((f) => f.endsWith('-1.pid')),
      20_000,
      'a pid file',
    );
    await new Promise((r) => setTimeout(r, 300));
    const pid = Number(readFileSync(join(sb.pidDir, pidFile), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const r = await running;
    expect(r.error).toBeUndefined();
    const killedKey = pidFile.replace(/-1\.pid$/, '');
    const all = trials(sb.db);
    expect(all.every((t) => t.status === 'succeeded')).toBe(true);
    expect(all.find((t) => t.key === killedKey)!.attempts).toBe(2);
    expect(all.find((t) => t.key !== killedKey)!.attempts).toBe(1);
    expect(assertNoDuplicates(sb.db)).toEqual({ results: 2, succeeded: 2 });
    expect(r.err).toMatch(/was killed by SIGKILL before reporting an end \(will retry\)/);
    // Only the surviving attempt's metrics count; the killed attempt's rows stay as attempt 1.
    const log = readFakeLog(sb.logFile);
    expect(log.filter((x) => x.key === killedKey && x.kind === 'start').map((x) => x.attempt)).toEqual([
      1, 2,
    ]);
  });

  it('crash, hang, diverge and failure behaviours: retried, killed, recorded', async () => {
    const spec = sb.spec(
      'faults',
      baselineSpec('faults', [0, 1, 2, 3, 4], 'resources: { maxAttempts: 2 }\n'),
    );
    const r = await runFake(
      sb,
      spec,
      {
        default: { steps: 6, stepMs: 20 },
        bySeed: {
          '1': { steps: 6, stepMs: 20, action: 'crash', attempts: [1] },
          '2': { steps: 6, stepMs: 20, action: 'hang', attempts: [1] },
          '3': { steps: 6, stepMs: 20, action: 'diverge' },
          '4': { steps: 6, stepMs: 20, action: 'crash' },
        },
      },
      { gpus: 'none', workers: 2, heartbeatTimeoutMs: 1500 },
    );
    expect(r.error).toBeInstanceOf(SchedulerError);
    expect((r.error as SchedulerError).code).toBe('TRIALS_FAILED');
    const bySeed = new Map(trials(sb.db).map((t) => [t.config.seed, t]));
    expect(bySeed.get(0)).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(bySeed.get(1)).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(bySeed.get(2)).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(bySeed.get(3)).toMatchObject({ status: 'diverged', attempts: 1 });
    // Crashes every time: gives up after maxAttempts with the cause recorded.
    expect(bySeed.get(4)).toMatchObject({ status: 'failed', attempts: 2 });
    expect(bySeed.get(4)!.error).toMatch(/attempt 2: the trial process .* exited with code 1/);
    expect(r.err).toMatch(/no heartbeat for \d+ s/);
    expect(r.out).toMatch(/1 succeeded|3 succeeded, 1 diverged, 1 failed/);
    assertNoDuplicates(sb.db);
  });

  it('a trial over its timeout is killed and retried', async () => {
    const spec = sb.spec(
      'timeout',
      baselineSpec(
        'timeout',
        [0],
        'resources: { maxAttempts: 2, trialTimeout: 600ms, heartbeatInterval: 100ms, heartbeatTimeout: 5s }\n',
      ),
    );
    const r = await runFake(
      sb,
      spec,
      { default: { steps: 100, stepMs: 20 } },
      { gpus: 'none', heartbeatTimeoutMs: undefined, heartbeatMs: undefined },
    );
    expect((r.error as SchedulerError).code).toBe('TRIALS_FAILED');
    const [t] = trials(sb.db);
    expect(t).toMatchObject({ status: 'failed', attempts: 2 });
    expect(t!.error).toMatch(/exceeded the trial timeout/);
  });

  it('dependent trials start from their start trial checkpoint, after it', async () => {
    const spec = sb.spec(
      'deps',
      `name: deps
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: baseline
methods:
  baseline: {}
  ft:
    method: finetune
    compression: { decomposition: tucker2 }
grid:
  seed: [0, 1]
  ratio: [2, 3]
`,
    );
    const r = await runFake(sb, spec, { default: { steps: 3, stepMs: 10 } }, { gpus: 'none', workers: 2 });
    expect(r.error).toBeUndefined();
    const all = trials(sb.db);
    expect(all).toHaveLength(6);
    expect(all.every((t) => t.status === 'succeeded')).toBe(true);
    const log = readFakeLog(sb.logFile);
    for (const t of all.filter((x) => x.config.method === 'finetune')) {
      const start = t.config.start;
      if (start.kind !== 'trial') throw new Error('expected a trial start');
      const dep = all.find((x) => x.key === start.trialKey)!;
      expect(dep.config.seed).toBe(t.config.seed);
      const depEnd = log.find((e) => e.kind === 'end' && e.key === dep.key)!.t;
      const myStart = log.find((e) => e.kind === 'start' && e.key === t.key)!.t;
      expect(myStart).toBeGreaterThanOrEqual(depEnd);
    }
    expect(r.out).toMatch(/finetune\s+tucker2\s+2/);
  });

  it("allocation events reach the store; a retried trial keeps the succeeding attempt's record", async () => {
    const spec = sb.spec(
      'alloc',
      `name: alloc
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: baseline
methods:
  baseline: {}
  ft:
    method: finetune
    compression: { decomposition: tucker2 }
grid:
  seed: [0, 1]
  ratio: [2]
resources: { maxAttempts: 2 }
`,
    );
    const allocation = (rank: number): RankAllocationRecord => ({
      policy: 'model-ratio=2',
      budget: { kind: 'params', ratio: 2 },
      achieved: { params: 2 + rank / 100, macs: 1.5 },
      layers: [
        { name: 'conv1', ranks: [rank, rank + 1], error: 0.1 },
        { name: 'conv2', ranks: [2 * rank, 2 * rank + 1], error: 0.2 },
      ],
      measured: { attemptRank: rank },
    });
    const r = await runFake(
      sb,
      spec,
      {
        default: { steps: 4, stepMs: 10, allocations: [allocation(3)] },
        // Seed 1 reports an allocation, then crashes; its second attempt allocates differently.
        bySeed: {
          '1': {
            steps: 4,
            stepMs: 10,
            action: 'crash',
            attempts: [1],
            allocations: [allocation(5), allocation(7)],
          },
        },
      },
      { gpus: 'none', workers: 2 },
    );
    expect(r.error).toBeUndefined();
    const ft = trials(sb.db).filter((t) => t.config.method === 'finetune');
    expect(ft.map((t) => [t.config.seed, t.status, t.attempts]).sort()).toEqual([
      [0, 'succeeded', 1],
      [1, 'succeeded', 2],
    ]);
    // Every attempt's record is kept (attempt 1 of seed 1 crashed after reporting it) ...
    expect(sql(sb.db, 'SELECT attempt, policy FROM allocations ORDER BY trial_id, attempt')).toHaveLength(3);
    // ... and the views read the latest attempt's only.
    expect(
      sql(
        sb.db,
        'SELECT seed, attempt, budget_kind, budget_ratio, achieved_params_ratio, measured FROM trial_allocations ORDER BY seed',
      ),
    ).toEqual([
      {
        seed: 0,
        attempt: 1,
        budget_kind: 'params',
        budget_ratio: 2,
        achieved_params_ratio: 2.03,
        measured: '{"attemptRank":3}',
      },
      {
        seed: 1,
        attempt: 2,
        budget_kind: 'params',
        budget_ratio: 2,
        achieved_params_ratio: 2.07,
        measured: '{"attemptRank":7}',
      },
    ]);
    expect(
      sql(sb.db, 'SELECT seed, layer_index, layer, ranks FROM allocation_layers ORDER BY seed, layer_index'),
    ).toEqual([
      { seed: 0, layer_index: 0, layer: 'conv1', ranks: '[3,4]' },
      { seed: 0, layer_index: 1, layer: 'conv2', ranks: '[6,7]' },
      { seed: 1, layer_index: 0, layer: 'conv1', ranks: '[7,8]' },
      { seed: 1, layer_index: 1, layer: 'conv2', ranks: '[14,15]' },
    ]);
    // The layers rows of the succeeding attempt carry the same ranks.
    expect(sql(sb.db, 'SELECT seed, layer, ranks FROM trial_layers ORDER BY seed, layer')).toEqual([
      { seed: 0, layer: 'conv1', ranks: '[3,4]' },
      { seed: 0, layer: 'conv2', ranks: '[6,7]' },
      { seed: 1, layer: 'conv1', ranks: '[7,8]' },
      { seed: 1, layer: 'conv2', ranks: '[14,15]' },
    ]);
    // Baselines have no compression, hence no allocation.
    expect(sql(sb.db, "SELECT count(*) AS n FROM trial_allocations WHERE method = 'baseline'")).toEqual([
      { n: 0 },
    ]);
  });

  it('a failed start trial cancels its dependents instead of waiting forever', async () => {
    const spec = sb.spec(
      'depfail',
      `name: depfail
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: baseline
methods:
  baseline: {}
  pt: { method: posttrain, compression: { decomposition: svd, rank: 2 } }
resources: { maxAttempts: 1 }
`,
    );
    const r = await runFake(sb, spec, { byMethod: { baseline: { action: 'fail' } } }, { gpus: 'none' });
    expect((r.error as SchedulerError).code).toBe('TRIALS_FAILED');
    const all = trials(sb.db);
    expect(all.find((t) => t.config.method === 'baseline')!.status).toBe('failed');
    expect(all.find((t) => t.config.method === 'posttrain')).toMatchObject({
      status: 'cancelled',
      attempts: 0,
    });
  });

  it('a second run of a finished sweep runs nothing', async () => {
    const spec = sb.spec('twice', baselineSpec('twice', [0, 1, 2]));
    const first = await runFake(sb, spec, { default: { steps: 2, stepMs: 5 } }, { gpus: 'none', workers: 2 });
    expect(first.result?.inserted).toBe(3);
    expect(first.result?.run?.attempts).toHaveLength(3);
    const second = await runFake(
      sb,
      spec,
      { default: { steps: 2, stepMs: 5 } },
      { gpus: 'none', workers: 2 },
    );
    expect(second.error).toBeUndefined();
    expect(second.result).toMatchObject({ inserted: 0, existing: 3 });
    expect(second.result?.run?.attempts).toHaveLength(0);
    expect(readFakeLog(sb.logFile).filter((x) => x.kind === 'start')).toHaveLength(3);
    expect(second.out).toMatch(/3 succeeded/);
  });

  it('Ctrl-C cancels running trials cleanly; the next run resumes only the unfinished points', async () => {
    const spec = sb.spec('sigint', baselineSpec('sigint', [0, 1, 2, 3]));
    const ac = new AbortController();
    const running = runFake(
      sb,
      spec,
      { default: { steps: 40, stepMs: 25 } },
      { gpus: 'none', workers: 2, signal: ac.signal },
    );
    await waitFor(
      () => readFakeLog(sb.logFile).filter((x) => x.kind === 'start').length >= 2,
      20_000,
      'two trials running',
    );
    ac.abort('SIGINT');
    const r = await running;
    expect((r.error as SchedulerError).code).toBe('INTERRUPTED');
    const after = trials(sb.db);
    // Cancelled attempts answered the cancel (clean stop) and went back to pending; nothing ran afterwards.
    expect(after.map((t) => t.status).sort()).toEqual(['pending', 'pending', 'pending', 'pending']);
    const log1 = readFakeLog(sb.logFile);
    expect(log1.filter((x) => x.kind === 'end' && x.outcome === 'CANCELLED')).toHaveLength(2);
    const resumed = await runFake(
      sb,
      spec,
      { default: { steps: 2, stepMs: 5 } },
      { gpus: 'none', workers: 2 },
    );
    expect(resumed.error).toBeUndefined();
    expect(resumed.result?.run?.attempts).toHaveLength(4);
    expect(trials(sb.db).every((t) => t.status === 'succeeded')).toBe(true);
    assertNoDuplicates(sb.db);
  });

  it('--dry-run prints the points and the count and writes nothing', async () => {
    const spec = sb.spec('dry', baselineSpec('dry', [0, 1, 2]));
    const r = await runFake(sb, spec, {}, { dryRun: true });
    expect(r.error).toBeUndefined();
    expect(r.out).toMatch(/3 trials \(3 baseline\)/);
    expect(r.out.split('\n').filter((l) => /^[0-9a-f]{12} {2}baseline seed=\d/.test(l))).toHaveLength(3);
    expect(existsSync(sb.db)).toBe(false);
    expect(existsSync(sb.runsDir)).toBe(false);
  });

  it('writes one JSON log per trial and the coordinator log', async () => {
    const spec = sb.spec('logs', baselineSpec('logs', [0, 1]));
    const r = await runFake(sb, spec, { default: { steps: 2, stepMs: 5 } }, { gpus: 'none' });
    expect(r.error).toBeUndefined();
    const dir = join(sb.runsDir, 'logs');
    const coord = readFileSync(join(dir, 'coordinator.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string });
    expect(coord.some((l) => /^done /.test(l.msg))).toBe(true);
    const trialDirs = readdirSync(dir).filter((d) => /^[0-9a-f]{16}$/.test(d));
    expect(trialDirs).toHaveLength(2);
    for (const d of trialDirs) {
      const lines = readFileSync(join(dir, d, 'trial.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { msg: string; trial: string });
      expect(lines.map((l) => l.msg)).toContain('finished');
      expect(lines[0]!.trial.startsWith(d)).toBe(true);
      expect(existsSync(join(dir, d, 'attempt-1', 'final.ckpt.json'))).toBe(true);
    }
  });
});

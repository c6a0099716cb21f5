// The BullMQ backend against a real redis-server (started here on a random loopback port), with two
// `flatrank worker` processes of the built CLI and the fake trainer.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SchedulerError } from '@flatrank/protocol';
import { ResultsStore, trialDetail } from '@flatrank/store';
import {
  assertNoDuplicates,
  baselineSpec,
  fakeTrainerPath,
  installFakeNvidiaSmi,
  readFakeLog,
  redisServerPath,
  startTestRedis,
  waitFor,
  type FakeTrainerSettings,
  type Proc,
  type ProcessSandbox,
  type TestRedis,
} from '@flatrank/testing';
import { assertBuilt, cliSandbox, runArgs, runCoordinator } from './processes.js';

const hasRedis = redisServerPath() !== null;
if (!hasRedis)
  console.warn(
    'SKIPPED: BullMQ tests need redis-server (apt-get install redis-server); it is not installed here',
  );

const FAST = 'resources: { heartbeatInterval: 200ms, heartbeatTimeout: 3s, maxAttempts: 3 }\n';

describe.skipIf(!hasRedis)(
  'bullmq backend (real redis-server, two flatrank worker processes)',
  { timeout: 120_000 },
  () => {
    let redis: TestRedis;
    let sb: ProcessSandbox;
    let workers: Proc[] = [];
    let queue = '';
    let n = 0;

    beforeAll(async () => {
      assertBuilt();
      redis = await startTestRedis();
    });
    afterAll(async () => {
      await redis?.stop();
    });
    beforeEach(() => {
      sb = cliSandbox();
      queue = `q${process.pid}-${n++}`;
    });
    afterEach(async () => {
      await sb.cleanup();
      workers = [];
    });

    /** Two workers on GPU 0 and GPU 1 of a fake two-GPU machine, once they listen on the queue. */
    async function startWorkers(fake: FakeTrainerSettings, count = 2, concurrency = 1, lockMs = 2000) {
      const path = installFakeNvidiaSmi(join(sb.dir, 'bin'), 2);
      for (let i = 0; i < count; i++) {
        workers.push(
          sb.spawn(
            [
              'worker',
              '--redis',
              redis.url,
              '--queue',
              queue,
              '--gpus',
              String(i),
              '--concurrency',
              String(concurrency),
              '--runs-dir',
              sb.runsDir,
              '--child-entry',
              fakeTrainerPath,
              '--lock-ms',
              String(lockMs),
            ],
            { fake, env: { PATH: path } },
          ),
        );
      }
      await waitFor(
        () => workers.every((w) => /worker .* on queue/.test(w.output())),
        // A cold CLI start takes seconds on a loaded 2-core machine.
        60_000,
        `workers to start: ${workers.map((w) => w.output()).join('\n')}`,
      );
    }

    /**
     * Runs `spec` on the workers; once worker 0 (GPU 0) runs a trial and `settleMs` later, sends
     * that worker process `signal`. Returns the run and the trial it was running.
     */
    async function signalWorker0MidTrial(
      spec: string,
      signal: NodeJS.Signals,
      o: { timeoutMs?: number; settleMs?: number } = {},
    ) {
      const running = bull(spec);
      const [victim] = await sb.waitForLog(
        (x) => x.kind === 'start' && x.cuda === '0',
        'a trial on worker 0',
        {
          timeoutMs: o.timeoutMs ?? 20_000,
        },
      );
      await new Promise((r) => setTimeout(r, o.settleMs ?? 300));
      workers[0]!.proc.kill(signal);
      return { running, victim: victim! };
    }

    const bull = (spec: string, extra: Parameters<typeof runCoordinator>[3] = {}) =>
      runCoordinator(
        sb,
        spec,
        {},
        {
          executor: 'bullmq',
          redis: redis.url,
          queue,
          heartbeatMs: undefined,
          heartbeatTimeoutMs: undefined,
          cancelGraceMs: 3000,
          ...extra,
        },
      );

    function trials() {
      const s = ResultsStore.open(sb.db, { readonly: true });
      try {
        return s.listTrials({});
      } finally {
        s.close();
      }
    }

    it('runs a sweep on two workers, each trial on its worker GPU; a second run runs nothing', async () => {
      await startWorkers({ default: { steps: 6, stepMs: 60 } });
      const spec = sb.spec('two', baselineSpec('two', [0, 1, 2, 3, 4, 5], FAST));
      const r = await bull(spec);
      expect(r.error).toBeUndefined();
      expect(trials().every((t) => t.status === 'succeeded')).toBe(true);
      const starts = readFakeLog(sb.logFile).filter((x) => x.kind === 'start');
      expect(starts).toHaveLength(6);
      // Both machines pulled work, and each child saw only its worker's GPU.
      expect(new Set(starts.map((s) => s.cuda))).toEqual(new Set(['0', '1']));
      expect(assertNoDuplicates(sb.db)).toEqual({ results: 6, succeeded: 6 });
      const again = await bull(spec);
      expect(again.error).toBeUndefined();
      expect(again.result?.run?.attempts).toHaveLength(0);
      expect(readFakeLog(sb.logFile).filter((x) => x.kind === 'start')).toHaveLength(6);
    });

    it('dependent trials run after their start trial, from its checkpoint, on any worker; allocation events arrive through Redis', async () => {
      const allocation = {
        policy: 'alloc-error:params=2',
        budget: { kind: 'params' as const, ratio: 2 },
        achieved: { params: 2.004, macs: 1.7 },
        layers: [
          { name: 'conv1', ranks: [2, 4], error: 0.12 },
          { name: 'conv2', ranks: [5, 9], error: 0.12, measured: { candidates: [4, 5, 6] } },
        ],
        measured: { maxError: 0.12 },
      };
      await startWorkers({ default: { steps: 3, stepMs: 20, allocations: [allocation] } });
      const spec = sb.spec(
        'deps',
        `name: deps
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: baseline
methods:
  baseline: {}
  ft: { method: finetune, compression: { decomposition: tucker2 } }
grid:
  seed: [0, 1]
  ratio: [2, 3]
${FAST}`,
      );
      const r = await bull(spec);
      expect(r.error).toBeUndefined();
      const all = trials();
      expect(all).toHaveLength(6);
      expect(all.every((t) => t.status === 'succeeded')).toBe(true);
      const log = readFakeLog(sb.logFile);
      for (const t of all.filter((x) => x.config.start.kind === 'trial')) {
        const dep = (t.config.start as { trialKey: string }).trialKey;
        expect(log.find((e) => e.kind === 'start' && e.key === t.key)!.t).toBeGreaterThanOrEqual(
          log.find((e) => e.kind === 'end' && e.key === dep)!.t,
        );
      }
      // Every fine-tuning's record, relayed by a worker, is read back whole; baselines have none.
      const s = ResultsStore.open(sb.db, { readonly: true });
      try {
        for (const t of all) {
          const { allocation: read } = trialDetail(s, t.key);
          if (t.config.method === 'finetune') expect(read).toEqual({ attempt: 1, ...allocation });
          else expect(read).toBeNull();
        }
      } finally {
        s.close();
      }
    });

    it('kill -9 of a worker mid-trial: the trial is retried on the other worker, finished, no duplicates', async () => {
      await startWorkers({ default: { steps: 40, stepMs: 50 } });
      const spec = sb.spec('killw', baselineSpec('killw', [0, 1, 2], FAST));
      // Once worker 0 (GPU 0) runs a trial, kill that worker process hard.
      const { running, victim } = await signalWorker0MidTrial(spec, 'SIGKILL');
      const r = await running;
      expect(r.error).toBeUndefined();
      const all = trials();
      expect(all.every((t) => t.status === 'succeeded')).toBe(true);
      const t = all.find((x) => x.key === victim.key)!;
      expect(t.attempts).toBeGreaterThanOrEqual(2);
      // Its successful attempt ran on the surviving worker (GPU 1).
      expect(t.environment?.cudaVisibleDevices).toBe('1');
      expect(assertNoDuplicates(sb.db)).toEqual({ results: 3, succeeded: 3 });
      expect(r.err).toMatch(/no event from its worker|job failed in the queue/);
    });

    it('a killed worker is declared lost within 1.5 x heartbeatTimeout + 2 s by the coordinator', async () => {
      // BullMQ's stall check out of the way (10 min locks): the coordinator's heartbeat check alone.
      await startWorkers({ default: { steps: 150, stepMs: 50 } }, 2, 1, 600_000);
      const spec = sb.spec('lossbound', baselineSpec('lossbound', [0, 1], FAST.replace('3s', '2s')));
      const { running, victim } = await signalWorker0MidTrial(spec, 'SIGKILL', {
        timeoutMs: 30_000,
        settleMs: 500,
      });
      const killedAt = Date.now();
      await waitFor(
        () => (trials().find((t) => t.key === victim.key)?.attempts ?? 0) >= 2,
        60_000,
        'the attempt of the killed worker declared lost',
      );
      const detectedMs = Date.now() - killedAt;
      const boundMs = 1.5 * 2000 + 2000;
      console.log(`worker loss detected ${detectedMs} ms after kill -9 (documented bound ${boundMs} ms)`);
      // Silence counts from the last event (heartbeats every 200 ms); the check runs every 0.5 s.
      expect(detectedMs).toBeGreaterThan(boundMs - 1000);
      expect(detectedMs).toBeLessThan(boundMs + 3000);
      const r = await running;
      expect(r.error).toBeUndefined();
      expect(r.err).toMatch(
        /lost {2}[0-9a-f]{10} baseline seed=\d: no event from its worker .* \(will retry\)/,
      );
    });

    it('crash, hang, diverge and failure on the workers: retried, killed, recorded', async () => {
      await startWorkers({
        default: { steps: 6, stepMs: 30 },
        bySeed: {
          '1': { steps: 6, stepMs: 30, action: 'crash', attempts: [1] },
          '2': { steps: 6, stepMs: 30, action: 'hang', attempts: [1] },
          '3': { steps: 6, stepMs: 30, action: 'diverge' },
          '4': { steps: 6, stepMs: 30, action: 'fail' },
        },
      });
      const spec = sb.spec('faults', baselineSpec('faults', [0, 1, 2, 3, 4], FAST.replace('3s', '2s')));
      const r = await bull(spec);
      expect((r.error as SchedulerError).code).toBe('TRIALS_FAILED');
      const bySeed = new Map(trials().map((t) => [t.config.seed, t]));
      expect(bySeed.get(0)).toMatchObject({ status: 'succeeded', attempts: 1 });
      expect(bySeed.get(1)).toMatchObject({ status: 'succeeded', attempts: 2 });
      expect(bySeed.get(2)).toMatchObject({ status: 'succeeded', attempts: 2 });
      expect(bySeed.get(3)).toMatchObject({ status: 'diverged', attempts: 1 });
      expect(bySeed.get(4)).toMatchObject({ status: 'failed', attempts: 1, errorCode: 'FAKE_FAILURE' });
      // The hung child was killed by its worker's watchdog, which reported the cause.
      expect(r.err).toMatch(/ATTEMPT_LOST: attempt 1 on .*: no heartbeat for \d+ s/);
      expect(r.err).toMatch(/ATTEMPT_LOST: attempt 1 on .*exited with code 1 before reporting an end/);
      assertNoDuplicates(sb.db);
      // --retry-failed on this executor too: the failed point gets a fresh budget (it fails again here).
      const again = await bull(spec, { retryFailed: true });
      expect(again.err).toMatch(/--retry-failed: 1 failed and 0 cancelled point\(s\) get a fresh budget/);
      expect(trials().find((t) => t.config.seed === 4)).toMatchObject({
        status: 'failed',
        attempts: 2,
        countedAttempts: 1,
      });
    });

    it('Ctrl-C of a worker mid-trial: its attempt is handed back and finished by the other worker', async () => {
      await startWorkers({ default: { steps: 30, stepMs: 50 } });
      const spec = sb.spec('wint', baselineSpec('wint', [0, 1, 2], FAST));
      const { running, victim } = await signalWorker0MidTrial(spec, 'SIGINT');
      expect(await workers[0]!.exited).toBe(0);
      const r = await running;
      expect(r.error).toBeUndefined();
      const t = trials().find((x) => x.key === victim.key)!;
      expect(t).toMatchObject({ status: 'succeeded', attempts: 2 });
      expect(t.environment?.cudaVisibleDevices).toBe('1');
      // The machine going down is not the trial's fault: the attempt was interrupted, not failed.
      expect(r.err).toMatch(
        /interrupted [0-9a-f]{10} baseline seed=\d: worker .* shut down during attempt 1/,
      );
      assertNoDuplicates(sb.db);
    });

    it('a Redis restart mid-sweep loses and duplicates no result', async () => {
      await startWorkers({ default: { steps: 20, stepMs: 50 } }, 2, 1);
      const spec = sb.spec('restart', baselineSpec('restart', [0, 1, 2, 3, 4, 5], FAST.replace('3s', '5s')));
      const running = bull(spec);
      await sb.waitForLog((x) => x.kind === 'end', 'a finished trial', { timeoutMs: 30_000 });
      await sb.waitForLog((x) => x.kind === 'start', 'trials running', { count: 3, timeoutMs: 30_000 });
      // Everything in Redis is gone: queued jobs, unread events, acks, locks.
      await redis.kill();
      await new Promise((r) => setTimeout(r, 800));
      await redis.start();
      const r = await running;
      expect(r.error).toBeUndefined();
      const all = trials();
      expect(all).toHaveLength(6);
      expect(all.every((t) => t.status === 'succeeded')).toBe(true);
      expect(assertNoDuplicates(sb.db)).toEqual({ results: 6, succeeded: 6 });
      // The attempts Redis took with it were interrupted: none counts toward maxAttempts.
      expect(all.map((t) => t.countedAttempts)).toEqual([1, 1, 1, 1, 1, 1]);
      // The coordinator noticed: it lost Redis, came back and checked its queued attempts.
      expect(r.err).toMatch(/lost the connection to Redis/);
      expect(r.err).toMatch(/reconnected to Redis/);
      // Queued jobs died with Redis: enqueued again as new attempts (each trial still ran to one result).
      expect(r.err).toMatch(
        /interrupted [0-9a-f]{10} baseline seed=\d: its job vanished from Redis before it started/,
      );
    });

    it('the coordinator killed and restarted: only unfinished points run', async () => {
      await startWorkers({ default: { steps: 8, stepMs: 50 } });
      const spec = sb.spec('coord', baselineSpec('coord', [0, 1, 2, 3, 4, 5, 6, 7], FAST));
      const args = runArgs(sb, spec, '--executor', 'bullmq', '--redis', redis.url, '--queue', queue);
      const first = sb.spawn(args);
      await sb.waitForLog((x) => x.kind === 'end', 'three finished trials', { count: 3, timeoutMs: 30_000 });
      first.proc.kill('SIGKILL');
      await first.exited;
      const store = ResultsStore.open(sb.db, { readonly: true });
      const doneBefore = store.listTrials({ status: 'succeeded' }).map((t) => t.key);
      store.close();
      expect(doneBefore.length).toBeGreaterThanOrEqual(1);
      const second = sb.spawn(args);
      const code = await Promise.race([
        second.exited,
        new Promise((r) => setTimeout(() => r('timeout'), 60_000)),
      ]);
      if (code !== 0) second.proc.kill('SIGKILL');
      expect(
        code,
        `${second.output()}\n--- worker 0:\n${workers[0]!.output()}\n--- worker 1:\n${workers[1]!.output()}`,
      ).toBe(0);
      expect(trials().every((t) => t.status === 'succeeded')).toBe(true);
      const starts = readFakeLog(sb.logFile).filter((x) => x.kind === 'start');
      // No trial that had succeeded before the kill ran again.
      for (const k of doneBefore) expect(starts.filter((s) => s.key === k)).toHaveLength(1);
      expect(assertNoDuplicates(sb.db)).toEqual({ results: 8, succeeded: 8 });
    });

    it('Ctrl-C of the coordinator: queued jobs removed, running attempts cancelled on the workers, resumable', async () => {
      await startWorkers({ default: { steps: 60, stepMs: 50 } });
      const spec = sb.spec('intr', baselineSpec('intr', [0, 1, 2, 3, 4], FAST));
      const ac = new AbortController();
      const running = bull(spec, { signal: ac.signal });
      await sb.waitForLog((x) => x.kind === 'start', 'two running trials', { count: 2, timeoutMs: 30_000 });
      ac.abort('SIGINT');
      const r = await running;
      expect((r.error as SchedulerError).code).toBe('INTERRUPTED');
      expect(trials().map((t) => t.status)).toEqual(['pending', 'pending', 'pending', 'pending', 'pending']);
      // The workers stopped their children cleanly (cancel -> failed CANCELLED), nothing else started.
      const log = readFakeLog(sb.logFile);
      expect(log.filter((x) => x.kind === 'end' && x.outcome === 'CANCELLED')).toHaveLength(2);
      expect(log.filter((x) => x.kind === 'start')).toHaveLength(2);
      const again = await runCoordinator(
        sb,
        spec,
        { default: { steps: 2, stepMs: 10 } },
        {
          executor: 'bullmq',
          redis: redis.url,
          queue,
          heartbeatMs: undefined,
          heartbeatTimeoutMs: undefined,
        },
      );
      expect(again.error).toBeUndefined();
      expect(trials().every((t) => t.status === 'succeeded')).toBe(true);
      assertNoDuplicates(sb.db);
    });

    it('resume of a cancelled run after a spec edit: dropped pending points are never enqueued', async () => {
      await startWorkers({ default: { steps: 20, stepMs: 50 } });
      const ac = new AbortController();
      const v1 = sb.spec('edit', baselineSpec('edit', [0, 1, 2, 3, 4, 5], FAST));
      const running = bull(v1, { signal: ac.signal });
      await sb.waitForLog((x) => x.kind === 'start', 'two running trials', { count: 2, timeoutMs: 30_000 });
      ac.abort('SIGINT');
      expect(((await running).error as SchedulerError).code).toBe('INTERRUPTED');
      const startsBefore = readFakeLog(sb.logFile).filter((x) => x.kind === 'start').length;
      // v2 keeps seeds 1 and 4, drops 0, 2, 3 and 5 (all pending now), adds 6.
      const v2 = sb.spec('edit', baselineSpec('edit', [1, 4, 6], FAST));
      const again = await bull(v2);
      expect(again.error).toBeUndefined();
      expect(again.err).toContain(
        'sweep edit: 4 points no longer in the spec (kept, not run; 0 of them succeeded)',
      );
      const seedsRun = readFakeLog(sb.logFile)
        .filter((x) => x.kind === 'start')
        .map((x) => Number(x.seed))
        .slice(startsBefore);
      expect(seedsRun.sort()).toEqual([1, 4, 6]);
      expect(Object.fromEntries(trials().map((t) => [t.axes.seed, t.status]))).toEqual({
        0: 'pending',
        1: 'succeeded',
        2: 'pending',
        3: 'pending',
        4: 'succeeded',
        5: 'pending',
        6: 'succeeded',
      });
      assertNoDuplicates(sb.db);
    });

    it('refuses a Redis whose maxmemory-policy is not noeviction', async () => {
      const lru = await startTestRedis({ maxmemoryPolicy: 'allkeys-lru' });
      try {
        const spec = sb.spec('lru', baselineSpec('lru', [0], FAST));
        const r = await runCoordinator(sb, spec, {}, { executor: 'bullmq', redis: lru.url, queue });
        expect(r.error).toBeInstanceOf(SchedulerError);
        expect((r.error as SchedulerError).code).toBe('REDIS_EVICTION_POLICY');
        expect((r.error as Error).message).toMatch(/maxmemory-policy allkeys-lru; .* need noeviction/);
        const w = sb.spawn([
          'worker',
          '--redis',
          lru.url,
          '--gpus',
          'none',
          '--child-entry',
          fakeTrainerPath,
        ]);
        expect(await w.exited).toBe(8);
        expect(w.output()).toMatch(/CONFIG SET maxmemory-policy noeviction/);
      } finally {
        await lru.stop();
      }
    });
  },
);

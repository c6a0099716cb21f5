/**
 * `flatrank run --backend bullmq`: the coordinator claims trials in the store (it stays the only
 * database writer), enqueues one BullMQ job per attempt (jobId = trial key + attempt: never twice),
 * applies the events workers send back through the sweep's Redis stream, and decides about attempts
 * that went silent (dead worker, Redis restart) by heartbeat timeout and job state.
 */
import { Queue } from 'bullmq';
import { isTerminalEvent, type TrialEnvelope } from '@flatrank/protocol';
import {
  HOST,
  liveSnapshot,
  logRefusedWrite,
  recoverOrphans,
  startCheckpoint,
  workerId,
  type CoordinatorOptions,
} from '../common.js';
import { EventWriter } from '../event-writer.js';
import type { AttemptRecord, RunResult } from '../local.js';
import { trialLabel, type ProgressSnapshot, type RunningInfo } from '../progress.js';
import { AckTracker } from './channel.js';
import {
  ackField,
  cancelChannel,
  channelKeys,
  connectChecked,
  DEFAULT_QUEUE,
  jobId as makeJobId,
  redisConnection,
  type TrialJobData,
} from './redis.js';

export interface BullmqRunOptions extends CoordinatorOptions {
  redisUrl: string;
  queueName?: string;
  /** Attempts claimed and enqueued at most at once (default 256). */
  maxQueued?: number;
}

interface Inflight {
  key: string;
  attempt: number;
  jobId: string;
  label: string;
  epochs: number;
  enqueuedAt: number;
  started: boolean;
  lastSeen: number;
  startedAt: number | null;
  device: string | null;
  epoch: number | null;
  step: number | null;
  /** When the job was first seen missing / completed without a terminal event. */
  oddSince: number | null;
}

export async function runBullmqCoordinator(o: BullmqRunOptions): Promise<RunResult> {
  const t0 = Date.now();
  const { store, sweep, logger } = o;
  const queueName = o.queueName ?? DEFAULT_QUEUE;
  const keys = channelKeys(queueName, sweep.name);
  const leaseMs = o.heartbeatTimeoutMs * 2;
  const silenceMs = Math.round(o.heartbeatTimeoutMs * 1.5) + 2000;
  const me = workerId('bullmq');
  const conn = redisConnection(o.redisUrl, `flatrank-coordinator-${process.pid}`);
  await connectChecked(conn, o.redisUrl, logger);
  const reader = conn.duplicate();
  await reader.connect().catch(() => undefined);
  conn.on('error', (e: Error) => closed || logger.debug(`redis: ${e.message}`));
  reader.on('error', (e: Error) => closed || logger.debug(`redis reader: ${e.message}`));
  let redisDown = false;
  let closed = false;
  conn.on('close', () => {
    if (closed) return;
    if (!redisDown) logger.warn(`lost the connection to Redis at ${o.redisUrl}; reconnecting`);
    redisDown = true;
  });
  conn.on('ready', () => {
    if (redisDown && !closed) logger.warn(`reconnected to Redis at ${o.redisUrl}; checking queued attempts`);
    redisDown = false;
  });
  const queue = new Queue<TrialJobData>(queueName, { connection: conn });
  queue.on('error', (e) => closed || logger.debug(`queue: ${e.message}`));

  const inflight = new Map<string, Inflight>(); // by job id
  const attempts: AttemptRecord[] = [];
  const acks = new AckTracker();
  // Acks written by a previous coordinator of this sweep: what they cover is applied and gone.
  for (const [field, v] of Object.entries(await conn.hgetall(keys.acks))) acks.seed(field, Number(v));
  const durations: number[] = [];
  let stopping = false;

  // Attempts of a coordinator of this host that died: adopt their jobs when they are still in
  // Redis, otherwise put them back to pending.
  // Every membership: a job already in flight for a point the latest spec dropped is adopted and
  // finishes (its result is kept); the point is never handed out again.
  for (const t of store.listTrials({ sweepId: sweep.id, status: 'running', membership: 'all' })) {
    if (!t.worker?.startsWith(`bullmq:`)) continue;
    const id = makeJobId(t.key, t.attempts);
    const state = await queue.getJobState(id).catch(() => 'unknown');
    const deadHere = recoverCandidates(t.worker);
    if (!deadHere) continue;
    if (
      state === 'waiting' ||
      state === 'active' ||
      state === 'delayed' ||
      state === 'prioritized' ||
      state === 'waiting-children'
    ) {
      inflight.set(id, newInflight(t.key, t.attempts, trialLabel(t.config), t.config.training.epochs));
      logger.info({ trial: t.key }, `adopted ${t.key.slice(0, 10)} attempt ${t.attempts} (job ${state})`);
    } else {
      store.endAttempt(t.key, t.attempts, {
        status: 'pending',
        error: `interrupted: its coordinator died and the job is ${state}`,
      });
    }
  }
  recoverOrphans(store, sweep.id, ['local'], (key, reason) =>
    logger.warn({ trial: key }, `${key.slice(0, 10)}: ${reason}; back to pending`),
  );

  function recoverCandidates(worker: string): boolean {
    const m = /^bullmq:(.+):(\d+)$/.exec(worker);
    if (!m) return false;
    if (m[1] !== HOST) return false; // another host: its lease decides
    const pid = Number(m[2]);
    if (pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }

  function newInflight(key: string, attempt: number, label: string, epochs: number): Inflight {
    const now = Date.now();
    return {
      key,
      attempt,
      jobId: makeJobId(key, attempt),
      label,
      epochs,
      enqueuedAt: now,
      started: false,
      lastSeen: now,
      startedAt: null,
      device: null,
      epoch: null,
      step: null,
      oddSince: null,
    };
  }

  const endInflight = (f: Inflight, outcome: AttemptRecord['outcome'], reason: string | null) => {
    inflight.delete(f.jobId);
    attempts.push({
      key: f.key,
      attempt: f.attempt,
      slot: f.device ?? 'remote',
      outcome,
      reason,
      totalMs: Date.now() - f.enqueuedAt,
      bootMs: null,
      workMs: null,
    });
    if (outcome === 'succeeded' && f.startedAt) durations.push(Date.now() - f.startedAt);
  };

  const writer = new EventWriter({
    store,
    leaseMs,
    onError: logRefusedWrite(logger),
  });

  const snapshot = (): ProgressSnapshot =>
    liveSnapshot({
      store,
      sweep,
      t0,
      durations,
      running: [...inflight.values()].map((f): RunningInfo => ({
        key: f.key,
        label: f.label,
        device: f.started ? f.device : 'queued',
        worker: null,
        attempt: f.attempt,
        epoch: f.epoch,
        epochs: f.epochs,
        step: f.step,
        startedAt: f.startedAt,
      })),
      parallel: () => Math.max(1, [...inflight.values()].filter((f) => f.started).length),
    });
  const progress = () => o.onProgress?.(snapshot());

  /** Applies a batch of envelopes read from the stream, then acknowledges them. */
  const apply = async (envs: TrialEnvelope[]): Promise<void> => {
    const ackNow = new Map<string, { key: string; attempt: number }>();
    for (const env of envs) {
      acks.receive(env.trialKey, env.attempt, env.seq);
      ackNow.set(ackField(env.trialKey, env.attempt), { key: env.trialKey, attempt: env.attempt });
      const f = inflight.get(makeJobId(env.trialKey, env.attempt));
      const ev = env.event;
      if (f) {
        f.lastSeen = Date.now();
        f.oddSince = null;
        if (!f.started) {
          f.started = true;
          f.startedAt = Date.now();
        }
        if (ev.type === 'started')
          f.device = `${ev.env.host} ${ev.env.cudaVisibleDevices ? `cuda:${ev.env.cudaVisibleDevices}` : 'cpu'}`;
        if (ev.type === 'heartbeat' || ev.type === 'metric') {
          f.step = ev.step;
          f.epoch = ev.epoch;
        }
      }
      if (f && isTerminalEvent(ev)) {
        if (ev.type === 'failed' && ev.error.code === 'CANCELLED' && stopping) {
          writer.flush();
          store.endAttempt(f.key, f.attempt, {
            status: 'pending',
            error: `cancelled (interrupted) at attempt ${f.attempt}; runs again on the next flatrank run`,
          });
          endInflight(f, 'cancelled', 'interrupted');
          continue;
        }
        writer.push(env);
        if (ev.type === 'finished') {
          endInflight(f, 'succeeded', null);
          logger.info(
            { trial: f.key, attempt: f.attempt },
            `done  ${f.key.slice(0, 10)} ${f.label}: accuracy ${ev.summary.accuracyFinal.toFixed(4)} (${f.device ?? 'remote'})`,
          );
        } else if (ev.type === 'diverged') {
          endInflight(f, 'diverged', ev.reason);
          logger.warn(
            { trial: f.key },
            `diverged ${f.key.slice(0, 10)} ${f.label}: ${ev.reason} (recorded, not retried)`,
          );
        } else {
          endInflight(f, ev.error.code === 'ATTEMPT_LOST' ? 'lost' : 'failed', ev.error.message);
          const again = ev.retryable && f.attempt < o.maxAttempts;
          logger.error(
            { trial: f.key, attempt: f.attempt },
            `failed ${f.key.slice(0, 10)} ${f.label}: ${ev.error.code}: ${ev.error.message}${again ? ' (will retry)' : ''}`,
          );
        }
        continue;
      }
      writer.push(env);
    }
    writer.flush();
    const pipe = conn.pipeline();
    for (const { key, attempt } of ackNow.values()) {
      const c = acks.contiguous(key, attempt);
      if (c >= 0) pipe.hset(keys.acks, ackField(key, attempt), String(c));
    }
    pipe.expire(keys.acks, 7 * 24 * 3600);
    await pipe.exec();
  };

  /** Claims and enqueues while there is room. */
  const enqueue = async (): Promise<void> => {
    while (!stopping && inflight.size < (o.maxQueued ?? 256)) {
      const c = store.claimTrial({
        sweepId: sweep.id,
        worker: me,
        device: null,
        leaseMs,
        maxAttempts: o.maxAttempts,
      });
      if (!c) return;
      const start = startCheckpoint(store, c.config, o.checkpointDir ?? null);
      if (start.error) {
        store.endAttempt(c.key, c.attempt, { status: 'failed', error: start.error, retryable: false });
        logger.error({ trial: c.key }, `${c.key.slice(0, 10)}: ${start.error}`);
        continue;
      }
      const f = newInflight(c.key, c.attempt, trialLabel(c.config), c.config.training.epochs);
      inflight.set(f.jobId, f);
      const data: TrialJobData = {
        v: 1,
        sweep: sweep.name,
        trialKey: c.key,
        attempt: c.attempt,
        config: c.config,
        startCheckpoint: start.path,
        backend: o.backend,
        heartbeatMs: o.heartbeatMs,
        heartbeatTimeoutMs: o.heartbeatTimeoutMs,
        trialTimeoutMs: o.trialTimeoutMs,
        eventsKey: keys.events,
        acksKey: keys.acks,
      };
      // attempts: 1 — retries are the coordinator's decision (a new attempt = a new job id).
      await queue.add('trial', data, {
        jobId: f.jobId,
        attempts: 1,
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 24 * 3600 },
      });
      logger.info(
        { trial: c.key, attempt: c.attempt },
        `queued ${c.key.slice(0, 10)} ${f.label}${c.attempt > 1 ? ` (attempt ${c.attempt})` : ''}`,
      );
    }
  };

  /** Leases, silent attempts, jobs that failed or vanished from Redis. */
  const reconcile = async (): Promise<void> => {
    const now = Date.now();
    for (const f of [...inflight.values()]) {
      if (!store.heartbeat(f.key, f.attempt, leaseMs)) {
        // Not ours any more (ended elsewhere or re-claimed after our lease expired).
        endInflight(f, 'lost', 'lease lost');
        continue;
      }
      // Longer than the worker's own watchdog (heartbeatTimeout), so that a hung child is reported
      // by its worker; only a silent worker (killed, cut off from Redis) is declared dead here.
      if (f.started && now - f.lastSeen > silenceMs) {
        const why = `attempt ${f.attempt}: no event from its worker (${f.device ?? '?'}) for ${Math.round((now - f.lastSeen) / 1000)} s (worker died or lost Redis)`;
        store.endAttempt(f.key, f.attempt, { status: 'failed', error: why, retryable: true });
        await queue.remove(f.jobId).catch(() => 0);
        endInflight(f, 'lost', why);
        logger.error(
          { trial: f.key, attempt: f.attempt },
          `lost  ${f.key.slice(0, 10)} ${f.label}: ${why}${f.attempt < o.maxAttempts ? ' (will retry)' : ''}`,
        );
        continue;
      }
      const state = await queue.getJobState(f.jobId);
      if (state === 'failed') {
        const job = await queue.getJob(f.jobId);
        const why = `attempt ${f.attempt}: job failed in the queue: ${job?.failedReason ?? 'unknown reason'}`;
        store.endAttempt(f.key, f.attempt, { status: 'failed', error: why, retryable: true });
        endInflight(f, 'lost', why);
        logger.error({ trial: f.key, attempt: f.attempt }, `lost  ${f.key.slice(0, 10)} ${f.label}: ${why}`);
      } else if (state === 'unknown' || state === 'completed') {
        // Completed: its terminal event is on the way (or was lost with a Redis restart and will be
        // re-sent). Missing before any event: the job was lost (Redis restart); try again as a new attempt.
        f.oddSince ??= now;
        if (!f.started && state === 'unknown' && now - f.oddSince > 1000) {
          store.endAttempt(f.key, f.attempt, {
            status: 'pending',
            error: `attempt ${f.attempt}: its job vanished from Redis before it started (Redis restart?)`,
          });
          endInflight(f, 'lost', 'job vanished');
          logger.warn(
            { trial: f.key, attempt: f.attempt },
            `requeue ${f.key.slice(0, 10)} ${f.label}: its job vanished from Redis before it started`,
          );
        } else if (now - f.oddSince > o.heartbeatTimeoutMs) {
          const why = `attempt ${f.attempt}: job ${state} but its result never arrived`;
          store.endAttempt(f.key, f.attempt, { status: 'failed', error: why, retryable: true });
          endInflight(f, 'lost', why);
          logger.error(
            { trial: f.key, attempt: f.attempt },
            `lost  ${f.key.slice(0, 10)} ${f.label}: ${why}`,
          );
        }
      } else if (state === 'active' && !f.started) {
        // Taken by a worker that never reported: count silence from the moment it was taken.
        f.oddSince ??= now;
        if (now - f.oddSince > Math.max(o.heartbeatTimeoutMs * 2, 30_000)) {
          const why = `attempt ${f.attempt}: taken by a worker that never reported`;
          store.endAttempt(f.key, f.attempt, { status: 'failed', error: why, retryable: true });
          await queue.remove(f.jobId).catch(() => 0);
          endInflight(f, 'lost', why);
        }
      }
    }
  };

  const onAbort = () => {
    stopping = true;
    logger.warn(
      `interrupted (${String(o.signal?.reason ?? 'signal')}): enqueueing no more trials, cancelling ${inflight.size} queued or running`,
    );
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  if (o.signal?.aborted) onAbort();

  let lastId = '0';
  let lastReconcile = 0;
  let lastProgress = 0;
  let cancelSentAt: number | null = null;
  try {
    for (;;) {
      // Events (blocks up to 200 ms: also the loop's tick).
      type XReadReply = Array<[string, Array<[string, string[]]>]>;
      let res: XReadReply | null = null;
      try {
        res = (await reader.xread(
          'COUNT',
          2000,
          'BLOCK',
          200,
          'STREAMS',
          keys.events,
          lastId,
        )) as XReadReply | null;
      } catch (e) {
        logger.debug(`xread: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      if (res && res.length) {
        const entries = res[0]![1];
        const envs: TrialEnvelope[] = [];
        for (const [, fields] of entries) {
          const i = fields.indexOf('e');
          if (i >= 0) envs.push(...(JSON.parse(fields[i + 1]!) as TrialEnvelope[]));
        }
        await apply(envs);
        await conn.xdel(keys.events, ...entries.map(([id]) => id)).catch(() => 0);
        lastId = entries[entries.length - 1]![0];
      }
      const now = Date.now();
      if (stopping) {
        if (cancelSentAt === null) {
          cancelSentAt = now;
          for (const f of [...inflight.values()]) {
            const removed = await queue.remove(f.jobId).catch(() => 0);
            if (removed || !f.started) {
              store.endAttempt(f.key, f.attempt, {
                status: 'pending',
                error: `cancelled before it started (interrupted)`,
              });
              endInflight(f, 'cancelled', 'interrupted');
              if (!removed) await conn.publish(cancelChannel(queueName), f.jobId).catch(() => 0);
            } else await conn.publish(cancelChannel(queueName), f.jobId).catch(() => 0);
          }
        }
        if (inflight.size === 0 || now - cancelSentAt > (o.cancelGraceMs ?? 10_000)) {
          for (const f of [...inflight.values()]) {
            store.endAttempt(f.key, f.attempt, {
              status: 'pending',
              error: 'interrupted before its worker answered the cancel',
            });
            endInflight(f, 'cancelled', 'interrupted');
          }
          break;
        }
        continue;
      }
      if (redisDown) continue;
      if (now - lastReconcile >= 500) {
        lastReconcile = now;
        try {
          await reconcile();
          await enqueue();
        } catch (e) {
          logger.warn(`redis: ${(e as Error).message}; retrying`);
          continue;
        }
        if (inflight.size === 0) {
          store.cancelBlocked(sweep.id, o.maxAttempts);
          if (store.trialCounts(sweep.id).running === 0) break;
        }
      }
      if (now - lastProgress >= 1000) {
        lastProgress = now;
        progress();
      }
    }
  } finally {
    closed = true;
    o.signal?.removeEventListener('abort', onAbort);
    writer.flush();
    await queue.close().catch(() => undefined);
    reader.disconnect();
    await conn.quit().catch(() => undefined);
  }
  const blocked = store.trialKeys({ sweepId: sweep.id, status: 'pending' });
  const counts = store.trialCounts(sweep.id);
  progress();
  return {
    attempts,
    interrupted: o.signal?.aborted ?? false,
    recovered: [],
    blocked,
    counts,
    elapsedMs: Date.now() - t0,
  };
}

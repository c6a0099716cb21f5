/**
 * `flatrank run --executor bullmq`: the coordinator claims trials in the store (it stays the only
 * database writer), enqueues one BullMQ job per attempt (jobId = trial key + attempt: never twice),
 * applies the events workers send back through the sweep's Redis stream, and watches attempts that
 * go silent (dead worker, Redis restart) by heartbeat timeout and job state. How an attempt's end
 * is judged lives in ../attempt.ts, shared with the local executor.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isTerminalEvent, type TrialEnvelope } from '@flatrank/protocol';
import type { ClaimedTrial } from '@flatrank/store';
import {
  AttemptLifecycle,
  isInterruptionAnswer,
  recoverOrphans,
  type AttemptRef,
  type AttemptVerdict,
  type RunResult,
} from '../attempt.js';
import { EventWriter } from '../event-writer.js';
import { deadHolderHere, workerId } from '../identity.js';
import { trialLabel } from '../label.js';
import { logRefusedWrite } from '../logging.js';
import type { CoordinatorOptions } from '../options.js';
import { liveSnapshot, type RunningInfo } from '../progress.js';
import { startCheckpoint } from '../start-checkpoint.js';
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

/** An attempt handed to BullMQ and not ended yet. */
interface Inflight extends AttemptRef {
  jobId: string;
  epochs: number;
  lastSeen: number;
  epoch: number | null;
  step: number | null;
  /** When the job was first seen missing / completed without a terminal event. */
  oddSince: number | null;
}

/** Job states in which a job of a dead coordinator can still run: such jobs are adopted. */
const LIVE_JOB_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

export async function runBullmqCoordinator(o: BullmqRunOptions): Promise<RunResult> {
  const c = new BullmqCoordinator(o);
  await c.connect();
  return c.run();
}

class BullmqCoordinator {
  private readonly t0 = Date.now();
  private readonly queueName: string;
  private readonly keys: { events: string; acks: string };
  private readonly leaseMs: number;
  /**
   * Silence after which a started attempt's worker is declared dead. Longer than the worker's own
   * watchdog (heartbeatTimeout), so that a hung child is reported by its worker; only a silent
   * worker (killed, cut off from Redis) is declared dead here.
   */
  private readonly silenceMs: number;
  private readonly me = workerId('bullmq');
  private readonly lifecycle: AttemptLifecycle;
  private readonly inflight = new Map<string, Inflight>(); // by job id
  private readonly acks = new AckTracker();
  private readonly writer: EventWriter;
  private conn!: Redis;
  private reader!: Redis;
  private queue!: Queue<TrialJobData>;
  private redisDown = false;
  private closed = false;
  private stopping = false;
  private cancelSentAt: number | null = null;
  private lastId = '0';

  constructor(private readonly o: BullmqRunOptions) {
    this.queueName = o.queueName ?? DEFAULT_QUEUE;
    this.keys = channelKeys(this.queueName, o.sweep.name);
    this.leaseMs = o.heartbeatTimeoutMs * 2;
    this.silenceMs = Math.round(o.heartbeatTimeoutMs * 1.5) + 2000;
    this.lifecycle = new AttemptLifecycle({ store: o.store, logger: o.logger, maxAttempts: o.maxAttempts });
    this.writer = new EventWriter({
      store: o.store,
      leaseMs: this.leaseMs,
      onError: logRefusedWrite(o.logger),
    });
  }

  /** Connects to Redis (refusing one that may evict) and watches the connection. */
  async connect(): Promise<void> {
    const { logger, redisUrl } = this.o;
    this.conn = redisConnection(redisUrl, `flatrank-coordinator-${process.pid}`, (e) =>
      this.closed ? undefined : logger.debug(`redis: ${e.message}`),
    );
    await connectChecked(this.conn, redisUrl, logger);
    this.reader = this.conn.duplicate();
    this.reader.on('error', (e: Error) => this.closed || logger.debug(`redis reader: ${e.message}`));
    await this.reader.connect().catch(() => undefined);
    this.conn.on('close', () => {
      if (this.closed) return;
      if (!this.redisDown) logger.warn(`lost the connection to Redis at ${redisUrl}; reconnecting`);
      this.redisDown = true;
    });
    this.conn.on('ready', () => {
      if (!this.redisDown || this.closed) return;
      logger.warn(`reconnected to Redis at ${redisUrl}; checking queued attempts`);
      this.redisDown = false;
      // Workers could not report while Redis was away: their silence is not their death.
      const now = Date.now();
      for (const f of this.inflight.values()) f.lastSeen = Math.max(f.lastSeen, now);
    });
    this.queue = new Queue<TrialJobData>(this.queueName, { connection: this.conn });
    this.queue.on('error', (e) => this.closed || logger.debug(`queue: ${e.message}`));
  }

  async run(): Promise<RunResult> {
    const { signal } = this.o;
    const onAbort = () => this.interrupt();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Acks written by a previous coordinator of this sweep: what they cover is applied and gone.
      for (const [field, v] of Object.entries(await this.conn.hgetall(this.keys.acks)))
        this.acks.seed(field, Number(v));
      await this.adoptOrphans();
      if (signal?.aborted) this.interrupt();
      await this.loop();
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await this.close();
    }
    const result = this.lifecycle.runResult(this.o.sweep.id, {
      t0: this.t0,
      interrupted: signal?.aborted ?? false,
      recovered: [],
    });
    this.progress();
    return result;
  }

  /**
   * Attempts of a coordinator of this host that died: adopt their jobs when they are still in
   * Redis, otherwise they were interrupted. Every membership: a job already in flight for a point
   * the latest spec dropped is adopted and finishes (its result is kept); the point is never handed
   * out again.
   */
  private async adoptOrphans(): Promise<void> {
    const { store, sweep, logger } = this.o;
    for (const t of store.listTrials({ sweepId: sweep.id, status: 'running', membership: 'all' })) {
      if (deadHolderHere(t.worker, ['bullmq']) === null) continue;
      const f = this.track({ key: t.key, attempt: t.attempts, config: t.config });
      const state = await this.queue.getJobState(f.jobId).catch(() => 'unknown');
      if (LIVE_JOB_STATES.has(state)) {
        logger.info({ trial: t.key }, `adopted ${t.key.slice(0, 10)} attempt ${t.attempts} (job ${state})`);
      } else {
        this.end(f, { kind: 'interrupted', reason: `its coordinator died and the job is ${state}` });
      }
    }
    recoverOrphans(store, sweep.id, ['local'], logger);
  }

  private track(c: Pick<ClaimedTrial, 'key' | 'attempt' | 'config'>): Inflight {
    const now = Date.now();
    const f: Inflight = {
      key: c.key,
      attempt: c.attempt,
      label: trialLabel(c.config),
      where: null,
      claimedAt: now,
      startedAt: null,
      jobId: makeJobId(c.key, c.attempt),
      epochs: c.config.training.epochs,
      lastSeen: now,
      epoch: null,
      step: null,
      oddSince: null,
    };
    this.inflight.set(f.jobId, f);
    return f;
  }

  private end(f: Inflight, verdict: AttemptVerdict): void {
    this.inflight.delete(f.jobId);
    this.lifecycle.end(f, verdict);
  }

  /** Reads events until every attempt has ended, or until Ctrl-C has been carried out. */
  private async loop(): Promise<void> {
    let lastReconcile = 0;
    let lastProgress = 0;
    for (;;) {
      await this.readEvents(); // blocks up to 200 ms: also the loop's tick
      const now = Date.now();
      if (this.stopping) {
        if (await this.cancelAll(now)) return;
        continue;
      }
      if (this.redisDown) continue;
      if (now - lastReconcile >= 500) {
        lastReconcile = now;
        try {
          await this.reconcile();
          await this.enqueue();
        } catch (e) {
          this.o.logger.warn(`redis: ${(e as Error).message}; retrying`);
          continue;
        }
        if (this.finished()) return;
      }
      if (now - lastProgress >= 1000) {
        lastProgress = now;
        this.progress();
      }
    }
  }

  /** Nothing in flight and nothing left to claim: dependents of failed trials are cancelled. */
  private finished(): boolean {
    if (this.inflight.size > 0) return false;
    const { store, sweep } = this.o;
    store.cancelBlocked(sweep.id, this.o.maxAttempts);
    return store.trialCounts(sweep.id).running === 0;
  }

  private async readEvents(): Promise<void> {
    type XReadReply = Array<[string, Array<[string, string[]]>]>;
    let res: XReadReply | null = null;
    try {
      res = (await this.reader.xread(
        'COUNT',
        2000,
        'BLOCK',
        200,
        'STREAMS',
        this.keys.events,
        this.lastId,
      )) as XReadReply | null;
    } catch (e) {
      this.o.logger.debug(`xread: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!res?.length) return;
    const entries = res[0]![1];
    const envs: TrialEnvelope[] = [];
    for (const [, fields] of entries) {
      const i = fields.indexOf('e');
      if (i >= 0) envs.push(...(JSON.parse(fields[i + 1]!) as TrialEnvelope[]));
    }
    await this.apply(envs);
    await this.conn.xdel(this.keys.events, ...entries.map(([id]) => id)).catch(() => 0);
    this.lastId = entries[entries.length - 1]![0];
  }

  /** Applies a batch of envelopes read from the stream, then acknowledges them. */
  private async apply(envs: TrialEnvelope[]): Promise<void> {
    const ackNow = new Map<string, { key: string; attempt: number }>();
    for (const env of envs) {
      this.acks.receive(env.trialKey, env.attempt, env.seq);
      ackNow.set(ackField(env.trialKey, env.attempt), { key: env.trialKey, attempt: env.attempt });
      const f = this.inflight.get(makeJobId(env.trialKey, env.attempt));
      if (f) this.observe(f, env);
      const ev = env.event;
      if (f && isInterruptionAnswer(ev)) {
        this.writer.flush();
        this.end(f, { kind: 'interrupted', reason: ev.error.message });
        continue;
      }
      this.writer.push(env);
      if (f && isTerminalEvent(ev)) this.end(f, { kind: 'terminal', event: ev });
    }
    this.writer.flush();
    const pipe = this.conn.pipeline();
    for (const { key, attempt } of ackNow.values()) {
      const c = this.acks.contiguous(key, attempt);
      if (c >= 0) pipe.hset(this.keys.acks, ackField(key, attempt), String(c));
    }
    pipe.expire(this.keys.acks, 7 * 24 * 3600);
    await pipe.exec();
  }

  /** An event of an attempt in flight: it is alive, and where it runs / how far it got. */
  private observe(f: Inflight, env: TrialEnvelope): void {
    const ev = env.event;
    f.lastSeen = Date.now();
    f.oddSince = null;
    f.startedAt ??= f.lastSeen;
    if (ev.type === 'started')
      f.where = `${ev.env.host} ${ev.env.cudaVisibleDevices ? `cuda:${ev.env.cudaVisibleDevices}` : 'cpu'}`;
    if (ev.type === 'heartbeat' || ev.type === 'metric') {
      f.step = ev.step;
      f.epoch = ev.epoch;
    }
  }

  /** Claims and enqueues while there is room. */
  private async enqueue(): Promise<void> {
    const { store, sweep } = this.o;
    while (!this.stopping && this.inflight.size < (this.o.maxQueued ?? 256)) {
      const c = store.claimTrial({
        sweepId: sweep.id,
        worker: this.me,
        device: null,
        leaseMs: this.leaseMs,
        maxAttempts: this.o.maxAttempts,
      });
      if (!c) return;
      await this.enqueueOne(c);
    }
  }

  private async enqueueOne(c: ClaimedTrial): Promise<void> {
    const { o } = this;
    const f = this.track(c);
    const start = startCheckpoint(o.store, c.config, o.checkpointDir ?? null);
    if (start.error) {
      this.end(f, { kind: 'refused', reason: start.error });
      return;
    }
    const data: TrialJobData = {
      v: 1,
      sweep: o.sweep.name,
      trialKey: c.key,
      attempt: c.attempt,
      config: c.config,
      startCheckpoint: start.path,
      backend: o.backend,
      heartbeatMs: o.heartbeatMs,
      heartbeatTimeoutMs: o.heartbeatTimeoutMs,
      trialTimeoutMs: o.trialTimeoutMs,
      eventsKey: this.keys.events,
      acksKey: this.keys.acks,
    };
    // attempts: 1 — retries are the coordinator's decision (a new attempt = a new job id).
    await this.queue.add('trial', data, {
      jobId: f.jobId,
      attempts: 1,
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 24 * 3600 },
    });
    this.lifecycle.started(f, 'queued');
  }

  /** Leases, silent attempts, jobs that failed or vanished from Redis. */
  private async reconcile(): Promise<void> {
    const now = Date.now();
    for (const f of [...this.inflight.values()]) {
      const verdict = await this.check(f, now);
      if (!verdict) continue;
      if (verdict.kind === 'lost') await this.queue.remove(f.jobId).catch(() => 0);
      this.end(f, verdict);
    }
  }

  /** The verdict on an attempt that will not report its own end, or null while it may. */
  private async check(f: Inflight, now: number): Promise<AttemptVerdict | null> {
    // Not ours any more (ended elsewhere or re-claimed after our lease expired).
    if (!this.o.store.heartbeat(f.key, f.attempt, this.leaseMs))
      return { kind: 'interrupted', reason: 'lease lost' };
    if (f.startedAt !== null && now - f.lastSeen > this.silenceMs)
      return {
        kind: 'lost',
        reason: `no event from its worker (${f.where ?? '?'}) for ${Math.round((now - f.lastSeen) / 1000)} s (worker died or lost Redis)`,
      };
    const state = await this.queue.getJobState(f.jobId);
    if (state === 'failed') {
      const job = await this.queue.getJob(f.jobId);
      return { kind: 'lost', reason: `job failed in the queue: ${job?.failedReason ?? 'unknown reason'}` };
    }
    if (state === 'unknown' || state === 'completed') {
      // Completed: its terminal event is on the way (or was lost with a Redis restart and will be
      // re-sent). Missing: the job was lost with Redis (a restart without persistence).
      f.oddSince ??= now;
      if (state === 'unknown' && f.startedAt === null && now - f.oddSince > 1000)
        return {
          kind: 'interrupted',
          reason: 'its job vanished from Redis before it started (Redis restart?)',
        };
      if (now - f.oddSince > this.o.heartbeatTimeoutMs)
        return state === 'unknown'
          ? {
              kind: 'interrupted',
              reason: 'its job vanished from Redis and its result never arrived (Redis restart?)',
            }
          : { kind: 'lost', reason: 'job completed but its result never arrived' };
      return null;
    }
    if (state === 'active' && f.startedAt === null) {
      // Taken by a worker that never reported: count silence from the moment it was taken.
      f.oddSince ??= now;
      if (now - f.oddSince > Math.max(this.o.heartbeatTimeoutMs * 2, 30_000))
        return { kind: 'lost', reason: 'taken by a worker that never reported' };
    }
    return null;
  }

  private interrupt(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.o.logger.warn(
      `interrupted (${String(this.o.signal?.reason ?? 'signal')}): enqueueing no more trials, cancelling ${this.inflight.size} queued or running`,
    );
  }

  /**
   * Ctrl-C: queued jobs are removed, workers are asked to cancel running ones (their answers end
   * them through apply); after the cancel grace the rest are interrupted unanswered. True when done.
   */
  private async cancelAll(now: number): Promise<boolean> {
    const channel = cancelChannel(this.queueName);
    if (this.cancelSentAt === null) {
      this.cancelSentAt = now;
      for (const f of [...this.inflight.values()]) {
        const removed = await this.queue.remove(f.jobId).catch(() => 0);
        // A job that cannot be removed is held by a worker, even when its 'started' event has not
        // reached us yet: wait (up to the grace) for the worker's CANCELLED answer.
        if (removed) this.end(f, { kind: 'interrupted', reason: 'cancelled before it started' });
        else await this.conn.publish(channel, f.jobId).catch(() => 0);
      }
    }
    if (this.inflight.size > 0 && now - this.cancelSentAt <= (this.o.cancelGraceMs ?? 10_000)) return false;
    for (const f of [...this.inflight.values()])
      this.end(f, { kind: 'interrupted', reason: 'interrupted before its worker answered the cancel' });
    return true;
  }

  private progress(): void {
    if (!this.o.onProgress) return;
    const inflight = [...this.inflight.values()];
    this.o.onProgress(
      liveSnapshot({
        store: this.o.store,
        sweep: this.o.sweep,
        t0: this.t0,
        durations: this.lifecycle.durations,
        running: inflight.map((f): RunningInfo => ({
          key: f.key,
          label: f.label,
          device: f.startedAt !== null ? f.where : 'queued',
          worker: null,
          attempt: f.attempt,
          epoch: f.epoch,
          epochs: f.epochs,
          step: f.step,
          startedAt: f.startedAt,
        })),
        parallel: () => Math.max(1, inflight.filter((f) => f.startedAt !== null).length),
      }),
    );
  }

  private async close(): Promise<void> {
    this.closed = true;
    this.writer.flush();
    await this.queue?.close().catch(() => undefined);
    this.reader?.disconnect();
    await this.conn?.quit().catch(() => undefined);
  }
}

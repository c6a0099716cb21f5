/**
 * `flatrank worker`: pulls trial attempts from the BullMQ queue and runs each in its own child
 * process on one of this machine's slots (never on the worker's event loop, so BullMQ can renew its
 * locks). Events go back to the coordinator through the sweep's Redis stream; the worker never
 * touches the database.
 */
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { CANCELLED_CODE } from '@flatrank/protocol';
import { WORKER_SHUTDOWN_CODE, workerVerdictEvent } from '../attempt.js';
import { runChildAttempt, type AttemptOutcome } from '../child.js';
import type { Slot } from '../gpus.js';
import { HOST } from '../identity.js';
import { trialLabel } from '../label.js';
import type { Logger } from '../logging.js';
import { attemptDir } from '../runs-dir.js';
import { EventPublisher } from './channel.js';
import {
  cancelChannel,
  connectChecked,
  DEFAULT_QUEUE,
  jobId as makeJobId,
  redisConnection,
  type TrialJobData,
} from './redis.js';

export interface WorkerOptions {
  redisUrl: string;
  queueName?: string;
  slots: readonly Slot[];
  childEntry: string;
  childEnv?: Record<string, string | undefined>;
  runsDir: string;
  dataDir: string | null;
  logger: Logger;
  /** Abort = stop taking jobs, cancel running attempts, report, close. */
  signal?: AbortSignal;
  /**
   * BullMQ lock duration: a dead worker's job is failed as stalled after at most twice this long
   * (the coordinator's heartbeat check usually notices the silence first).
   */
  lockDurationMs?: number;
  /** How long to wait for the coordinator to acknowledge an attempt's events. */
  drainTimeoutMs?: number;
  resendAfterMs?: number;
  /** Called for each finished attempt (tests, status). */
  onAttemptEnd?(info: { trialKey: string; attempt: number; outcome: string }): void;
}

export interface WorkerHandle {
  /** Resolves when the worker has stopped (after the signal, or close()). */
  done: Promise<void>;
  close(): Promise<void>;
}

/**
 * Connects (refusing an unreachable Redis or one that may evict, before anything is started or
 * logged), then takes jobs until the signal or close().
 */
export async function startWorker(o: WorkerOptions): Promise<WorkerHandle> {
  const w = new TrialWorker(o);
  await w.connect();
  return w.start();
}

class TrialWorker {
  private readonly queueName: string;
  private readonly free: Slot[];
  private readonly active = new Map<string, AbortController>();
  private conn!: Redis;
  private sub!: Redis;
  private blocking!: Redis;
  private worker!: Worker<TrialJobData, { outcome: string }>;
  private started = false;
  private stopped = false;
  private shuttingDown = false;
  private closing: Promise<void> | null = null;
  private resolveDone: () => void = () => {};

  constructor(private readonly o: WorkerOptions) {
    this.queueName = o.queueName ?? DEFAULT_QUEUE;
    this.free = [...o.slots];
  }

  async connect(): Promise<void> {
    // Connection errors before the start are the start's failure (thrown by connectChecked), not log lines.
    const onError = (e: Error) => this.started && !this.stopped && this.o.logger.debug(`redis: ${e.message}`);
    this.conn = redisConnection(this.o.redisUrl, `flatrank-worker-${HOST}-${process.pid}`, onError);
    await connectChecked(this.conn, this.o.redisUrl, this.o.logger);
    this.sub = this.conn.duplicate();
    this.blocking = this.conn.duplicate();
    for (const c of [this.sub, this.blocking]) c.on('error', onError);
    await Promise.all([this.sub.connect(), this.blocking.connect()]).catch(() => undefined);
    await this.sub.subscribe(cancelChannel(this.queueName));
    this.sub.on('message', (_channel: string, id: string) => {
      const ac = this.active.get(id);
      if (!ac) return;
      this.o.logger.info({ job: id }, `cancel requested for ${id.slice(0, 10)}`);
      ac.abort('cancelled by the coordinator');
    });
  }

  start(): WorkerHandle {
    const { o } = this;
    this.worker = new Worker<TrialJobData, { outcome: string }>(this.queueName, (job) => this.process(job), {
      connection: this.blocking,
      concurrency: Math.max(1, o.slots.length),
      // A job whose worker died must not be run again as the same attempt: fail it, the coordinator
      // re-claims the trial as a new attempt.
      maxStalledCount: 0,
      lockDuration: o.lockDurationMs ?? 30_000,
      stalledInterval: o.lockDurationMs ?? 30_000,
      autorun: true,
    });
    this.started = true;
    this.worker.on('error', (e) => this.stopped || o.logger.warn(`worker: ${e.message}`));
    this.worker.on(
      'failed',
      (job, e) =>
        this.stopped ||
        o.logger.warn({ job: job?.id }, `job ${job?.id?.slice(0, 10) ?? '?'} failed: ${e.message}`),
    );
    o.logger.info(
      `worker ${HOST}:${process.pid} on queue ${this.queueName} at ${o.redisUrl}: ${o.slots.length} slot(s) ${o.slots.map((s) => s.id).join(', ')}`,
    );
    const done = new Promise<void>((resolve) => (this.resolveDone = resolve));
    if (o.signal?.aborted) void this.close();
    else o.signal?.addEventListener('abort', () => void this.close(), { once: true });
    return { done, close: () => this.close() };
  }

  /** One job = one attempt: run its child on a free slot, report its events, wait for the acks. */
  private async process(job: Job<TrialJobData>): Promise<{ outcome: string }> {
    const d = job.data;
    const id = makeJobId(d.trialKey, d.attempt);
    const slot = this.free.shift();
    if (!slot) throw new Error('no free slot (concurrency exceeds slots)');
    const ac = new AbortController();
    this.active.set(id, ac);
    if (this.shuttingDown) ac.abort('worker shutting down');
    const pub = new EventPublisher(this.conn, d.eventsKey, d.acksKey, d.trialKey, d.attempt, {
      resendAfterMs: this.o.resendAfterMs,
    });
    const label = trialLabel(d.config);
    const ids = { trial: d.trialKey, attempt: d.attempt };
    this.o.logger.info(
      { ...ids, slot: slot.id },
      `start ${d.trialKey.slice(0, 10)} ${label} on ${slot.id} (attempt ${d.attempt})`,
    );
    try {
      const outcome = await this.runChild(d, slot, ac.signal, pub);
      const verdict = workerVerdictEvent(outcome, {
        attempt: d.attempt,
        where: `${HOST}/${slot.id}`,
        shuttingDown: this.shuttingDown,
      });
      if (verdict) pub.add(verdict);
      const result = outcome.kind === 'terminal' ? outcome.event.type : `lost: ${outcome.reason}`;
      await pub.flush();
      // Shutting down: wait briefly for the coordinator; unacknowledged events are re-read from the
      // stream by the coordinator anyway (only the re-send on a Redis restart is lost).
      const drainMs = this.o.drainTimeoutMs ?? (this.shuttingDown ? 10_000 : 300_000);
      await pub.drain(this.shuttingDown ? Math.min(10_000, drainMs) : drainMs);
      this.o.logger.info(ids, `end   ${d.trialKey.slice(0, 10)} ${label}: ${result}`);
      this.o.onAttemptEnd?.({ trialKey: d.trialKey, attempt: d.attempt, outcome: result });
      return { outcome: result };
    } finally {
      pub.close();
      this.active.delete(id);
      this.free.push(slot);
    }
  }

  private runChild(
    d: TrialJobData,
    slot: Slot,
    signal: AbortSignal,
    pub: EventPublisher,
  ): Promise<AttemptOutcome> {
    const { o } = this;
    return runChildAttempt({
      childEntry: o.childEntry,
      trialKey: d.trialKey,
      attempt: d.attempt,
      config: d.config,
      options: {
        dataDir: o.dataDir,
        artifactDir: attemptDir(o.runsDir, d.sweep, d.trialKey, d.attempt),
        startCheckpoint: d.startCheckpoint,
        backend: d.backend,
        heartbeatMs: d.heartbeatMs,
      },
      cudaVisibleDevices: slot.cudaVisibleDevices,
      env: { ...o.childEnv, ...slot.env },
      heartbeatTimeoutMs: d.heartbeatTimeoutMs,
      trialTimeoutMs: d.trialTimeoutMs,
      signal,
      onEvent: (env) => {
        const ev = env.event;
        // This machine going down is not the trial's fault: report it as such so that another
        // worker runs it, without counting it (a coordinator's cancel stays CANCELLED).
        if (ev.type === 'failed' && ev.error.code === CANCELLED_CODE && this.shuttingDown)
          pub.add({
            ...ev,
            error: {
              ...ev.error,
              code: WORKER_SHUTDOWN_CODE,
              message: `worker ${HOST}:${process.pid} shut down during attempt ${d.attempt}`,
            },
            retryable: true,
          });
        else pub.add(ev);
      },
      onOutput: (stream, line) => o.logger.debug({ trial: d.trialKey, attempt: d.attempt, stream }, line),
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.shuttingDown = true;
      for (const ac of this.active.values()) ac.abort('worker shutting down');
      await this.worker.close();
      await this.sub.quit().catch(() => undefined);
      await this.conn.quit().catch(() => undefined);
      this.blocking.disconnect();
      this.stopped = true;
      this.resolveDone();
    })();
    return this.closing;
  }
}

/**
 * `flatrank worker`: pulls trial attempts from the BullMQ queue and runs each in its own child
 * process on one of this machine's slots (never on the worker's event loop, so BullMQ can renew its
 * locks). Events go back to the coordinator through the sweep's Redis stream; the worker never
 * touches the database.
 */
import { Worker, type Job } from 'bullmq';
import { CANCELLED_CODE } from '@flatrank/protocol';
import { runChildAttempt } from '../child.js';
import { attemptDir, HOST } from '../common.js';
import type { Slot } from '../gpus.js';
import type { Logger } from '../logging.js';
import { trialLabel } from '../progress.js';
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
  /** BullMQ lock duration (a dead worker's job is failed as stalled after about this long). */
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

export async function startWorker(o: WorkerOptions): Promise<WorkerHandle> {
  const queueName = o.queueName ?? DEFAULT_QUEUE;
  const logger = o.logger;
  const conn = redisConnection(o.redisUrl, `flatrank-worker-${HOST}-${process.pid}`);
  await connectChecked(conn, o.redisUrl, logger);
  const sub = conn.duplicate();
  const blocking = conn.duplicate();
  await Promise.all([sub.connect(), blocking.connect()]).catch(() => undefined);

  const free: Slot[] = [...o.slots];
  let shuttingDown = false;
  const active = new Map<string, AbortController>();
  await sub.subscribe(cancelChannel(queueName));
  sub.on('message', (_channel: string, id: string) => {
    const ac = active.get(id);
    if (ac) {
      logger.info({ job: id }, `cancel requested for ${id.slice(0, 10)}`);
      ac.abort('cancelled by the coordinator');
    }
  });

  const processor = async (job: Job<TrialJobData>): Promise<{ outcome: string }> => {
    const d = job.data;
    const id = makeJobId(d.trialKey, d.attempt);
    const slot = free.shift();
    if (!slot) throw new Error('no free slot (concurrency exceeds slots)');
    const ac = new AbortController();
    active.set(id, ac);
    if (shuttingDown) ac.abort('worker shutting down');
    const pub = new EventPublisher(conn, d.eventsKey, d.acksKey, d.trialKey, d.attempt, {
      resendAfterMs: o.resendAfterMs,
    });
    const label = trialLabel(d.config);
    logger.info(
      { trial: d.trialKey, attempt: d.attempt, slot: slot.id },
      `start ${d.trialKey.slice(0, 10)} ${label} on ${slot.id} (attempt ${d.attempt})`,
    );
    try {
      const outcome = await runChildAttempt({
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
        signal: ac.signal,
        onEvent: (env) => {
          const ev = env.event;
          // This machine going down is not the trial's fault: report a retryable end so that
          // another worker runs it (a coordinator's cancel stays CANCELLED).
          if (ev.type === 'failed' && ev.error.code === CANCELLED_CODE && shuttingDown)
            pub.add({
              ...ev,
              error: {
                ...ev.error,
                code: 'WORKER_SHUTDOWN',
                message: `worker ${HOST}:${process.pid} shut down during attempt ${d.attempt}`,
              },
              retryable: true,
            });
          else pub.add(ev);
        },
        onOutput: (stream, line) => logger.debug({ trial: d.trialKey, attempt: d.attempt, stream }, line),
      });
      let result: string;
      if (outcome.kind === 'terminal') result = outcome.event.type;
      else {
        // The attempt ended without its own verdict: report one on its behalf (the coordinator retries).
        const cancelled = outcome.cause === 'cancelled' && !shuttingDown;
        pub.add({
          type: 'failed',
          error: {
            name: 'SchedulerError',
            code: cancelled ? CANCELLED_CODE : 'ATTEMPT_LOST',
            message: `attempt ${d.attempt} on ${HOST}/${slot.id}: ${outcome.reason}`,
          },
          retryable: !cancelled,
        });
        result = `lost: ${outcome.reason}`;
      }
      await pub.flush();
      // Shutting down: wait briefly for the coordinator; unacknowledged events are re-read from the
      // stream by the coordinator anyway (only the re-send on a Redis restart is lost).
      await pub.drain(
        shuttingDown ? Math.min(10_000, o.drainTimeoutMs ?? 10_000) : (o.drainTimeoutMs ?? 300_000),
      );
      logger.info(
        { trial: d.trialKey, attempt: d.attempt },
        `end   ${d.trialKey.slice(0, 10)} ${label}: ${result}`,
      );
      o.onAttemptEnd?.({ trialKey: d.trialKey, attempt: d.attempt, outcome: result });
      return { outcome: result };
    } finally {
      pub.close();
      active.delete(id);
      free.push(slot);
    }
  };

  const worker = new Worker<TrialJobData, { outcome: string }>(queueName, processor, {
    connection: blocking,
    concurrency: Math.max(1, o.slots.length),
    // A job whose worker died must not be run again as the same attempt: fail it, the coordinator
    // re-claims the trial as a new attempt.
    maxStalledCount: 0,
    lockDuration: o.lockDurationMs ?? 30_000,
    stalledInterval: o.lockDurationMs ?? 30_000,
    autorun: true,
  });
  let stopped = false;
  for (const c of [conn, sub, blocking])
    c.on('error', (e: Error) => stopped || logger.debug(`redis: ${e.message}`));
  worker.on('error', (e) => stopped || logger.warn(`worker: ${e.message}`));
  worker.on(
    'failed',
    (job, e) =>
      stopped || logger.warn({ job: job?.id }, `job ${job?.id?.slice(0, 10) ?? '?'} failed: ${e.message}`),
  );
  logger.info(
    `worker ${HOST}:${process.pid} on queue ${queueName} at ${o.redisUrl}: ${o.slots.length} slot(s) ${o.slots.map((s) => s.id).join(', ')}`,
  );

  let closing: Promise<void> | null = null;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const close = (): Promise<void> => {
    closing ??= (async () => {
      shuttingDown = true;
      for (const ac of active.values()) ac.abort('worker shutting down');
      await worker.close();
      await sub.quit().catch(() => undefined);
      await conn.quit().catch(() => undefined);
      blocking.disconnect();
      stopped = true;
      resolveDone();
    })();
    return closing;
  };
  if (o.signal?.aborted) void close();
  else o.signal?.addEventListener('abort', () => void close(), { once: true });
  return { done, close };
}

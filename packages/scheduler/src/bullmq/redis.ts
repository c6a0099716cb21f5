/**
 * Redis plumbing of the BullMQ backend: connections, the noeviction check, key names, job payload.
 *
 * Design (see README "Multi-machine"): BullMQ carries the work (one job per trial attempt, jobId =
 * `<trial key>-a<attempt>`, so enqueueing twice is a no-op); events travel back on a Redis stream per
 * sweep, written by workers with XADD and read by the coordinator with XREAD. A stream, not BullMQ's
 * QueueEvents / job progress: QueueEvents is a capped, best-effort feed shared by every queue
 * consumer, while a dedicated stream keeps every entry until the coordinator has applied and deleted
 * it, and survives coordinator restarts. Delivery is at-least-once: the coordinator acknowledges
 * the highest contiguous seq per attempt in a hash; a worker re-sends everything above the ack when
 * the ack stops advancing (e.g. after a Redis restart emptied the stream), and the store's
 * idempotent writes (trial key + attempt + seq) turn re-sends into no-ops.
 */
import { Redis } from 'ioredis';
import { SchedulerError, type BackendName, type TrialConfig } from '@flatrank/protocol';
import type { Logger } from '../logging.js';

export const DEFAULT_QUEUE = 'flatrank-trials';

export interface TrialJobData {
  v: 1;
  sweep: string;
  trialKey: string;
  attempt: number;
  config: TrialConfig;
  startCheckpoint: string | null;
  backend: BackendName | 'auto';
  heartbeatMs: number;
  heartbeatTimeoutMs: number;
  trialTimeoutMs: number | null;
  /** Stream the worker XADDs events to. */
  eventsKey: string;
  /** Hash of acknowledged seqs (field `<key>#<attempt>`). */
  acksKey: string;
}

export function jobId(trialKey: string, attempt: number): string {
  // BullMQ refuses ':' in custom ids.
  return `${trialKey}-a${attempt}`;
}

export function channelKeys(queue: string, sweep: string): { events: string; acks: string } {
  return { events: `flatrank:${queue}:${sweep}:events`, acks: `flatrank:${queue}:${sweep}:acks` };
}

/** Pub/sub channel on which the coordinator asks workers to cancel attempts (message: job id). */
export function cancelChannel(queue: string): string {
  return `flatrank:${queue}:cancel`;
}

export function ackField(trialKey: string, attempt: number): string {
  return `${trialKey}#${attempt}`;
}

/**
 * A connection that retries forever (BullMQ requires maxRetriesPerRequest: null). Its 'error'
 * events go to `onError` from the start: ioredis prints an "Unhandled error event" stack trace for
 * every failed (re)connection of a connection without a listener, before connect() can say clearly
 * that Redis is unreachable.
 */
export function redisConnection(url: string, name: string, onError: (e: Error) => void = () => {}): Redis {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (e) {
    throw new SchedulerError(
      'REDIS_URL_INVALID',
      `--redis: ${JSON.stringify(url)} is not a URL; expected e.g. redis://127.0.0.1:6379`,
      { cause: e },
    );
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:')
    throw new SchedulerError(
      'REDIS_URL_INVALID',
      `--redis: unsupported scheme ${parsed.protocol} in ${url}; allowed: redis://, rediss://`,
    );
  const conn = new Redis(url, {
    maxRetriesPerRequest: null,
    connectionName: name,
    lazyConnect: true,
    retryStrategy: (times) => Math.min(100 * times, 1000),
  });
  conn.on('error', onError);
  return conn;
}

/** Connects, failing with a clear error when Redis does not answer in time. */
export async function connect(conn: Redis, url: string, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  // The socket's own error (ECONNREFUSED, ENOTFOUND, ...) says more than ioredis' "Connection is closed".
  let lastError: Error | null = null;
  const remember = (e: Error) => void (lastError = e);
  conn.on('error', remember);
  try {
    await Promise.race([
      conn.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      }),
    ]);
    await conn.ping();
  } catch (e) {
    conn.disconnect();
    const why = (lastError as Error | null)?.message ?? (e as Error).message;
    throw new SchedulerError('REDIS_UNREACHABLE', `cannot connect to Redis at ${url}: ${why}`, {
      cause: e,
      context: { url },
    });
  } finally {
    clearTimeout(timer);
    conn.off('error', remember);
  }
}

/**
 * BullMQ needs maxmemory-policy noeviction: an evicted job or event is a lost trial. Fails when
 * the policy is something else; warns when CONFIG is not allowed (managed Redis).
 */
export async function checkNoEviction(conn: Redis, url: string, logger: Logger): Promise<void> {
  let policy: string | undefined;
  try {
    const r = (await conn.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
    policy = r[1];
  } catch (e) {
    logger.warn(
      `cannot read maxmemory-policy of ${url} (${(e as Error).message}); make sure it is noeviction, or trials can be lost`,
    );
    return;
  }
  if (policy !== undefined && policy !== 'noeviction')
    throw new SchedulerError(
      'REDIS_EVICTION_POLICY',
      `Redis at ${url} has maxmemory-policy ${policy}; flatrank (and BullMQ) need noeviction, otherwise queued trials and their events can be evicted. Fix: redis-cli -u ${url} CONFIG SET maxmemory-policy noeviction (and set it in redis.conf)`,
      { context: { url, policy } },
    );
}

/** connect() then checkNoEviction(): a coordinator or worker only starts on a Redis it can trust. */
export async function connectChecked(conn: Redis, url: string, logger: Logger): Promise<void> {
  await connect(conn, url);
  try {
    await checkNoEviction(conn, url, logger);
  } catch (e) {
    conn.disconnect();
    throw e;
  }
}

/**
 * The local backend: one coordinator process (the only database writer) hands trials of a sweep to
 * a fixed set of slots (one per GPU x workers per GPU, or N CPU workers) through p-queue; each
 * attempt runs in its own child process. Retries, heartbeats, timeouts and Ctrl-C live here.
 */
import { join } from 'node:path';
import PQueue from 'p-queue';
import type { ClaimedTrial } from '@flatrank/store';
import { runChildAttempt, type AttemptOutcome } from './child.js';
import {
  attemptDir,
  liveSnapshot,
  logRefusedWrite,
  recoverOrphans,
  startCheckpoint,
  trialDir,
  workerId,
  type CoordinatorOptions,
} from './common.js';
import { EventWriter } from './event-writer.js';
import type { Slot } from './gpus.js';
import { createTrialLogger } from './logging.js';
import { trialLabel, type ProgressSnapshot, type RunningInfo } from './progress.js';

export interface LocalRunOptions extends CoordinatorOptions {
  slots: readonly Slot[];
  /** Module forked for every attempt (apps/cli/dist/trial-child.js, or the fake trainer). */
  childEntry: string;
  childEnv?: Record<string, string | undefined>;
  /** How often to look again when nothing is claimable but trials still run elsewhere. */
  pollMs?: number;
}

export interface AttemptRecord {
  key: string;
  attempt: number;
  slot: string;
  outcome: 'succeeded' | 'failed' | 'diverged' | 'lost' | 'cancelled' | 'not-started';
  reason: string | null;
  /** claim -> slot free again */
  totalMs: number;
  /** fork -> 'ready' (Node start-up of the child) */
  bootMs: number | null;
  /** 'ready' -> terminal event (the trial's own work) */
  workMs: number | null;
}

export interface RunResult {
  attempts: AttemptRecord[];
  interrupted: boolean;
  /** Trials recovered from a dead coordinator at start. */
  recovered: string[];
  /** Pending trials that can never run (a dependency failed or is missing). */
  blocked: string[];
  counts: Record<string, number>;
  elapsedMs: number;
}

export async function runLocal(o: LocalRunOptions): Promise<RunResult> {
  const t0 = Date.now();
  const { store, sweep, logger } = o;
  const leaseMs = o.heartbeatTimeoutMs * 2;
  const coordinator = workerId('local');
  const recovered = recoverOrphans(store, sweep.id, ['local'], (key, reason) =>
    logger.warn({ trial: key }, `${key.slice(0, 10)}: ${reason}; back to pending`),
  );

  const attempts: AttemptRecord[] = [];
  const running = new Map<string, RunningInfo & { abort: AbortController; ended: boolean }>();
  const free: Slot[] = [...o.slots];
  const queue = new PQueue({ concurrency: Math.max(1, o.slots.length) });
  const durations: number[] = [];
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const waitForChange = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  const writer = new EventWriter({
    store,
    leaseMs,
    onError: logRefusedWrite(logger),
    onLeaseLost: (key, attempt) => {
      const r = running.get(key);
      if (r && r.attempt === attempt && !r.ended) {
        logger.warn(
          { trial: key, attempt },
          `${key.slice(0, 10)}: attempt ${attempt} lost its lease; stopping it`,
        );
        r.abort.abort('lease lost');
      }
    },
  });

  const snapshot = (): ProgressSnapshot =>
    liveSnapshot({
      store,
      sweep,
      t0,
      durations,
      running: [...running.values()].map(({ abort: _a, ended: _e, ...r }) => r),
      parallel: (left) => Math.max(1, Math.min(o.slots.length, left)),
    });
  const progress = () => o.onProgress?.(snapshot());
  const ticker = o.onProgress ? setInterval(progress, 1000) : null;

  const onAbort = () => {
    logger.warn(
      `interrupted (${String(o.signal?.reason ?? 'signal')}): handing out no more trials, cancelling ${running.size} running`,
    );
    for (const r of running.values()) r.abort.abort(String(o.signal?.reason ?? 'interrupted'));
    notify();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });

  const runOne = async (claimed: ClaimedTrial, slot: Slot, claimAt: number): Promise<void> => {
    const { key, attempt, config } = claimed;
    const label = trialLabel(config);
    const short = key.slice(0, 10);
    const tlog = createTrialLogger(join(trialDir(o.runsDir, sweep.name, key), 'trial.log'), {
      trial: key,
      sweep: sweep.name,
    });
    const rec: AttemptRecord = {
      key,
      attempt,
      slot: slot.id,
      outcome: 'not-started',
      reason: null,
      totalMs: 0,
      bootMs: null,
      workMs: null,
    };
    try {
      const start = startCheckpoint(store, config, o.checkpointDir ?? null);
      if (start.error) {
        store.endAttempt(key, attempt, { status: 'failed', error: start.error, retryable: false });
        logger.error({ trial: key }, `${short} ${label}: ${start.error}`);
        rec.reason = start.error;
        return;
      }
      const abort = new AbortController();
      if (o.signal?.aborted) abort.abort(String(o.signal.reason ?? 'interrupted'));
      const info: RunningInfo & { abort: AbortController; ended: boolean } = {
        key,
        label,
        device: slot.device,
        worker: coordinator,
        attempt,
        epoch: null,
        epochs: config.training.epochs,
        step: null,
        startedAt: Date.now(),
        abort,
        ended: false,
      };
      running.set(key, info);
      logger.info(
        { trial: key, attempt, slot: slot.id },
        `start ${short} ${label} on ${slot.id}${attempt > 1 ? ` (attempt ${attempt})` : ''}`,
      );
      tlog.logger.info(
        {
          attempt,
          slot: slot.id,
          cudaVisibleDevices: slot.cudaVisibleDevices,
          startCheckpoint: start.path,
          config,
        },
        'attempt started',
      );
      progress();
      const options = {
        dataDir: o.dataDir,
        artifactDir: attemptDir(o.runsDir, sweep.name, key, attempt),
        startCheckpoint: start.path,
        backend: o.backend,
        heartbeatMs: o.heartbeatMs,
      };
      const outcome: AttemptOutcome = await runChildAttempt({
        childEntry: o.childEntry,
        trialKey: key,
        attempt,
        config,
        options,
        cudaVisibleDevices: slot.cudaVisibleDevices,
        env: { ...o.childEnv, ...slot.env },
        heartbeatTimeoutMs: o.heartbeatTimeoutMs,
        trialTimeoutMs: o.trialTimeoutMs,
        cancelGraceMs: o.cancelGraceMs,
        signal: abort.signal,
        onEvent: (env) => {
          const ev = env.event;
          if (ev.type === 'heartbeat') {
            info.step = ev.step;
            info.epoch = ev.epoch;
          } else if (ev.type === 'metric') {
            info.step = ev.step;
            info.epoch = ev.epoch;
          }
          // Our own cancel's answer is not the trial's verdict: the attempt goes back to pending below.
          if (abort.signal.aborted && ev.type === 'failed' && ev.error.code === 'CANCELLED') {
            tlog.logger.info({ attempt, seq: env.seq }, 'answered the cancel');
            return;
          }
          if (ev.type !== 'heartbeat' && ev.type !== 'metric')
            tlog.logger.info({ attempt, seq: env.seq, event: ev }, ev.type);
          else tlog.logger.debug({ attempt, seq: env.seq, event: ev }, ev.type);
          writer.push(env);
        },
        onOutput: (stream, line) => tlog.logger.info({ attempt, stream }, line),
      });
      writer.flush();
      info.ended = true;
      rec.bootMs = outcome.timings.readyAt !== null ? outcome.timings.readyAt - outcome.timings.forkAt : null;
      rec.workMs =
        outcome.timings.readyAt !== null && outcome.timings.terminalAt !== null
          ? outcome.timings.terminalAt - outcome.timings.readyAt
          : null;

      if (outcome.kind === 'terminal' && !outcome.cancelled) {
        const ev = outcome.event;
        if (ev.type === 'finished') {
          rec.outcome = 'succeeded';
          durations.push(Date.now() - (info.startedAt ?? claimAt));
          logger.info(
            { trial: key, attempt },
            `done  ${short} ${label}: accuracy ${ev.summary.accuracyFinal.toFixed(4)}`,
          );
        } else if (ev.type === 'diverged') {
          rec.outcome = 'diverged';
          rec.reason = ev.reason;
          logger.warn(
            { trial: key, attempt },
            `diverged ${short} ${label}: ${ev.reason} (recorded, not retried)`,
          );
        } else {
          rec.outcome = 'failed';
          rec.reason = ev.error.message;
          const again = ev.retryable && attempt < o.maxAttempts;
          logger.error(
            { trial: key, attempt, error: ev.error },
            `failed ${short} ${label}: ${ev.error.code}: ${ev.error.message}${again ? ' (will retry)' : ''}`,
          );
        }
        tlog.logger.info({ attempt, outcome: rec.outcome }, 'attempt ended');
      } else if (outcome.kind === 'terminal' || outcome.cause === 'cancelled') {
        rec.outcome = 'cancelled';
        const why = `cancelled (${String(abort.signal.reason ?? 'interrupted')}) at attempt ${attempt}; runs again on the next flatrank run`;
        rec.reason = why;
        store.endAttempt(key, attempt, { status: 'pending', error: why });
        logger.warn({ trial: key, attempt }, `cancelled ${short} ${label}`);
        tlog.logger.warn({ attempt }, why);
      } else {
        rec.outcome = 'lost';
        rec.reason = outcome.reason;
        const again = attempt < o.maxAttempts;
        store.endAttempt(key, attempt, {
          status: 'failed',
          error: `attempt ${attempt}: ${outcome.reason}`,
          retryable: true,
        });
        logger.error(
          { trial: key, attempt, cause: outcome.cause },
          `lost  ${short} ${label}: ${outcome.reason}${again ? ' (will retry)' : ` (giving up after ${attempt} attempts)`}`,
        );
        tlog.logger.error({ attempt, cause: outcome.cause }, outcome.reason);
      }
    } finally {
      running.delete(key);
      tlog.close();
      rec.totalMs = Date.now() - claimAt;
      attempts.push(rec);
      progress();
    }
  };

  try {
    while (!o.signal?.aborted) {
      const slot = free.shift();
      if (!slot) {
        await waitForChange(o.pollMs ?? 1000);
        continue;
      }
      const claimAt = Date.now();
      const claimed = store.claimTrial({
        sweepId: sweep.id,
        worker: `${coordinator}/${slot.id}`,
        device: slot.device,
        leaseMs,
        maxAttempts: o.maxAttempts,
      });
      if (!claimed) {
        free.unshift(slot);
        if (running.size > 0) {
          await waitForChange(o.pollMs ?? 1000);
          continue;
        }
        store.cancelBlocked(sweep.id, o.maxAttempts);
        // Running elsewhere (another coordinator, or a lease of a vanished one not yet expired).
        if (store.trialCounts(sweep.id).running > 0) {
          await waitForChange(o.pollMs ?? 1000);
          continue;
        }
        break;
      }
      void queue
        .add(() => runOne(claimed, slot, claimAt))
        .catch((e: unknown) =>
          logger.error(
            { err: e, trial: claimed.key },
            `internal error running ${claimed.key.slice(0, 10)}: ${(e as Error)?.message}`,
          ),
        )
        .finally(() => {
          free.push(slot);
          notify();
        });
    }
    await queue.onIdle();
  } finally {
    if (ticker) clearInterval(ticker);
    o.signal?.removeEventListener('abort', onAbort);
    writer.flush();
  }
  const blocked = store.trialKeys({ sweepId: sweep.id, status: 'pending' });
  const counts = store.trialCounts(sweep.id);
  progress();
  return {
    attempts,
    interrupted: o.signal?.aborted ?? false,
    recovered,
    blocked,
    counts,
    elapsedMs: Date.now() - t0,
  };
}

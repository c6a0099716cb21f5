/**
 * The lifecycle of one attempt, the same for both executors: how an attempt's end is classified
 * (the trial's own verdict, a failure of the trial without one, the coordinator's own
 * interruption, a refusal before it started), what the store records, the log line, and whether
 * the trial runs again. The local executor and the BullMQ coordinator only say what happened.
 */
import { CANCELLED_CODE, type TrialEvent } from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import type { AttemptOutcome, TerminalEvent } from './child.js';
import { deadHolderHere } from './identity.js';
import type { Logger } from './logging.js';

/**
 * Error code a BullMQ worker reports for an attempt it stopped because it was shutting down: the
 * machine going away is not the trial's fault.
 */
export const WORKER_SHUTDOWN_CODE = 'WORKER_SHUTDOWN';
/** Error code a BullMQ worker reports for an attempt whose child ended without a verdict. */
export const ATTEMPT_LOST_CODE = 'ATTEMPT_LOST';

/** How an attempt ended. */
export type AttemptVerdict =
  /** The trial's own terminal event (already written to the store through the EventWriter). */
  | { kind: 'terminal'; event: TerminalEvent }
  /**
   * The trial failed without a verdict of its own: its process crashed or exited, went silent
   * (heartbeat), exceeded its timeout, or its worker died. Counts toward maxAttempts.
   */
  | { kind: 'lost'; reason: string }
  /**
   * The coordinator's own interruption (Ctrl-C, a lost lease, a coordinator restart, a Redis loss,
   * a worker shutting down): back to pending; does not count toward maxAttempts.
   */
  | { kind: 'interrupted'; reason: string }
  /** Never started: its start checkpoint cannot be resolved. Fails for good. */
  | { kind: 'refused'; reason: string };

/** One attempt as the run's result lists it. */
export interface AttemptRecord {
  key: string;
  attempt: number;
  slot: string;
  outcome: 'succeeded' | 'failed' | 'diverged' | 'lost' | 'interrupted' | 'not-started';
  reason: string | null;
  /** claim -> slot free again */
  totalMs: number;
  /** fork -> 'ready' (Node start-up of the child) */
  bootMs: number | null;
  /** 'ready' -> terminal event (the trial's own work) */
  workMs: number | null;
}

/** What runLocal and runBullmqCoordinator return. */
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

/** The attempt being ended, as the executor knows it. */
export interface AttemptRef {
  key: string;
  attempt: number;
  label: string;
  /** Slot id (local) or the worker's device (BullMQ); null: not known yet. */
  where: string | null;
  /** When the executor claimed it. */
  claimedAt: number;
  /** When it started running (null: never started). */
  startedAt: number | null;
  /** The trial's own log (trial.log), when the executor keeps one. */
  trialLog?: Logger;
}

/** A terminal event that is not the trial's verdict but the answer to an interruption. */
export function isInterruptionAnswer(ev: TrialEvent): ev is Extract<TrialEvent, { type: 'failed' }> {
  return ev.type === 'failed' && (ev.error.code === CANCELLED_CODE || ev.error.code === WORKER_SHUTDOWN_CODE);
}

/**
 * The verdict on a child attempt (local executor). `interrupted` is the coordinator's reason when
 * it cancelled the attempt itself (Ctrl-C, lease lost), else null.
 */
export function verdictOfChild(outcome: AttemptOutcome, interrupted: string | null): AttemptVerdict {
  if (outcome.kind === 'terminal' && !outcome.cancelled && !isInterruptionAnswer(outcome.event))
    return { kind: 'terminal', event: outcome.event };
  if (outcome.kind === 'terminal' || outcome.cause === 'cancelled')
    return { kind: 'interrupted', reason: interrupted ?? 'cancelled' };
  return { kind: 'lost', reason: outcome.reason };
}

/**
 * The failed event a worker reports on behalf of an attempt whose child ended without a verdict
 * (null when the child sent its own).
 */
export function workerVerdictEvent(
  outcome: AttemptOutcome,
  o: { attempt: number; where: string; shuttingDown: boolean },
): Extract<TrialEvent, { type: 'failed' }> | null {
  if (outcome.kind === 'terminal') return null;
  const cancelled = outcome.cause === 'cancelled';
  const code = !cancelled ? ATTEMPT_LOST_CODE : o.shuttingDown ? WORKER_SHUTDOWN_CODE : CANCELLED_CODE;
  return {
    type: 'failed',
    error: { name: 'SchedulerError', code, message: `attempt ${o.attempt} on ${o.where}: ${outcome.reason}` },
    retryable: code !== CANCELLED_CODE,
  };
}

export interface AttemptLifecycleOptions {
  store: ResultsStore;
  logger: Logger;
  maxAttempts: number;
}

/** Ends attempts: the store's record, the log lines and the run's list of attempts, in one place. */
export class AttemptLifecycle {
  readonly records: AttemptRecord[] = [];
  /** Durations of the attempts that succeeded (start -> end), for the ETA. */
  readonly durations: number[] = [];

  constructor(private readonly o: AttemptLifecycleOptions) {}

  /**
   * What runLocal / runBullmqCoordinator return once their executor stopped: the attempts ended
   * here, and the sweep as the store has it now (its counts; pending trials nothing runs any more).
   */
  runResult(sweepId: number, run: { t0: number; interrupted: boolean; recovered: string[] }): RunResult {
    return {
      attempts: this.records,
      interrupted: run.interrupted,
      recovered: run.recovered,
      blocked: this.o.store.trialKeys({ sweepId, status: 'pending' }),
      counts: this.o.store.trialCounts(sweepId),
      elapsedMs: Date.now() - run.t0,
    };
  }

  /** The "start" line (local) or "queued" line (BullMQ). */
  started(a: AttemptRef, verb: 'start' | 'queued'): void {
    const where = verb === 'start' && a.where ? ` on ${a.where}` : '';
    this.o.logger.info(
      { trial: a.key, attempt: a.attempt, slot: a.where },
      `${verb === 'start' ? 'start' : 'queued'} ${a.key.slice(0, 10)} ${a.label}${where}${a.attempt > 1 ? ` (attempt ${a.attempt})` : ''}`,
    );
  }

  /**
   * Records the end of an attempt. Terminal events are already in the store (the executor's
   * EventWriter applied them); every other verdict ends the attempt in the store here, and only if
   * it is still the trial's running attempt.
   */
  end(
    a: AttemptRef,
    verdict: AttemptVerdict,
    timing: { bootMs?: number | null; workMs?: number | null } = {},
  ): AttemptRecord {
    const rec: AttemptRecord = {
      key: a.key,
      attempt: a.attempt,
      slot: a.where ?? 'remote',
      outcome: 'not-started',
      reason: null,
      totalMs: Date.now() - a.claimedAt,
      bootMs: timing.bootMs ?? null,
      workMs: timing.workMs ?? null,
    };
    switch (verdict.kind) {
      case 'terminal':
        this.endTerminal(a, verdict.event, rec);
        break;
      case 'lost':
        this.endLost(a, verdict.reason, rec);
        break;
      case 'interrupted':
        this.endInterrupted(a, verdict.reason, rec);
        break;
      case 'refused':
        this.o.store.endAttempt(a.key, a.attempt, {
          status: 'failed',
          error: verdict.reason,
          retryable: false,
        });
        this.o.logger.error({ trial: a.key }, `${a.key.slice(0, 10)} ${a.label}: ${verdict.reason}`);
        rec.reason = verdict.reason;
        break;
    }
    this.records.push(rec);
    return rec;
  }

  private endTerminal(a: AttemptRef, ev: TerminalEvent, rec: AttemptRecord): void {
    const { logger } = this.o;
    const head = `${a.key.slice(0, 10)} ${a.label}`;
    const ids = { trial: a.key, attempt: a.attempt };
    if (ev.type === 'finished') {
      rec.outcome = 'succeeded';
      if (a.startedAt !== null) this.durations.push(Date.now() - a.startedAt);
      logger.info(
        ids,
        `done  ${head}: accuracy ${ev.summary.accuracyFinal.toFixed(4)}${a.where ? ` (${a.where})` : ''}`,
      );
    } else if (ev.type === 'diverged') {
      rec.outcome = 'diverged';
      rec.reason = ev.reason;
      logger.warn(ids, `diverged ${head}: ${ev.reason} (recorded, not retried)`);
    } else {
      rec.outcome = ev.error.code === ATTEMPT_LOST_CODE ? 'lost' : 'failed';
      rec.reason = ev.error.message;
      logger.error(
        { ...ids, error: ev.error },
        `failed ${head}: ${ev.error.code}: ${ev.error.message}${this.retryNote(a, ev.retryable)}`,
      );
    }
    a.trialLog?.info({ attempt: a.attempt, outcome: rec.outcome }, 'attempt ended');
  }

  private endLost(a: AttemptRef, reason: string, rec: AttemptRecord): void {
    rec.outcome = 'lost';
    rec.reason = reason;
    this.o.store.endAttempt(a.key, a.attempt, {
      status: 'failed',
      error: `attempt ${a.attempt}: ${reason}`,
      retryable: true,
    });
    this.o.logger.error(
      { trial: a.key, attempt: a.attempt },
      `lost  ${a.key.slice(0, 10)} ${a.label}: ${reason}${this.retryNote(a, true)}`,
    );
    a.trialLog?.error({ attempt: a.attempt }, reason);
  }

  private endInterrupted(a: AttemptRef, reason: string, rec: AttemptRecord): void {
    rec.outcome = 'interrupted';
    rec.reason = reason;
    const why = `interrupted (${reason}) at attempt ${a.attempt}; not counted, runs again on the next flatrank run`;
    this.o.store.endAttempt(a.key, a.attempt, { status: 'interrupted', error: why });
    this.o.logger.warn(
      { trial: a.key, attempt: a.attempt },
      `interrupted ${a.key.slice(0, 10)} ${a.label}: ${reason}`,
    );
    a.trialLog?.warn({ attempt: a.attempt }, why);
  }

  /**
   * " (will retry)" / " (giving up: n of maxAttempts attempts failed)" after a failure: only the
   * attempts that count (not the interrupted ones, none before a --retry-failed) use up the budget.
   */
  private retryNote(a: AttemptRef, retryable: boolean): string {
    if (!retryable) return '';
    const counted = this.o.store.getTrial(a.key)?.countedAttempts ?? a.attempt;
    return counted < this.o.maxAttempts
      ? ' (will retry)'
      : ` (giving up: ${counted} of ${this.o.maxAttempts} attempts failed)`;
  }
}

/**
 * Attempts of this sweep marked running by a coordinator of this host that no longer exists (kill
 * -9, power loss) were interrupted: back to pending at once instead of waiting for their leases
 * to expire. Returns the keys recovered.
 */
export function recoverOrphans(
  store: ResultsStore,
  sweepId: number,
  prefixes: readonly string[],
  logger: Logger,
): string[] {
  const keys: string[] = [];
  // Every membership: an orphan the latest spec dropped is not running either (pending, not run again).
  for (const t of store.listTrials({ sweepId, status: 'running', membership: 'all' })) {
    const pid = deadHolderHere(t.worker, prefixes);
    if (pid === null) continue;
    const reason = `interrupted: the coordinator (pid ${pid}) running attempt ${t.attempts} is gone`;
    if (store.endAttempt(t.key, t.attempts, { status: 'interrupted', error: reason })) {
      keys.push(t.key);
      logger.warn({ trial: t.key }, `${t.key.slice(0, 10)}: ${reason}; back to pending, not counted`);
    }
  }
  return keys;
}

/**
 * Claims, leases and attempt bookkeeping: handing a trial to one worker for a new attempt
 * (atomic, so two processes never claim the same trial), extending its lease, the coordinator's
 * verdict on an attempt that ended without a terminal event, and cancelling trials whose
 * dependencies can no longer succeed.
 */
import { ValidationError, type TrialConfig } from '@flatrank/protocol';
import type { StoreContext } from './context.js';
import { positiveNumber, type ClaimOptions, type ClaimedTrial } from './rows.js';

/**
 * ATOMIC (BEGIN IMMEDIATE): picks the first trial of the sweep that is pending with every
 * dependency succeeded, or failed-and-retryable with counted attempts < maxAttempts, or running
 * with an expired lease; marks it running for a new attempt (counted). An expired lease means the
 * coordinator that held the attempt is gone (its own interruption, not the trial's failure): that
 * attempt is recorded as interrupted and does not count. Null when nothing is claimable now.
 */
export function claimTrial(ctx: StoreContext, opts: ClaimOptions): ClaimedTrial | null {
  ctx.assertWritable('claimTrial');
  const leaseMs = positiveNumber('leaseMs', opts.leaseMs);
  const maxAttempts = positiveNumber('maxAttempts', opts.maxAttempts);
  if (typeof opts.worker !== 'string' || opts.worker === '')
    throw new ValidationError('worker', 'worker: must be a non-empty string');
  const now = opts.now ?? Date.now();
  return ctx.db
    .transaction((): ClaimedTrial | null => {
      // Current points only: a trial the sweep's latest spec no longer has is never claimed.
      const member =
        'EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND st.active = 1)';
      // One indexed walk per claimable kind, each in id order and stopping at the first match
      // (INDEXED BY: (status, rowid) order makes ORDER BY id LIMIT 1 free; a wider index would sort
      // every pending trial of a 100k grid on each claim). The lowest id of the three wins.
      const params = { sweepId: opts.sweepId, maxAttempts, now };
      const pick = (where: string) =>
        ctx
          .stmt(
            `SELECT t.id, t.key, t.config, t.attempts, t.status FROM trials AS t INDEXED BY trials_status WHERE ${where} AND ${member} ORDER BY t.id LIMIT 1`,
          )
          .get(params) as
          { id: number; key: string; config: string; attempts: number; status: string } | undefined;
      const candidates = [
        pick(
          `t.status = 'pending' AND NOT EXISTS (SELECT 1 FROM trial_dependencies d WHERE d.trial_id = t.id
             AND NOT EXISTS (SELECT 1 FROM trials u WHERE u.key = d.depends_on_key AND u.status = 'succeeded'))`,
        ),
        pick(`t.status = 'failed' AND t.retryable = 1 AND t.counted_attempts < @maxAttempts`),
        pick(`t.status = 'running' AND t.lease_expires_at < @now`),
      ].filter((c) => c !== undefined);
      const row = candidates.sort((a, b) => a.id - b.id)[0];
      if (!row) return null;
      const attempt = row.attempts + 1;
      // A lease that ran out: the attempt it covered was interrupted (refunded), the new one counts.
      const interrupted = row.status === 'running' ? 1 : 0;
      ctx
        .stmt(
          `UPDATE trials SET status = 'running', attempts = @attempt, counted_attempts = counted_attempts + 1 - @interrupted,
           interrupted_attempts = interrupted_attempts + @interrupted, worker = @worker, device = @device, lease_expires_at = @lease,
           heartbeat_at = @now, started_at = @now, finished_at = NULL, error = NULL, error_code = NULL, retryable = 1,
           last_step = NULL, last_epoch = NULL
         WHERE id = @id`,
        )
        .run({
          id: row.id,
          attempt,
          interrupted,
          worker: opts.worker,
          device: opts.device ?? null,
          lease: now + leaseMs,
          now,
        });
      const dependsOn = ctx
        .stmt('SELECT depends_on_key FROM trial_dependencies WHERE trial_id = ? ORDER BY depends_on_key')
        .pluck()
        .all(row.id) as string[];
      return {
        id: row.id,
        key: row.key,
        sweepId: opts.sweepId,
        config: JSON.parse(row.config) as TrialConfig,
        attempt,
        dependsOn,
      };
    })
    .immediate();
}

/** Extends the lease of that attempt; false if the attempt no longer owns the trial. */
export function heartbeat(
  ctx: StoreContext,
  trialKey: string,
  attempt: number,
  leaseMs: number,
  now: number = Date.now(),
): boolean {
  ctx.assertWritable('heartbeat');
  positiveNumber('leaseMs', leaseMs);
  const info = ctx
    .stmt(
      `UPDATE trials SET lease_expires_at = @lease, heartbeat_at = @now WHERE key = @key AND attempts = @attempt AND status = 'running'`,
    )
    .run({ key: trialKey, attempt, lease: now + leaseMs, now });
  return info.changes === 1;
}

/** How the coordinator ends an attempt that ended without a terminal event. */
export type AttemptEnd = {
  /**
   * failed: the trial's own failure (crash, timeout, dead worker; counts toward maxAttempts);
   * interrupted: the coordinator's own interruption (back to pending, error code INTERRUPTED, not
   * counted); pending: back to pending, counted; cancelled: for good.
   */
  status: 'failed' | 'interrupted' | 'cancelled' | 'pending';
  error?: string;
  retryable?: boolean;
};

const ATTEMPT_ENDS = ['failed', 'interrupted', 'cancelled', 'pending'];

/**
 * The coordinator's verdict when an attempt ended without a terminal event (worker died,
 * timeout, interrupted, cancelled). Only acts if that attempt is still the trial's running
 * attempt; returns whether it did.
 */
export function endAttempt(
  ctx: StoreContext,
  trialKey: string,
  attempt: number,
  outcome: AttemptEnd,
  now: number = Date.now(),
): boolean {
  ctx.assertWritable('endAttempt');
  if (!ATTEMPT_ENDS.includes(outcome.status)) {
    throw new ValidationError(
      'outcome.status',
      `outcome.status: unknown value ${JSON.stringify(outcome.status)}; allowed: ${ATTEMPT_ENDS.join(', ')}`,
    );
  }
  const interrupted = outcome.status === 'interrupted' ? 1 : 0;
  const info = ctx
    .stmt(
      `UPDATE trials SET status = @status, error = @error, error_code = @code, retryable = @retryable, lease_expires_at = NULL,
       counted_attempts = max(counted_attempts - @interrupted, 0), interrupted_attempts = interrupted_attempts + @interrupted,
       finished_at = CASE WHEN @status = 'pending' THEN NULL ELSE @now END,
       worker = CASE WHEN @status = 'pending' THEN NULL ELSE worker END,
       device = CASE WHEN @status = 'pending' THEN NULL ELSE device END
     WHERE key = @key AND attempts = @attempt AND status = 'running'`,
    )
    .run({
      key: trialKey,
      attempt,
      status: interrupted ? 'pending' : outcome.status,
      interrupted,
      error: outcome.error ?? null,
      code:
        outcome.status === 'failed'
          ? 'ATTEMPT_FAILED'
          : outcome.status === 'cancelled'
            ? 'CANCELLED'
            : interrupted
              ? 'INTERRUPTED'
              : null,
      retryable: outcome.retryable === false ? 0 : 1,
      now,
    });
  return info.changes === 1;
}

/**
 * Marks pending trials of the sweep whose dependency can no longer succeed (diverged, cancelled,
 * or failed and not retryable / out of attempts) as cancelled, so that a sweep can finish.
 * Returns the keys cancelled.
 */
export function cancelBlocked(
  ctx: StoreContext,
  sweepId: number,
  maxAttempts: number,
  now: number = Date.now(),
): string[] {
  ctx.assertWritable('cancelBlocked');
  return ctx.db
    .transaction(() => {
      const keys = ctx
        .stmt(
          `SELECT t.key FROM trials AS t INDEXED BY trials_status
         WHERE t.status = 'pending' AND EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND st.active = 1) AND EXISTS (
           SELECT 1 FROM trial_dependencies d JOIN trials u ON u.key = d.depends_on_key
           WHERE d.trial_id = t.id AND (u.status IN ('diverged', 'cancelled')
             OR (u.status = 'failed' AND (u.retryable = 0 OR u.counted_attempts >= @maxAttempts))))`,
        )
        .pluck()
        .all({ sweepId, maxAttempts }) as string[];
      const upd = ctx.stmt(
        "UPDATE trials SET status = 'cancelled', error = 'a dependency did not succeed', error_code = 'DEPENDENCY_FAILED', finished_at = ? WHERE key = ?",
      );
      for (const k of keys) upd.run(now, k);
      return keys;
    })
    .immediate();
}

/**
 * `flatrank run --retry-failed`: the sweep's current points that failed, and those cancelled
 * because a dependency did not succeed, go back to pending with a fresh budget of attempts
 * (counted_attempts 0). Attempt numbers go on, so the earlier attempts keep their rows; the last
 * error stays until the next attempt starts. Returns how many of each were re-opened.
 */
export function retryFailed(ctx: StoreContext, sweepId: number): { failed: number; cancelled: number } {
  ctx.assertWritable('retryFailed');
  const member =
    'EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND st.active = 1)';
  const reopen = (where: string) =>
    ctx
      .stmt(
        `UPDATE trials AS t SET status = 'pending', counted_attempts = 0, retryable = 1, finished_at = NULL,
           lease_expires_at = NULL, worker = NULL, device = NULL
         WHERE ${where} AND ${member}`,
      )
      .run({ sweepId }).changes;
  return ctx.db
    .transaction(() => ({
      failed: reopen(`t.status = 'failed'`),
      cancelled: reopen(`t.status = 'cancelled' AND t.error_code = 'DEPENDENCY_FAILED'`),
    }))
    .immediate();
}

/**
 * Typed reads of sweeps and trials: sweep rows, per-sweep counts (constant time from the
 * maintained aggregates), trial listings, lookup by key or prefix, artifacts.
 */
import { TRIAL_STATUSES, ValidationError, type TrialStatus } from '@flatrank/protocol';
import type { StoreContext } from './context.js';
import {
  checkStatus,
  membershipCondition,
  toTrialRow,
  type Membership,
  type SweepRow,
  type TrialDbRow,
  type TrialRow,
} from './rows.js';

export function getSweep(ctx: StoreContext, name: string): SweepRow | undefined {
  const r = ctx.stmt('SELECT * FROM sweeps WHERE name = ?').get(name) as
    | {
        id: number;
        name: string;
        spec_text: string;
        spec_resolved: string;
        spec_hash: string;
        created_at: number;
        updated_at: number;
        finished_at: number | null;
      }
    | undefined;
  if (!r) return undefined;
  return {
    id: r.id,
    name: r.name,
    specText: r.spec_text,
    specResolved: JSON.parse(r.spec_resolved) as unknown,
    specHash: r.spec_hash,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

export function listSweeps(ctx: StoreContext): SweepRow[] {
  const names = ctx.stmt('SELECT name FROM sweeps ORDER BY id').all() as Array<{ name: string }>;
  return names.map((n) => getSweep(ctx, n.name)!);
}

/**
 * Trials of the sweep by status over a membership (default `retired`: the points its latest spec no
 * longer has). Walks those memberships (unlike trialCounts, which reads the maintained counts of
 * the current ones): for a start-of-run message or `flatrank status`, not for every update.
 */
export function membershipCounts(
  ctx: StoreContext,
  sweepId: number,
  membership: Membership = 'retired',
): Record<TrialStatus, number> {
  const cond = membershipCondition(membership);
  const counts = Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
  const rows = ctx
    .stmt(
      `SELECT t.status, count(*) AS n FROM sweep_trials st JOIN trials t ON t.id = st.trial_id
     WHERE st.sweep_id = ? AND ${cond} GROUP BY t.status`,
    )
    .all(sweepId) as Array<{ status: TrialStatus; n: number }>;
  for (const r of rows) counts[r.status] = r.n;
  return counts;
}

/**
 * Current trials of the sweep (points of its latest spec) by status. Reads the six rows of sweep_status_counts (kept by triggers of
 * migration 4), so it costs the same on a 100k-trial sweep as on a small one: the coordinators
 * call it for every progress update.
 */
export function trialCounts(ctx: StoreContext, sweepId: number): Record<TrialStatus, number> {
  const counts = Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
  const rows = ctx
    .stmt('SELECT status, trials FROM sweep_status_counts WHERE sweep_id = ?')
    .all(sweepId) as Array<{ status: TrialStatus; trials: number }>;
  for (const r of rows) counts[r.status] = r.trials;
  return counts;
}

/**
 * How long the succeeded trials of the sweep took (finished_at - started_at of their last
 * attempt): how many have both times, and their mean in ms (null when none). Constant time, from
 * sweep_status_counts, like trialCounts.
 */
export function succeededTiming(
  ctx: StoreContext,
  sweepId: number,
): { trials: number; meanMs: number | null } {
  const r = ctx
    .stmt("SELECT timed, time_ms FROM sweep_status_counts WHERE sweep_id = ? AND status = 'succeeded'")
    .get(sweepId) as { timed: number; time_ms: number } | undefined;
  if (!r || r.timed === 0) return { trials: 0, meanMs: null };
  return { trials: r.timed, meanMs: r.time_ms / r.timed };
}

/**
 * Trials in id order, optionally of one sweep (`membership`, default `current`: the points of its
 * latest spec) and / or one status.
 */
export function listTrials(
  ctx: StoreContext,
  filter: { sweepId?: number; status?: TrialStatus; membership?: Membership } = {},
): TrialRow[] {
  if (filter.status !== undefined) checkStatus(filter.status);
  // One statement per filter shape, so that a status filter walks the status index.
  const member = membershipCondition(filter.membership);
  const conds: string[] = [];
  if (filter.sweepId !== undefined)
    conds.push(
      `EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND ${member})`,
    );
  if (filter.status !== undefined) conds.push('t.status = @status');
  const rows = ctx
    .stmt(`SELECT t.* FROM trials t${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY t.id`)
    .all({
      ...(filter.sweepId !== undefined ? { sweepId: filter.sweepId } : {}),
      ...(filter.status !== undefined ? { status: filter.status } : {}),
    }) as TrialDbRow[];
  return rows.map(toTrialRow);
}

/**
 * Keys of the sweep's current trials with that status, in id order: what listTrials gives without reading
 * and parsing the wide rows (the coordinator's list of blocked trials at the end of a run).
 */
export function trialKeys(ctx: StoreContext, filter: { sweepId: number; status: TrialStatus }): string[] {
  checkStatus(filter.status);
  return ctx
    .stmt(
      `SELECT t.key FROM trials AS t INDEXED BY trials_status WHERE t.status = ?
     AND EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = ? AND st.trial_id = t.id AND st.active = 1) ORDER BY t.id`,
    )
    .pluck()
    .all(filter.status, filter.sweepId) as string[];
}

/**
 * A trial by full key or unique key prefix (at least 4 hex characters). Undefined if none
 * matches; ValidationError if the prefix is ambiguous.
 */
export function getTrial(ctx: StoreContext, keyOrPrefix: string): TrialRow | undefined {
  const k = keyOrPrefix.trim().toLowerCase();
  if (!/^[0-9a-f]+$/.test(k)) return undefined;
  if (k.length === 64) {
    const r = ctx.stmt('SELECT * FROM trials WHERE key = ?').get(k) as TrialDbRow | undefined;
    return r ? toTrialRow(r) : undefined;
  }
  if (k.length < 4)
    throw new ValidationError(
      'trial',
      `trial: a key prefix needs at least 4 hex characters, got ${JSON.stringify(keyOrPrefix)}`,
    );
  // Hex-only prefix, so a range scan on the unique key index is exact (no LIKE escaping needed).
  const rows = ctx
    .stmt("SELECT * FROM trials WHERE key >= ? AND key < ? || 'g' ORDER BY key LIMIT 6")
    .all(k, k) as TrialDbRow[];
  if (rows.length === 0) return undefined;
  if (rows.length > 1) {
    throw new ValidationError(
      'trial',
      `trial: prefix ${k} matches several trials (${rows.map((r) => r.key.slice(0, 16)).join(', ')}${rows.length > 5 ? ', ...' : ''}); give more characters`,
      {
        code: 'AMBIGUOUS_PREFIX',
        context: { matches: rows.map((r) => r.key) },
      },
    );
  }
  return toTrialRow(rows[0]!);
}

export function artifacts(ctx: StoreContext, trialKey: string): Array<{ kind: string; path: string }> {
  return ctx
    .stmt(
      'SELECT a.kind, a.path FROM artifacts a JOIN trials t ON t.id = a.trial_id WHERE t.key = ? ORDER BY a.id',
    )
    .all(trialKey) as Array<{
    kind: string;
    path: string;
  }>;
}

/** Schema version of the open database (PRAGMA user_version). */
export function schemaVersion(ctx: StoreContext): number {
  return ctx.db.pragma('user_version', { simple: true }) as number;
}

/**
 * ResultsStore: the one writer's API (coordinator) and the readers' typed accessors over a flatrank
 * SQLite database. A thin facade: the work is done by one module per concern, each taking the
 * connection and its statement cache (StoreContext):
 *   writes.ts  sweeps and the trial grid        events.ts  applying trial events
 *   claims.ts  claims, leases, attempt outcomes reads.ts   sweeps, trials, counts
 *   report-rows.ts  the streamed inputs of a sweep report          query.ts  runs / show / export
 *   dashboard-reads.ts  sweep overviews and paged trial lists of `flatrank serve`
 * All writes go through prepared statements in short transactions; the claim is one BEGIN
 * IMMEDIATE transaction so that two processes can never hand out the same trial. The connection is
 * not reachable from outside the package (`@flatrank/store/internal` gives it to the store's own
 * tests and benchmarks).
 */
import type { TrialEnvelope, TrialStatus } from '@flatrank/protocol';
import * as claims from './claims.js';
import { openDatabase, type OpenOptions } from './connection.js';
import { StoreContext, bindContext } from './context.js';
import { applyEvents } from './events.js';
import * as reads from './reads.js';
import * as dashboardReads from './dashboard-reads.js';
import type { SweepOverview, SweepTrialFilter, SweepTrialPage } from './dashboard-reads.js';
import * as reportRows from './report-rows.js';
import type {
  ReportAllocationRow,
  ReportLayerRow,
  ReportRankLayerRow,
  ReportStartRow,
  ReportSummaryRow,
  ReportTrialRow,
} from './report-rows.js';
import type {
  ApplyStats,
  ClaimOptions,
  ClaimedTrial,
  Membership,
  SweepRow,
  SyncResult,
  TrialInsert,
  TrialRow,
} from './rows.js';
import * as writes from './writes.js';

export class ResultsStore {
  readonly path: string;
  readonly readonly: boolean;
  /** Schema versions this open applied (empty unless a writer opened an older database). */
  readonly migrated: readonly number[];
  readonly #ctx: StoreContext;

  private constructor(ctx: StoreContext, migrated: readonly number[]) {
    this.#ctx = ctx;
    this.path = ctx.path;
    this.readonly = ctx.readonly;
    this.migrated = migrated;
    bindContext(this, ctx);
  }

  /**
   * create=true (coordinator only): create + migrate. create=false: a missing file is StoreError
   * 'DB_MISSING', a foreign file 'DB_NOT_FLATRANK', a newer schema 'DB_TOO_NEW'. A writable open
   * migrates an older schema; readonly=true opens a read-only connection.
   */
  static open(file: string, opts: OpenOptions = {}): ResultsStore {
    const { db, path, migrated } = openDatabase(file, opts);
    return new ResultsStore(new StoreContext(db, path, opts.readonly ?? false), migrated);
  }

  close(): void {
    const db = this.#ctx.db;
    if (!db.open) return;
    // Keeps planner statistics fresh as tables grow (cheap; SQLite's recommendation on close).
    if (!this.readonly) {
      try {
        db.pragma('optimize');
      } catch {
        // best effort: a busy database is still closed below
      }
    }
    db.close();
  }

  // ------------------------------------------------------------- writes (writes.ts, events.ts)

  /** Creates the sweep or updates its spec (and clears finished_at). */
  upsertSweep(
    s: { name: string; specText: string; specResolved: unknown; specHash: string },
    now: number = Date.now(),
  ): { id: number; created: boolean } {
    return writes.upsertSweep(this.#ctx, s, now);
  }

  finishSweep(sweepId: number, now: number = Date.now()): void {
    writes.finishSweep(this.#ctx, sweepId, now);
  }

  /** Idempotent by trial key; dependsOn = keys that must have succeeded first (writes.ts). */
  insertTrials(
    sweepId: number,
    trials: ReadonlyArray<TrialInsert>,
    now: number = Date.now(),
  ): { inserted: number; existing: number } {
    return writes.insertTrials(this.#ctx, sweepId, trials, now);
  }

  /** Makes the sweep's current points exactly `trials`, retiring the others (writes.ts). */
  syncSweepTrials(sweepId: number, trials: ReadonlyArray<TrialInsert>, now: number = Date.now()): SyncResult {
    return writes.syncSweepTrials(this.#ctx, sweepId, trials, now);
  }

  /** Applies trial events in one transaction, idempotently (events.ts). */
  applyEvents(envelopes: ReadonlyArray<TrialEnvelope>, now: number = Date.now()): ApplyStats {
    return applyEvents(this.#ctx, envelopes, now);
  }

  // ------------------------------------------------------------- claims and attempts (claims.ts)

  /** Atomically hands the next claimable trial of the sweep to a worker for a new attempt; null if none. */
  claimTrial(opts: ClaimOptions): ClaimedTrial | null {
    return claims.claimTrial(this.#ctx, opts);
  }

  /** Extends the lease of that attempt; false if the attempt no longer owns the trial. */
  heartbeat(trialKey: string, attempt: number, leaseMs: number, now: number = Date.now()): boolean {
    return claims.heartbeat(this.#ctx, trialKey, attempt, leaseMs, now);
  }

  /** The coordinator's verdict on an attempt that ended without a terminal event; whether it acted. */
  endAttempt(
    trialKey: string,
    attempt: number,
    outcome: claims.AttemptEnd,
    now: number = Date.now(),
  ): boolean {
    return claims.endAttempt(this.#ctx, trialKey, attempt, outcome, now);
  }

  /** Failed points of the sweep and their cancelled dependents get a fresh budget of attempts. */
  retryFailed(sweepId: number): { failed: number; cancelled: number } {
    return claims.retryFailed(this.#ctx, sweepId);
  }

  /** Cancels pending trials whose dependency can no longer succeed; the keys cancelled. */
  cancelBlocked(sweepId: number, maxAttempts: number, now: number = Date.now()): string[] {
    return claims.cancelBlocked(this.#ctx, sweepId, maxAttempts, now);
  }

  // ------------------------------------------------------------- reads (reads.ts)

  getSweep(name: string): SweepRow | undefined {
    return reads.getSweep(this.#ctx, name);
  }

  listSweeps(): SweepRow[] {
    return reads.listSweeps(this.#ctx);
  }

  /** Trials of the sweep by status over a membership (default `retired`); walks the memberships. */
  membershipCounts(sweepId: number, membership: Membership = 'retired'): Record<TrialStatus, number> {
    return reads.membershipCounts(this.#ctx, sweepId, membership);
  }

  /** Current trials of the sweep by status, in constant time (maintained counts). */
  trialCounts(sweepId: number): Record<TrialStatus, number> {
    return reads.trialCounts(this.#ctx, sweepId);
  }

  /** How many succeeded trials of the sweep have both times, and their mean duration in ms. */
  succeededTiming(sweepId: number): { trials: number; meanMs: number | null } {
    return reads.succeededTiming(this.#ctx, sweepId);
  }

  /** Trials in id order, optionally of one sweep (and membership) and / or one status. */
  listTrials(filter: { sweepId?: number; status?: TrialStatus; membership?: Membership } = {}): TrialRow[] {
    return reads.listTrials(this.#ctx, filter);
  }

  /** Keys of the sweep's current trials with that status, in id order. */
  trialKeys(filter: { sweepId: number; status: TrialStatus }): string[] {
    return reads.trialKeys(this.#ctx, filter);
  }

  /** A trial by full key or unique prefix (>= 4 hex characters); undefined if none matches. */
  getTrial(keyOrPrefix: string): TrialRow | undefined {
    return reads.getTrial(this.#ctx, keyOrPrefix);
  }

  artifacts(trialKey: string): Array<{ kind: string; path: string }> {
    return reads.artifacts(this.#ctx, trialKey);
  }

  /** Schema version of the open database (PRAGMA user_version). */
  schemaVersion(): number {
    return reads.schemaVersion(this.#ctx);
  }

  // ------------------------------------------------------------- dashboard reads (dashboard-reads.ts)

  /** Every sweep with its current points by status and mean succeeded duration (two statements). */
  sweepOverviews(): SweepOverview[] {
    return dashboardReads.sweepOverviews(this.#ctx);
  }

  /** The sweep's current trials, filtered, sorted and paged, as value arrays (SWEEP_TRIAL_COLUMNS). */
  sweepTrialPage(sweepId: number, filter: SweepTrialFilter = {}): SweepTrialPage {
    return dashboardReads.sweepTrialPage(this.#ctx, sweepId, filter);
  }

  /** PRAGMA data_version: changes when another connection commits (to keep derived data until then). */
  dataVersion(): number {
    return dashboardReads.dataVersion(this.#ctx);
  }

  // ------------------------------------------------------------- report inputs (report-rows.ts)

  /** The sweep's member trials as report rows (config shape without the seed, ratios), streamed. */
  iterateReportTrials(
    sweepId: number,
    opts: { membership?: Membership } = {},
  ): IterableIterator<ReportTrialRow> {
    return reportRows.iterateReportTrials(this.#ctx, sweepId, opts);
  }

  /** A lookup of the member trial another member starts from (its shape and own start key). */
  reportStartLookup(
    sweepId: number,
    opts: { membership?: Membership } = {},
  ): (key: string) => ReportStartRow | undefined {
    return reportRows.reportStartLookup(this.#ctx, sweepId, opts);
  }

  /** The results rows of the sweep's member trials (those with a results row). */
  reportTrialSummaries(sweepId: number, opts: { membership?: Membership } = {}): ReportSummaryRow[] {
    return reportRows.reportTrialSummaries(this.#ctx, sweepId, opts);
  }

  /** The per-layer records of the sweep's member trials' current attempts, by key then layer. */
  reportTrialLayers(sweepId: number, opts: { membership?: Membership } = {}): ReportLayerRow[] {
    return reportRows.reportTrialLayers(this.#ctx, sweepId, opts);
  }

  /** Per-layer ranks and sizes of the sweep's succeeded trials, in trial then model order (rank profiles). */
  reportRankLayers(sweepId: number, opts: { membership?: Membership } = {}): ReportRankLayerRow[] {
    return reportRows.reportRankLayers(this.#ctx, sweepId, opts);
  }

  /** Allocation records of the sweep's succeeded trials (their current attempt), in trial order. */
  reportAllocations(sweepId: number, opts: { membership?: Membership } = {}): ReportAllocationRow[] {
    return reportRows.reportAllocations(this.#ctx, sweepId, opts);
  }
}

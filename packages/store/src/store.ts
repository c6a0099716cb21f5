/**
 * ResultsStore: the one writer's API (coordinator) and the readers' typed accessors over a flatrank
 * SQLite database. All writes go through prepared statements in short transactions; the claim is
 * one BEGIN IMMEDIATE transaction so that two processes can never hand out the same trial.
 */
import type Database from 'better-sqlite3';
import {
  METRIC_PHASES,
  StoreError,
  TRIAL_STATUSES,
  ValidationError,
  trialKey as computeTrialKey,
  type RunEnvironment,
  type TrialConfig,
  type TrialEnvelope,
  type TrialStatus,
  type TrialSummary,
  type LayerRecord,
} from '@flatrank/protocol';
import { openDatabase, type OpenOptions } from './connection.js';

export interface SweepRow {
  id: number;
  name: string;
  specText: string;
  specResolved: unknown;
  specHash: string;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
}

/** The config axes stored as indexed columns (see README: trials). */
export interface TrialAxes {
  model: string;
  dataset: string;
  method: string;
  decomposition: string | null;
  scheme: string | null;
  rankPolicy: string | null;
  targetRatio: number | null;
  distortionInterval: number | null;
  seed: number;
  lr: number;
  epochs: number;
  batchSize: number;
}

export interface TrialRow {
  id: number;
  key: string;
  sweepId: number;
  status: TrialStatus;
  attempts: number;
  retryable: boolean;
  worker: string | null;
  device: string | null;
  config: TrialConfig;
  axes: TrialAxes;
  error: string | null;
  errorCode: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  leaseExpiresAt: number | null;
  heartbeatAt: number | null;
  lastStep: number | null;
  lastEpoch: number | null;
  /** The environment reported by the latest attempt's 'started' event (null before it). */
  environment: RunEnvironment | null;
}

export interface ClaimedTrial {
  id: number;
  key: string;
  sweepId: number;
  config: TrialConfig;
  attempt: number;
  dependsOn: string[];
}

export interface TrialInsert {
  key: string;
  config: TrialConfig;
  dependsOn?: readonly string[];
}

/**
 * Which memberships of a sweep a per-sweep read covers: `current` (default) = the points of the
 * sweep's latest spec (`sweep_trials.active = 1`); `retired` = trials linked by an earlier version of
 * the spec and no longer in it (kept with their results, never run again by this sweep); `all` = both.
 */
export type Membership = 'current' | 'retired' | 'all';
export const MEMBERSHIPS: readonly Membership[] = ['current', 'retired', 'all'];

/** The SQL condition on `sweep_trials st` for a membership (validated at the boundary). */
export function membershipCondition(membership: Membership | undefined, field = 'membership'): string {
  const m = membership ?? 'current';
  if (!(MEMBERSHIPS as readonly string[]).includes(m))
    throw new ValidationError(
      field,
      `${field}: unknown value ${JSON.stringify(m)}; allowed: ${MEMBERSHIPS.join(', ')}`,
    );
  return m === 'current' ? 'st.active = 1' : m === 'retired' ? 'st.active = 0' : '1';
}

export interface SyncResult {
  inserted: number;
  existing: number;
  /** Memberships that left the spec in this call (active -> retired). */
  retired: number;
  /** Memberships that came back into the spec in this call (retired -> active). */
  restored: number;
  /** Every retired membership of the sweep after the call, by the trial's status. */
  notInSpec: Record<TrialStatus, number>;
}

export interface ClaimOptions {
  sweepId: number;
  worker: string;
  device?: string | null;
  leaseMs: number;
  maxAttempts: number;
  now?: number;
}

export interface ApplyStats {
  /** Events that changed the database. */
  applied: number;
  /** Duplicates, stale attempts, unknown trials, heartbeats of finished attempts. */
  ignored: number;
}

interface TrialDbRow {
  id: number;
  sweep_id: number;
  key: string;
  config: string;
  model: string;
  dataset: string;
  method: string;
  decomposition: string | null;
  scheme: string | null;
  rank_policy: string | null;
  target_ratio: number | null;
  distortion_interval: number | null;
  seed: number;
  lr: number;
  epochs: number;
  batch_size: number;
  status: TrialStatus;
  attempts: number;
  retryable: number;
  worker: string | null;
  device: string | null;
  lease_expires_at: number | null;
  heartbeat_at: number | null;
  last_step: number | null;
  last_epoch: number | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  error: string | null;
  error_code: string | null;
  git_commit: string | null;
  git_dirty: number | null;
  package_versions: string | null;
  node_version: string | null;
  backend: string | null;
  backend_version: string | null;
  device_name: string | null;
  host: string | null;
  cuda_visible_devices: string | null;
  pid: number | null;
}

const KEY_RE = /^[0-9a-f]{64}$/;

/** The indexed axis columns of a resolved config (null where the axis does not apply). */
export function configAxes(c: TrialConfig): TrialAxes {
  const rank = c.compression?.rank;
  let rankPolicy: string | null = null;
  let targetRatio: number | null = null;
  if (rank) {
    switch (rank.kind) {
      case 'rank':
        rankPolicy = `rank=${rank.rank}`;
        break;
      case 'ranks':
        rankPolicy = `ranks=${rank.ranks[0]}x${rank.ranks[1]}`;
        break;
      case 'fraction':
        rankPolicy = `fraction=${rank.fraction}`;
        break;
      case 'ratio':
        rankPolicy = `ratio=${rank.ratio}`;
        targetRatio = rank.ratio;
        break;
      case 'model-ratio':
        rankPolicy = `model-ratio=${rank.ratio}`;
        targetRatio = rank.ratio;
        break;
      case 'energy':
        rankPolicy = `energy=${rank.threshold}`;
        break;
      case 'vbmf':
        rankPolicy = 'vbmf';
        break;
    }
  }
  return {
    model: c.model,
    dataset: c.dataset.name,
    method: c.method,
    decomposition: c.compression?.decomposition ?? null,
    scheme: c.compression?.scheme ?? null,
    rankPolicy,
    targetRatio,
    distortionInterval: c.distortion?.interval ?? null,
    seed: c.seed,
    lr: c.training.lr,
    epochs: c.training.epochs,
    batchSize: c.training.batchSize,
  };
}

function toTrialRow(r: TrialDbRow): TrialRow {
  const environment: RunEnvironment | null =
    r.node_version === null
      ? null
      : {
          gitCommit: r.git_commit,
          gitDirty: r.git_dirty === null ? null : r.git_dirty !== 0,
          packageVersions: r.package_versions
            ? (JSON.parse(r.package_versions) as Record<string, string>)
            : {},
          nodeVersion: r.node_version,
          backend: r.backend as RunEnvironment['backend'],
          backendVersion: r.backend_version ?? '',
          device: r.device_name ?? '',
          host: r.host ?? '',
          cudaVisibleDevices: r.cuda_visible_devices,
          pid: r.pid ?? 0,
        };
  return {
    id: r.id,
    key: r.key,
    sweepId: r.sweep_id,
    status: r.status,
    attempts: r.attempts,
    retryable: r.retryable !== 0,
    worker: r.worker,
    device: r.device,
    config: JSON.parse(r.config) as TrialConfig,
    axes: {
      model: r.model,
      dataset: r.dataset,
      method: r.method,
      decomposition: r.decomposition,
      scheme: r.scheme,
      rankPolicy: r.rank_policy,
      targetRatio: r.target_ratio,
      distortionInterval: r.distortion_interval,
      seed: r.seed,
      lr: r.lr,
      epochs: r.epochs,
      batchSize: r.batch_size,
    },
    error: r.error,
    errorCode: r.error_code,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    leaseExpiresAt: r.lease_expires_at,
    heartbeatAt: r.heartbeat_at,
    lastStep: r.last_step,
    lastEpoch: r.last_epoch,
    environment,
  };
}

function finiteOrNull(x: number | null | undefined): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

function ratio(before: number, after: number): number | null {
  return after > 0 ? before / after : null;
}

function positiveNumber(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw new ValidationError(field, `${field}: must be a positive number, got ${String(v)}`);
  return v;
}

export class ResultsStore {
  readonly path: string;
  readonly readonly: boolean;
  /** The underlying connection, for the query helpers of this package (not part of the public API). */
  readonly db: Database.Database;
  /** Schema versions this open applied (empty unless a writer opened an older database). */
  readonly migrated: readonly number[];
  private readonly stmts = new Map<string, Database.Statement>();

  private constructor(db: Database.Database, path: string, readonly: boolean, migrated: readonly number[]) {
    this.db = db;
    this.path = path;
    this.readonly = readonly;
    this.migrated = migrated;
  }

  /**
   * create=true (coordinator only): create + migrate. create=false: a missing file is StoreError
   * 'DB_MISSING', a foreign file 'DB_NOT_FLATRANK', a newer schema 'DB_TOO_NEW'. A writable open
   * migrates an older schema; readonly=true opens a read-only connection.
   */
  static open(file: string, opts: OpenOptions = {}): ResultsStore {
    const { db, path, migrated } = openDatabase(file, opts);
    return new ResultsStore(db, path, opts.readonly ?? false, migrated);
  }

  close(): void {
    if (!this.db.open) return;
    // Keeps planner statistics fresh as tables grow (cheap; SQLite's recommendation on close).
    if (!this.readonly) {
      try {
        this.db.pragma('optimize');
      } catch {
        // best effort: a busy database is still closed below
      }
    }
    this.db.close();
  }

  private stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  private assertWritable(what: string): void {
    if (this.readonly) {
      throw new StoreError(
        'WRITE_REFUSED',
        `${what}: ${this.path} was opened read-only; only the coordinator (opened without readonly) writes.`,
        {
          context: { path: this.path, operation: what },
        },
      );
    }
  }

  // ---------------------------------------------------------------- sweeps

  upsertSweep(
    s: { name: string; specText: string; specResolved: unknown; specHash: string },
    now: number = Date.now(),
  ): { id: number; created: boolean } {
    this.assertWritable('upsertSweep');
    if (typeof s.name !== 'string' || s.name.trim() === '')
      throw new ValidationError('sweep.name', 'sweep.name: must be a non-empty string');
    return this.db
      .transaction(() => {
        const existing = this.stmt('SELECT id FROM sweeps WHERE name = ?').get(s.name) as
          { id: number } | undefined;
        const resolved = JSON.stringify(s.specResolved ?? null);
        if (existing) {
          this.stmt(
            'UPDATE sweeps SET spec_text = ?, spec_resolved = ?, spec_hash = ?, updated_at = ?, finished_at = NULL WHERE id = ?',
          ).run(s.specText, resolved, s.specHash, now, existing.id);
          return { id: existing.id, created: false };
        }
        const info = this.stmt(
          'INSERT INTO sweeps (name, spec_text, spec_resolved, spec_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
        ).run(s.name, s.specText, resolved, s.specHash, now, now);
        return { id: Number(info.lastInsertRowid), created: true };
      })
      .immediate();
  }

  getSweep(name: string): SweepRow | undefined {
    const r = this.stmt('SELECT * FROM sweeps WHERE name = ?').get(name) as
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

  listSweeps(): SweepRow[] {
    const names = this.stmt('SELECT name FROM sweeps ORDER BY id').all() as Array<{ name: string }>;
    return names.map((n) => this.getSweep(n.name)!);
  }

  finishSweep(sweepId: number, now: number = Date.now()): void {
    this.assertWritable('finishSweep');
    this.stmt('UPDATE sweeps SET finished_at = ? WHERE id = ?').run(now, sweepId);
  }

  // ---------------------------------------------------------------- trials

  /**
   * Idempotent by trial key: a key already present (in any sweep) is counted as existing and only
   * linked to this sweep. dependsOn = keys that must have succeeded before this trial is claimable.
   */
  insertTrials(
    sweepId: number,
    trials: ReadonlyArray<TrialInsert>,
    now: number = Date.now(),
  ): { inserted: number; existing: number } {
    this.assertWritable('insertTrials');
    const rows = this.validateInserts(trials);
    return this.db
      .transaction(() => {
        const r = this.writeInserts(sweepId, rows, now);
        return { inserted: r.inserted, existing: r.existing };
      })
      .immediate();
  }

  /**
   * Makes the sweep's current points exactly `trials` (the latest expansion of its spec), in one
   * transaction: inserts / links them like insertTrials (a retired membership comes back), and
   * retires every other membership of the sweep (`sweep_trials.active = 0`). Retired trials keep
   * their rows and results; claims, counts, progress and reports of the sweep skip them.
   */
  syncSweepTrials(sweepId: number, trials: ReadonlyArray<TrialInsert>, now: number = Date.now()): SyncResult {
    this.assertWritable('syncSweepTrials');
    const rows = this.validateInserts(trials);
    return this.db
      .transaction((): SyncResult => {
        const r = this.writeInserts(sweepId, rows, now);
        const keep = new Set(r.ids);
        const active = this.stmt('SELECT trial_id FROM sweep_trials WHERE sweep_id = ? AND active = 1')
          .pluck()
          .all(sweepId) as number[];
        const retire = this.stmt('UPDATE sweep_trials SET active = 0 WHERE sweep_id = ? AND trial_id = ?');
        let retired = 0;
        for (const id of active) if (!keep.has(id)) retired += retire.run(sweepId, id).changes;
        return {
          inserted: r.inserted,
          existing: r.existing,
          retired,
          restored: r.restored,
          notInSpec: this.membershipCounts(sweepId, 'retired'),
        };
      })
      .immediate();
  }

  /**
   * Trials of the sweep by status over a membership (default `retired`: the points its latest spec no
   * longer has). Walks those memberships (unlike trialCounts, which reads the maintained counts of
   * the current ones): for a start-of-run message or `flatrank status`, not for every update.
   */
  membershipCounts(sweepId: number, membership: Membership = 'retired'): Record<TrialStatus, number> {
    const cond = membershipCondition(membership);
    const counts = Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
    const rows = this.stmt(
      `SELECT t.status, count(*) AS n FROM sweep_trials st JOIN trials t ON t.id = st.trial_id
       WHERE st.sweep_id = ? AND ${cond} GROUP BY t.status`,
    ).all(sweepId) as Array<{ status: TrialStatus; n: number }>;
    for (const r of rows) counts[r.status] = r.n;
    return counts;
  }

  private validateInserts(
    trials: ReadonlyArray<TrialInsert>,
  ): Array<{ t: TrialInsert; axes: TrialAxes; json: string }> {
    // Validate everything before writing anything.
    return trials.map((t, i) => {
      if (typeof t.key !== 'string' || !KEY_RE.test(t.key))
        throw new ValidationError(
          `trials[${i}].key`,
          `trials[${i}].key: must be 64 lowercase hex characters (sha256), got ${JSON.stringify(t.key)}`,
        );
      const expected = computeTrialKey(t.config);
      if (expected !== t.key) {
        throw new ValidationError(
          `trials[${i}].key`,
          `trials[${i}].key: ${t.key} is not trialKey(config) (${expected}); pass the key of the resolved config`,
        );
      }
      for (const [j, d] of (t.dependsOn ?? []).entries()) {
        if (typeof d !== 'string' || !KEY_RE.test(d))
          throw new ValidationError(
            `trials[${i}].dependsOn[${j}]`,
            `trials[${i}].dependsOn[${j}]: must be a trial key (64 hex characters)`,
          );
      }
      return { t, axes: configAxes(t.config), json: JSON.stringify(t.config) };
    });
  }

  /** insertTrials' writes, inside the caller's transaction; also the trial ids, in input order. */
  private writeInserts(
    sweepId: number,
    rows: ReadonlyArray<{ t: TrialInsert; axes: TrialAxes; json: string }>,
    now: number,
  ): { inserted: number; existing: number; restored: number; ids: number[] } {
    if (!this.stmt('SELECT 1 FROM sweeps WHERE id = ?').get(sweepId))
      throw new ValidationError('sweepId', `sweepId: no sweep with id ${sweepId}`);
    const ins = this
      .stmt(`INSERT INTO trials (sweep_id, key, config, model, dataset, method, decomposition, scheme, rank_policy, target_ratio,
            distortion_interval, seed, lr, epochs, batch_size, created_at)
          VALUES (@sweepId, @key, @config, @model, @dataset, @method, @decomposition, @scheme, @rankPolicy, @targetRatio,
            @distortionInterval, @seed, @lr, @epochs, @batchSize, @now)
          ON CONFLICT(key) DO NOTHING`);
    const idOf = this.stmt('SELECT id FROM trials WHERE key = ?').pluck();
    // A point in the spec again after an edit: its retired membership becomes current again.
    const link = this.stmt(
      'INSERT INTO sweep_trials (sweep_id, trial_id) VALUES (?, ?) ON CONFLICT DO UPDATE SET active = 1 WHERE active = 0',
    );
    const wasRetired = this.stmt(
      'SELECT 1 FROM sweep_trials WHERE sweep_id = ? AND trial_id = ? AND active = 0',
    );
    const dep = this.stmt(
      'INSERT OR IGNORE INTO trial_dependencies (trial_id, depends_on_key) VALUES (?, ?)',
    );
    let inserted = 0;
    let existing = 0;
    let restored = 0;
    const ids: number[] = [];
    for (const { t, axes, json } of rows) {
      const info = ins.run({ sweepId, key: t.key, config: json, now, ...axes });
      let id: number;
      if (info.changes === 1) {
        inserted++;
        id = Number(info.lastInsertRowid);
      } else {
        existing++;
        id = idOf.get(t.key) as number;
        if (wasRetired.get(sweepId, id)) restored++;
      }
      link.run(sweepId, id);
      ids.push(id);
      for (const d of t.dependsOn ?? []) dep.run(id, d);
    }
    return { inserted, existing, restored, ids };
  }

  /**
   * ATOMIC (BEGIN IMMEDIATE): picks the first trial of the sweep that is pending with every
   * dependency succeeded, or failed-and-retryable with attempts < maxAttempts, or running with an
   * expired lease and attempts < maxAttempts; marks it running for a new attempt. Running trials
   * whose lease expired after maxAttempts attempts are marked failed on the way. Null when nothing
   * is claimable now.
   */
  claimTrial(opts: ClaimOptions): ClaimedTrial | null {
    this.assertWritable('claimTrial');
    const leaseMs = positiveNumber('leaseMs', opts.leaseMs);
    const maxAttempts = positiveNumber('maxAttempts', opts.maxAttempts);
    if (typeof opts.worker !== 'string' || opts.worker === '')
      throw new ValidationError('worker', 'worker: must be a non-empty string');
    const now = opts.now ?? Date.now();
    return this.db
      .transaction((): ClaimedTrial | null => {
        // Current points only: a trial the sweep's latest spec no longer has is never claimed.
        const member =
          'EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND st.active = 1)';
        this.stmt(
          `UPDATE trials AS t SET status = 'failed', error = 'lease expired (worker lost) after ' || attempts || ' attempt(s)', error_code = 'LEASE_EXPIRED',
             finished_at = @now, lease_expires_at = NULL
           WHERE status = 'running' AND lease_expires_at < @now AND attempts >= @maxAttempts AND ${member}`,
        ).run({ now, maxAttempts, sweepId: opts.sweepId });
        // One indexed walk per claimable kind, each in id order and stopping at the first match
        // (INDEXED BY: (status, rowid) order makes ORDER BY id LIMIT 1 free; a wider index would sort
        // every pending trial of a 100k grid on each claim). The lowest id of the three wins.
        const params = { sweepId: opts.sweepId, maxAttempts, now };
        const pick = (where: string) =>
          this.stmt(
            `SELECT t.id, t.key, t.config, t.attempts FROM trials AS t INDEXED BY trials_status WHERE ${where} AND ${member} ORDER BY t.id LIMIT 1`,
          ).get(params) as { id: number; key: string; config: string; attempts: number } | undefined;
        const candidates = [
          pick(
            `t.status = 'pending' AND NOT EXISTS (SELECT 1 FROM trial_dependencies d WHERE d.trial_id = t.id
               AND NOT EXISTS (SELECT 1 FROM trials u WHERE u.key = d.depends_on_key AND u.status = 'succeeded'))`,
          ),
          pick(`t.status = 'failed' AND t.retryable = 1 AND t.attempts < @maxAttempts`),
          pick(`t.status = 'running' AND t.lease_expires_at < @now AND t.attempts < @maxAttempts`),
        ].filter((c) => c !== undefined);
        const row = candidates.sort((a, b) => a.id - b.id)[0];
        if (!row) return null;
        const attempt = row.attempts + 1;
        this.stmt(
          `UPDATE trials SET status = 'running', attempts = @attempt, worker = @worker, device = @device, lease_expires_at = @lease,
             heartbeat_at = @now, started_at = @now, finished_at = NULL, error = NULL, error_code = NULL, retryable = 1,
             last_step = NULL, last_epoch = NULL
           WHERE id = @id`,
        ).run({
          id: row.id,
          attempt,
          worker: opts.worker,
          device: opts.device ?? null,
          lease: now + leaseMs,
          now,
        });
        const dependsOn = this.stmt(
          'SELECT depends_on_key FROM trial_dependencies WHERE trial_id = ? ORDER BY depends_on_key',
        )
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
  heartbeat(trialKey: string, attempt: number, leaseMs: number, now: number = Date.now()): boolean {
    this.assertWritable('heartbeat');
    positiveNumber('leaseMs', leaseMs);
    const info = this.stmt(
      `UPDATE trials SET lease_expires_at = @lease, heartbeat_at = @now WHERE key = @key AND attempts = @attempt AND status = 'running'`,
    ).run({ key: trialKey, attempt, lease: now + leaseMs, now });
    return info.changes === 1;
  }

  /**
   * Applies trial events in one transaction. Idempotent: metrics are unique by (trial, attempt,
   * seq), layers by (trial, attempt, layer), artifacts by (trial, kind, path), the results row by
   * trial; terminal events only act on a running attempt. Events of any attempt other than the
   * trial's current one (stale or unknown) are ignored.
   */
  applyEvents(envelopes: ReadonlyArray<TrialEnvelope>, now: number = Date.now()): ApplyStats {
    this.assertWritable('applyEvents');
    const stats: ApplyStats = { applied: 0, ignored: 0 };
    if (envelopes.length === 0) return stats;
    const lookup = this.stmt('SELECT id, attempts, status FROM trials WHERE key = ?');
    const insMetric = this.stmt(
      'INSERT INTO metrics (trial_id, attempt, seq, step, epoch, phase, name, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.db
      .transaction(() => {
        const cache = new Map<string, { id: number; attempts: number; status: TrialStatus } | null>();
        for (const env of envelopes) {
          let t = cache.get(env.trialKey);
          if (t === undefined) {
            t =
              (lookup.get(env.trialKey) as
                { id: number; attempts: number; status: TrialStatus } | undefined) ?? null;
            cache.set(env.trialKey, t);
          }
          if (t === null || env.attempt !== t.attempts) {
            stats.ignored++;
            continue;
          }
          const ev = env.event;
          let changed = false;
          switch (ev.type) {
            case 'metric': {
              const phase = (METRIC_PHASES as readonly string[]).includes(ev.phase) ? ev.phase : null;
              if (phase === null)
                throw new ValidationError(
                  'event.phase',
                  `event.phase: unknown value ${JSON.stringify(ev.phase)}; allowed: ${METRIC_PHASES.join(', ')}`,
                );
              changed =
                insMetric.run(
                  t.id,
                  env.attempt,
                  env.seq,
                  ev.step,
                  ev.epoch,
                  phase,
                  ev.name,
                  finiteOrNull(ev.value),
                ).changes === 1;
              break;
            }
            case 'started':
              changed = this.writeEnvironment(t.id, ev.env);
              break;
            case 'layer':
              changed = this.writeLayer(t.id, env.attempt, ev.layer);
              break;
            case 'artifact':
              changed =
                this.stmt(
                  'INSERT INTO artifacts (trial_id, attempt, kind, path, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
                ).run(t.id, env.attempt, ev.kind, ev.path, now).changes === 1;
              break;
            case 'heartbeat':
              if (t.status === 'running')
                changed =
                  this.stmt(
                    "UPDATE trials SET heartbeat_at = ?, last_step = ?, last_epoch = ? WHERE id = ? AND status = 'running'",
                  ).run(now, ev.step, ev.epoch, t.id).changes === 1;
              break;
            case 'finished':
              if (t.status === 'running') {
                this.writeResult(t.id, env.attempt, ev.summary, now);
                this.stmt(
                  "UPDATE trials SET status = 'succeeded', finished_at = ?, lease_expires_at = NULL, error = NULL, error_code = NULL, last_step = ?, last_epoch = ? WHERE id = ?",
                ).run(now, ev.summary.steps, ev.summary.epochs, t.id);
                t.status = 'succeeded';
                changed = true;
              }
              break;
            case 'failed':
              if (t.status === 'running') {
                this.stmt(
                  "UPDATE trials SET status = 'failed', finished_at = ?, lease_expires_at = NULL, error = ?, error_code = ?, retryable = ? WHERE id = ?",
                ).run(now, ev.error.message, ev.error.code, ev.retryable ? 1 : 0, t.id);
                t.status = 'failed';
                changed = true;
              }
              break;
            case 'diverged':
              if (t.status === 'running') {
                this.stmt(
                  "UPDATE trials SET status = 'diverged', finished_at = ?, lease_expires_at = NULL, error = ?, error_code = 'DIVERGED', retryable = 0, last_step = ? WHERE id = ?",
                ).run(now, ev.reason, ev.step, t.id);
                t.status = 'diverged';
                changed = true;
              }
              break;
            default: {
              const unknown: never = ev;
              throw new ValidationError(
                'event.type',
                `event.type: unknown event ${JSON.stringify((unknown as { type?: unknown }).type)}`,
              );
            }
          }
          if (changed) stats.applied++;
          else stats.ignored++;
        }
      })
      .immediate();
    return stats;
  }

  private writeEnvironment(trialId: number, env: RunEnvironment): boolean {
    return (
      this.stmt(
        `UPDATE trials SET git_commit = @gitCommit, git_dirty = @gitDirty, package_versions = @packageVersions, node_version = @nodeVersion,
           backend = @backend, backend_version = @backendVersion, device_name = @device, host = @host,
           cuda_visible_devices = @cudaVisibleDevices, pid = @pid
         WHERE id = @id AND (git_commit, git_dirty, package_versions, node_version, backend, backend_version, device_name, host, cuda_visible_devices, pid)
           IS NOT (@gitCommit, @gitDirty, @packageVersions, @nodeVersion, @backend, @backendVersion, @device, @host, @cudaVisibleDevices, @pid)`,
      ).run({
        id: trialId,
        gitCommit: env.gitCommit ?? null,
        gitDirty: env.gitDirty === null || env.gitDirty === undefined ? null : env.gitDirty ? 1 : 0,
        packageVersions: JSON.stringify(env.packageVersions ?? {}),
        nodeVersion: env.nodeVersion,
        backend: env.backend,
        backendVersion: env.backendVersion,
        device: env.device,
        host: env.host,
        cudaVisibleDevices: env.cudaVisibleDevices ?? null,
        pid: env.pid ?? null,
      }).changes === 1
    );
  }

  private writeLayer(trialId: number, attempt: number, l: LayerRecord): boolean {
    // A layer reported again by the same attempt replaces the earlier record (latest wins).
    return (
      this.stmt(
        `INSERT INTO layers (trial_id, attempt, name, decomposition, scheme, ranks, raw_ranks, tile, kernel_shape,
           params_before, params_after, macs_before, macs_after, relative_error)
         VALUES (@trialId, @attempt, @name, @decomposition, @scheme, @ranks, @rawRanks, @tile, @kernelShape,
           @paramsBefore, @paramsAfter, @macsBefore, @macsAfter, @relativeError)
         ON CONFLICT(trial_id, attempt, name) DO UPDATE SET decomposition = excluded.decomposition, scheme = excluded.scheme,
           ranks = excluded.ranks, raw_ranks = excluded.raw_ranks, tile = excluded.tile, kernel_shape = excluded.kernel_shape,
           params_before = excluded.params_before, params_after = excluded.params_after, macs_before = excluded.macs_before,
           macs_after = excluded.macs_after, relative_error = excluded.relative_error
         WHERE (layers.ranks, layers.params_after, layers.relative_error) IS NOT (excluded.ranks, excluded.params_after, excluded.relative_error)`,
      ).run({
        trialId,
        attempt,
        name: l.name,
        decomposition: l.decomposition,
        scheme: l.scheme ?? null,
        ranks: JSON.stringify(l.ranks),
        rawRanks: l.rawRanks ? JSON.stringify(l.rawRanks) : null,
        tile: l.tile ? JSON.stringify(l.tile) : null,
        kernelShape: JSON.stringify(l.kernelShape ?? []),
        paramsBefore: l.paramsBefore,
        paramsAfter: l.paramsAfter,
        macsBefore: l.macsBefore,
        macsAfter: l.macsAfter,
        relativeError: finiteOrNull(l.relativeError),
      }).changes === 1
    );
  }

  private writeResult(trialId: number, attempt: number, s: TrialSummary, now: number): void {
    this.stmt(
      `INSERT INTO results (trial_id, attempt, accuracy_original, accuracy_after_decomposition, accuracy_final, params_before, params_after,
         macs_before, macs_after, params_ratio, macs_ratio, latency_before_ms, latency_after_ms, latency_batch, wall_seconds, steps, epochs, created_at)
       VALUES (@trialId, @attempt, @accuracyOriginal, @accuracyAfterDecomposition, @accuracyFinal, @paramsBefore, @paramsAfter,
         @macsBefore, @macsAfter, @paramsRatio, @macsRatio, @latencyBeforeMs, @latencyAfterMs, @latencyBatch, @wallSeconds, @steps, @epochs, @now)
       ON CONFLICT(trial_id) DO NOTHING`,
    ).run({
      trialId,
      attempt,
      accuracyOriginal: finiteOrNull(s.accuracyOriginal),
      accuracyAfterDecomposition: finiteOrNull(s.accuracyAfterDecomposition),
      accuracyFinal: finiteOrNull(s.accuracyFinal),
      paramsBefore: s.paramsBefore,
      paramsAfter: s.paramsAfter,
      macsBefore: s.macsBefore,
      macsAfter: s.macsAfter,
      paramsRatio: ratio(s.paramsBefore, s.paramsAfter),
      macsRatio: ratio(s.macsBefore, s.macsAfter),
      latencyBeforeMs: finiteOrNull(s.latencyBeforeMs),
      latencyAfterMs: finiteOrNull(s.latencyAfterMs),
      latencyBatch: s.latencyBatch ?? null,
      wallSeconds: s.wallSeconds,
      steps: s.steps,
      epochs: s.epochs,
      now,
    });
  }

  /**
   * The coordinator's verdict when an attempt ended without a terminal event (worker died,
   * timeout, cancelled). Only acts if that attempt is still the trial's running attempt; returns
   * whether it did.
   */
  endAttempt(
    trialKey: string,
    attempt: number,
    outcome: { status: 'failed' | 'cancelled' | 'pending'; error?: string; retryable?: boolean },
    now: number = Date.now(),
  ): boolean {
    this.assertWritable('endAttempt');
    if (!['failed', 'cancelled', 'pending'].includes(outcome.status)) {
      throw new ValidationError(
        'outcome.status',
        `outcome.status: unknown value ${JSON.stringify(outcome.status)}; allowed: failed, cancelled, pending`,
      );
    }
    const info = this.stmt(
      `UPDATE trials SET status = @status, error = @error, error_code = @code, retryable = @retryable, lease_expires_at = NULL,
         finished_at = CASE WHEN @status = 'pending' THEN NULL ELSE @now END,
         worker = CASE WHEN @status = 'pending' THEN NULL ELSE worker END,
         device = CASE WHEN @status = 'pending' THEN NULL ELSE device END
       WHERE key = @key AND attempts = @attempt AND status = 'running'`,
    ).run({
      key: trialKey,
      attempt,
      status: outcome.status,
      error: outcome.error ?? null,
      code:
        outcome.status === 'failed' ? 'ATTEMPT_FAILED' : outcome.status === 'cancelled' ? 'CANCELLED' : null,
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
  cancelBlocked(sweepId: number, maxAttempts: number, now: number = Date.now()): string[] {
    this.assertWritable('cancelBlocked');
    return this.db
      .transaction(() => {
        const keys = this.stmt(
          `SELECT t.key FROM trials AS t INDEXED BY trials_status
           WHERE t.status = 'pending' AND EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND st.active = 1) AND EXISTS (
             SELECT 1 FROM trial_dependencies d JOIN trials u ON u.key = d.depends_on_key
             WHERE d.trial_id = t.id AND (u.status IN ('diverged', 'cancelled')
               OR (u.status = 'failed' AND (u.retryable = 0 OR u.attempts >= @maxAttempts))))`,
        )
          .pluck()
          .all({ sweepId, maxAttempts }) as string[];
        const upd = this.stmt(
          "UPDATE trials SET status = 'cancelled', error = 'a dependency did not succeed', error_code = 'DEPENDENCY_FAILED', finished_at = ? WHERE key = ?",
        );
        for (const k of keys) upd.run(now, k);
        return keys;
      })
      .immediate();
  }

  /**
   * Current trials of the sweep (points of its latest spec) by status. Reads the six rows of sweep_status_counts (kept by triggers of
   * migration 4), so it costs the same on a 100k-trial sweep as on a small one: the coordinators
   * call it for every progress update.
   */
  trialCounts(sweepId: number): Record<TrialStatus, number> {
    const counts = Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
    const rows = this.stmt('SELECT status, trials FROM sweep_status_counts WHERE sweep_id = ?').all(
      sweepId,
    ) as Array<{ status: TrialStatus; trials: number }>;
    for (const r of rows) counts[r.status] = r.trials;
    return counts;
  }

  /**
   * How long the succeeded trials of the sweep took (finished_at - started_at of their last
   * attempt): how many have both times, and their mean in ms (null when none). Constant time, from
   * sweep_status_counts, like trialCounts.
   */
  succeededTiming(sweepId: number): { trials: number; meanMs: number | null } {
    const r = this.stmt(
      "SELECT timed, time_ms FROM sweep_status_counts WHERE sweep_id = ? AND status = 'succeeded'",
    ).get(sweepId) as { timed: number; time_ms: number } | undefined;
    if (!r || r.timed === 0) return { trials: 0, meanMs: null };
    return { trials: r.timed, meanMs: r.time_ms / r.timed };
  }

  /**
   * Trials in id order, optionally of one sweep (`membership`, default `current`: the points of its
   * latest spec) and / or one status.
   */
  listTrials(filter: { sweepId?: number; status?: TrialStatus; membership?: Membership } = {}): TrialRow[] {
    if (filter.status !== undefined && !(TRIAL_STATUSES as readonly string[]).includes(filter.status)) {
      throw new ValidationError(
        'status',
        `status: unknown value ${JSON.stringify(filter.status)}; allowed: ${TRIAL_STATUSES.join(', ')}`,
      );
    }
    // One statement per filter shape, so that a status filter walks the status index.
    const member = membershipCondition(filter.membership);
    const conds: string[] = [];
    if (filter.sweepId !== undefined)
      conds.push(
        `EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = @sweepId AND st.trial_id = t.id AND ${member})`,
      );
    if (filter.status !== undefined) conds.push('t.status = @status');
    const rows = this.stmt(
      `SELECT t.* FROM trials t${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY t.id`,
    ).all({
      ...(filter.sweepId !== undefined ? { sweepId: filter.sweepId } : {}),
      ...(filter.status !== undefined ? { status: filter.status } : {}),
    }) as TrialDbRow[];
    return rows.map(toTrialRow);
  }

  /**
   * Keys of the sweep's current trials with that status, in id order: what listTrials gives without reading
   * and parsing the wide rows (the coordinator's list of blocked trials at the end of a run).
   */
  trialKeys(filter: { sweepId: number; status: TrialStatus }): string[] {
    if (!(TRIAL_STATUSES as readonly string[]).includes(filter.status))
      throw new ValidationError(
        'status',
        `status: unknown value ${JSON.stringify(filter.status)}; allowed: ${TRIAL_STATUSES.join(', ')}`,
      );
    return this.stmt(
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
  getTrial(keyOrPrefix: string): TrialRow | undefined {
    const k = keyOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-f]+$/.test(k)) return undefined;
    if (k.length === 64) {
      const r = this.stmt('SELECT * FROM trials WHERE key = ?').get(k) as TrialDbRow | undefined;
      return r ? toTrialRow(r) : undefined;
    }
    if (k.length < 4)
      throw new ValidationError(
        'trial',
        `trial: a key prefix needs at least 4 hex characters, got ${JSON.stringify(keyOrPrefix)}`,
      );
    // Hex-only prefix, so a range scan on the unique key index is exact (no LIKE escaping needed).
    const rows = this.stmt("SELECT * FROM trials WHERE key >= ? AND key < ? || 'g' ORDER BY key LIMIT 6").all(
      k,
      k,
    ) as TrialDbRow[];
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

  artifacts(trialKey: string): Array<{ kind: string; path: string }> {
    return this.stmt(
      'SELECT a.kind, a.path FROM artifacts a JOIN trials t ON t.id = a.trial_id WHERE t.key = ? ORDER BY a.id',
    ).all(trialKey) as Array<{
      kind: string;
      path: string;
    }>;
  }

  /** Schema version of the open database (PRAGMA user_version). */
  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }
}

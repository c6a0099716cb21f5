/**
 * The store's row types (what its methods take and return), the trial row as stored and its
 * mapping to TrialRow, the indexed config axes, and the small value checks the modules share.
 */
import {
  TRIAL_STATUSES,
  ValidationError,
  rankPolicyLabel,
  type RunEnvironment,
  type TrialConfig,
  type TrialStatus,
} from '@flatrank/protocol';

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
  /** The attempt number of the latest attempt (every attempt keeps its rows under its number). */
  attempts: number;
  /** Attempts that count toward maxAttempts: not the interrupted ones, none before a --retry-failed. */
  countedAttempts: number;
  /** Attempts ended by the coordinator's own interruption (Ctrl-C, dead coordinator, lost lease, Redis loss). */
  interruptedAttempts: number;
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
  const m = checkOneOf(field, membership ?? 'current', MEMBERSHIPS);
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

export interface TrialDbRow {
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
  counted_attempts: number;
  interrupted_attempts: number;
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

export const KEY_RE = /^[0-9a-f]{64}$/;

/** The indexed axis columns of a resolved config (null where the axis does not apply). */
export function configAxes(c: TrialConfig): TrialAxes {
  const rank = c.compression?.rank;
  const targetRatio = rank?.kind === 'ratio' || rank?.kind === 'model-ratio' ? rank.ratio : null;
  return {
    model: c.model,
    dataset: c.dataset.name,
    method: c.method,
    decomposition: c.compression?.decomposition ?? null,
    scheme: c.compression?.scheme ?? null,
    rankPolicy: rank ? rankPolicyLabel(rank) : null,
    targetRatio,
    distortionInterval: c.distortion?.interval ?? null,
    seed: c.seed,
    lr: c.training.lr,
    epochs: c.training.epochs,
    batchSize: c.training.batchSize,
  };
}

export function toTrialRow(r: TrialDbRow): TrialRow {
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
    countedAttempts: r.counted_attempts,
    interruptedAttempts: r.interrupted_attempts,
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

export function finiteOrNull(x: number | null | undefined): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

export function ratio(before: number, after: number): number | null {
  return after > 0 ? before / after : null;
}

export function positiveNumber(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw new ValidationError(field, `${field}: must be a positive number, got ${String(v)}`);
  return v;
}

/** ValidationError naming `field` and what is allowed unless `value` is one of `allowed`. */
export function checkOneOf<T extends string>(
  field: string,
  value: unknown,
  allowed: readonly T[],
  what = 'value',
): T {
  if (!(allowed as readonly unknown[]).includes(value))
    throw new ValidationError(
      field,
      `${field}: unknown ${what} ${JSON.stringify(value)}; allowed: ${allowed.join(', ')}`,
    );
  return value as T;
}

/** ValidationError unless `status` is a trial status. */
export function checkStatus(status: string, field = 'status'): TrialStatus {
  return checkOneOf(field, status, TRIAL_STATUSES);
}

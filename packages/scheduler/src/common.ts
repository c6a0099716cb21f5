/**
 * Pieces shared by the local and the BullMQ coordinators: their common options, worker identities,
 * recovery of attempts orphaned by a dead coordinator, start-checkpoint resolution, the
 * runs-directory layout, logging of refused event writes, the live progress snapshot.
 */
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { TRIAL_STATUSES, type BackendName, type TrialConfig, type TrialEnvelope } from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import type { Logger } from './logging.js';
import { resolveCheckpointName } from './spec/checkpoints.js';
import type { ProgressSnapshot, RunningInfo } from './progress.js';

/** What both coordinators (runLocal, runBullmqCoordinator) take; each adds its own options. */
export interface CoordinatorOptions {
  store: ResultsStore;
  sweep: { id: number; name: string };
  maxAttempts: number;
  heartbeatMs: number;
  heartbeatTimeoutMs: number;
  trialTimeoutMs: number | null;
  cancelGraceMs?: number;
  runsDir: string;
  /**
   * Where `start: {checkpoint: <name>}` names are looked up (the spec file's directory, see
   * spec/checkpoints.ts); null: such trials fail with a message saying so.
   */
  checkpointDir?: string | null;
  dataDir: string | null;
  backend: BackendName | 'auto';
  logger: Logger;
  /** Abort = Ctrl-C: stop handing out work, cancel running attempts, return interrupted. */
  signal?: AbortSignal;
  onProgress?(snapshot: ProgressSnapshot): void;
}

export const HOST = hostname();

/** "<prefix>:<host>:<pid>" (the store's worker column); the pid tells a later run whether we are alive. */
export function workerId(prefix: string, pid = process.pid, host = HOST): string {
  return `${prefix}:${host}:${pid}`;
}

function parseWorkerId(worker: string): { prefix: string; host: string; pid: number } | null {
  const m = /^([a-z]+):(.+):(\d+)(?:\/.*)?$/.exec(worker);
  return m ? { prefix: m[1]!, host: m[2]!, pid: Number(m[3]) } : null;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Attempts of this sweep marked running by a coordinator of this host that no longer exists (kill
 * -9, power loss) go back to pending at once instead of waiting for their leases to expire.
 * Returns the keys recovered.
 */
export function recoverOrphans(
  store: ResultsStore,
  sweepId: number,
  prefixes: readonly string[],
  note: (key: string, reason: string) => void = () => {},
): string[] {
  const keys: string[] = [];
  // Every membership: an orphan the latest spec dropped is not running either (pending, not run again).
  for (const t of store.listTrials({ sweepId, status: 'running', membership: 'all' })) {
    const w = t.worker ? parseWorkerId(t.worker) : null;
    if (!w || w.host !== HOST || !prefixes.includes(w.prefix) || w.pid === process.pid || pidAlive(w.pid))
      continue;
    const reason = `interrupted: the coordinator (pid ${w.pid}) running attempt ${t.attempts} is gone`;
    if (store.endAttempt(t.key, t.attempts, { status: 'pending', error: reason })) {
      keys.push(t.key);
      note(t.key, reason);
    }
  }
  return keys;
}

/**
 * The checkpoint a trial starts from (absolute path; null from scratch), or an error text: the
 * final checkpoint artifact of its start trial, or its named checkpoint resolved against
 * `checkpointDir` (checked again here: it may have gone since the spec was loaded).
 */
export function startCheckpoint(
  store: ResultsStore,
  config: TrialConfig,
  checkpointDir: string | null = null,
): { path: string | null; error?: string } {
  if (config.start.kind === 'scratch') return { path: null };
  if (config.start.kind === 'checkpoint') {
    const name = config.start.name;
    if (checkpointDir === null)
      return {
        path: null,
        error: `start checkpoint "${name}" cannot be resolved: this run has no spec directory to look it up in (run the spec file with flatrank run)`,
      };
    const r = resolveCheckpointName(name, checkpointDir);
    return r.ok
      ? { path: r.checkpoint.path }
      : { path: null, error: `start checkpoint: ${r.reason} (looked up in ${checkpointDir})` };
  }
  const key = config.start.trialKey;
  const ckpts = store.artifacts(key).filter((a) => a.kind === 'checkpoint');
  if (ckpts.length === 0)
    return {
      path: null,
      error: `start trial ${key.slice(0, 12)} has no checkpoint artifact (did it succeed and report one?)`,
    };
  return { path: ckpts[ckpts.length - 1]!.path };
}

export function trialDir(runsDir: string, sweep: string, key: string): string {
  return resolve(join(runsDir, sweep, key.slice(0, 16)));
}

export function attemptDir(runsDir: string, sweep: string, key: string, attempt: number): string {
  return join(trialDir(runsDir, sweep, key), `attempt-${attempt}`);
}

/** The EventWriter's onError of a coordinator: a write the store refused is logged, not thrown. */
export function logRefusedWrite(logger: Logger): (e: unknown, env?: TrialEnvelope) => void {
  return (e, env) =>
    logger.error(
      { err: e, trial: env?.trialKey, seq: env?.seq },
      `could not store ${env ? `event ${env.event.type} #${env.seq} of ${env.trialKey.slice(0, 10)}` : 'a heartbeat'}: ${(e as Error)?.message}`,
    );
}

/**
 * A coordinator's live progress: counts from the store; ETA = mean duration of the attempts that
 * succeeded in this run x trials left / `parallel(left)` (0 when nothing is left, null before any
 * succeeded).
 */
export function liveSnapshot(p: {
  store: ResultsStore;
  sweep: { id: number; name: string };
  t0: number;
  durations: readonly number[];
  running: RunningInfo[];
  parallel(left: number): number;
}): ProgressSnapshot {
  const { store, sweep, durations } = p;
  const counts = store.trialCounts(sweep.id);
  const total = TRIAL_STATUSES.reduce((a, k) => a + counts[k], 0);
  const left = counts.pending + counts.running;
  const mean = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : null;
  const par = p.parallel(left);
  return {
    sweep: sweep.name,
    total,
    counts,
    running: p.running,
    etaMs: mean === null ? (left === 0 ? 0 : null) : (mean * left) / par,
    elapsedMs: Date.now() - p.t0,
  };
}

/**
 * What a person watching a sweep sees: the live status table (TTY), one-line progress (plain
 * output), `flatrank status` (the same, from the database) and the end-of-run results table.
 */
import { TRIAL_STATUSES, type TrialStatus } from '@flatrank/protocol';
import { formatTable } from '@flatrank/report/format';
import { listRuns, type ResultsStore } from '@flatrank/store';
import { trialLabel } from './label.js';

export interface RunningInfo {
  key: string;
  label: string;
  device: string | null;
  worker: string | null;
  attempt: number;
  epoch: number | null;
  epochs: number;
  step: number | null;
  startedAt: number | null;
}

export interface ProgressSnapshot {
  sweep: string;
  total: number;
  counts: Record<TrialStatus, number>;
  running: RunningInfo[];
  /** Estimated time to finish the trials not yet done; null before any trial finished. */
  etaMs: number | null;
  elapsedMs: number | null;
}

export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function done(s: ProgressSnapshot): number {
  return s.counts.succeeded + s.counts.diverged;
}

/** One line: "example-small: 5/14 done, 2 running, 0 failed, 0 diverged, ETA 2m10s" */
export function progressLine(s: ProgressSnapshot): string {
  return `${s.sweep}: ${done(s)}/${s.total} done, ${s.counts.running} running, ${s.counts.pending} pending, ${s.counts.failed} failed, ${s.counts.diverged} diverged${
    s.counts.cancelled ? `, ${s.counts.cancelled} cancelled` : ''
  }, ETA ${formatDuration(s.etaMs)}`;
}

/** The status table: a summary line, then one row per running trial. */
export function renderStatus(s: ProgressSnapshot, now = Date.now()): string {
  const head = progressLine(s) + (s.elapsedMs !== null ? ` (elapsed ${formatDuration(s.elapsedMs)})` : '');
  const width = 28;
  const frac = s.total ? done(s) / s.total : 0;
  const bar = `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${(frac * 100).toFixed(0)}%`;
  if (s.running.length === 0) return `${head}\n${bar}\n`;
  const rows = s.running.map((r) => ({
    trial: r.key.slice(0, 10),
    config: r.label,
    device: r.device ?? r.worker ?? '',
    attempt: r.attempt,
    epoch: r.epoch === null ? '-' : `${r.epoch}/${r.epochs}`,
    step: r.step ?? '-',
    time: r.startedAt ? formatDuration(now - r.startedAt) : '',
  }));
  return `${head}\n${bar}\n${formatTable(rows, ['trial', 'config', 'device', 'attempt', 'epoch', 'step', 'time'])}`;
}

/**
 * The same snapshot from the database (flatrank status). Cost independent of the sweep's size
 * except for its running trials: counts and the mean duration of succeeded trials come from the
 * store's per-sweep aggregates, and only running trials are read (a 100k-trial sweep read whole
 * took seconds).
 */
export function snapshotFromStore(
  store: ResultsStore,
  sweep: { id: number; name: string; createdAt?: number },
  now = Date.now(),
): ProgressSnapshot {
  const counts = store.trialCounts(sweep.id);
  const total = TRIAL_STATUSES.reduce((a, k) => a + counts[k], 0);
  const running: RunningInfo[] = store.listTrials({ sweepId: sweep.id, status: 'running' }).map((t) => ({
    key: t.key,
    label: trialLabel(t.config),
    device:
      t.device ??
      (t.environment
        ? `${t.environment.host} ${t.environment.cudaVisibleDevices ? `cuda:${t.environment.cudaVisibleDevices}` : 'cpu'}`
        : null),
    worker: t.environment ? null : t.worker,
    attempt: t.attempts,
    epoch: t.lastEpoch,
    epochs: t.config.training.epochs,
    step: t.lastStep,
    startedAt: t.startedAt,
  }));
  const { meanMs } = store.succeededTiming(sweep.id);
  const parallel = Math.max(1, running.length);
  const left = counts.pending + counts.running;
  const eta = meanMs !== null ? meanMs * (left / parallel) : left === 0 ? 0 : null;
  return {
    sweep: sweep.name,
    total,
    counts,
    running,
    etaMs: eta,
    elapsedMs: sweep.createdAt ? now - sweep.createdAt : null,
  };
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

/** The end-of-run results table of a sweep (flatrank report goes further). */
export function resultsTable(store: ResultsStore, sweep: string): string {
  const rows = listRuns(store, { sweep }).map((r) => ({
    trial: r['key'],
    method: r['method'],
    decomposition: r['decomposition'],
    ratio: r['target_ratio'] ?? r['rank_policy'],
    sd: r['distortion_interval'],
    seed: r['seed'],
    status: r['status'],
    attempts: r['attempts'],
    acc_final: r['accuracy_final'],
    acc_after_decomp: r['accuracy_after_decomposition'],
    params_ratio: r['params_ratio'],
  }));
  if (rows.length === 0) return '(no trials)\n';
  return formatTable(rows, [
    'trial',
    'method',
    'decomposition',
    'ratio',
    'sd',
    'seed',
    'status',
    'attempts',
    'acc_final',
    'acc_after_decomp',
    'params_ratio',
  ]);
}

/** Redraws a block of text in place on a terminal; log lines print above it. */
export class TtyRenderer {
  private lines = 0;
  private last = '';
  constructor(private readonly out: NodeJS.WritableStream) {}

  update(text: string): void {
    this.last = text;
    this.clear();
    this.draw();
  }

  /** Prints text above the live block. */
  log(text: string): void {
    this.clear();
    this.out.write(text.endsWith('\n') ? text : `${text}\n`);
    this.draw();
  }

  /** Leaves the last block on screen and stops redrawing in place. */
  stop(): void {
    this.lines = 0;
  }

  private clear(): void {
    if (this.lines > 0) this.out.write(`\x1b[${this.lines}A\x1b[0J`);
    this.lines = 0;
  }

  private draw(): void {
    if (!this.last) return;
    const text = this.last.endsWith('\n') ? this.last : `${this.last}\n`;
    this.out.write(text);
    this.lines = text.split('\n').length - 1;
  }
}

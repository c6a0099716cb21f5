/**
 * `flatrank run <spec>` as a library call: spec -> grid -> store -> the local or the BullMQ executor ->
 * results table. The CLI command only parses flags and calls runSpec.
 */
import { join, resolve } from 'node:path';
import { SchedulerError, ValidationError, type BackendName } from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { planSlots, type GpuDiscovery, type GpuRequest } from './gpus.js';
import type { PinningHost } from './webgpu-gpus.js';
import type { RunResult } from './attempt.js';
import { runLocal } from './local.js';
import { createCoordinatorLogger, type Logger } from './logging.js';
import { EXECUTORS, type CoordinatorOptions, type ExecutorName } from './options.js';
import { progressLine, renderStatus, resultsTable, TtyRenderer, type ProgressSnapshot } from './progress.js';
import { describeEnd } from './run-end.js';
import { checkDataAvailable } from './spec/data.js';
import {
  countSpecPoints,
  DEFAULT_MAX_POINTS,
  expandSpecInterruptible,
  type GridPoint,
} from './spec/expand.js';
import { loadSpecFile } from './spec/load.js';
import { durationMs, type Resources } from './spec/schema.js';
import { describeNotInSpec, describePoints, writeSweep, type PreparedSweep } from './sweep.js';
import type { Spec } from './spec/load.js';

export interface RunSpecOptions {
  specFile: string;
  /** Database file (already resolved: --db, FLATRANK_DB, ./flatrank.sqlite). */
  db: string;
  gpus?: GpuRequest;
  /** CPU workers, or workers per GPU when running on GPUs (overrides the spec's resources). */
  workers?: number;
  /** Where attempts run: child processes here (local, the default) or flatrank workers via Redis. */
  executor?: ExecutorName;
  redis?: string;
  /** BullMQ queue name (several sweeps may share one). */
  queue?: string;
  dataDir?: string | null;
  runsDir?: string;
  trainerBackend?: BackendName | 'auto';
  dryRun?: boolean;
  /** Failed points, and the points cancelled because of them, get a fresh budget of attempts. */
  retryFailed?: boolean;
  /** Refuse grids of more points (default DEFAULT_MAX_POINTS); checked before expanding. */
  maxPoints?: number;
  /** Module forked for every attempt (the CLI passes apps/cli/dist/trial-child.js). */
  childEntry: string;
  childEnv?: Record<string, string | undefined>;
  discoverGpus?: GpuDiscovery;
  /** Machine facts for pinning webgpu workers (tests); default: read from sysfs. */
  pinningHost?: PinningHost;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Live table on stderr (default: stderr is a TTY). */
  tty?: boolean;
  signal?: AbortSignal;
  /** Milliseconds without a heartbeat before an attempt is declared dead; overrides the spec's resources.heartbeatTimeout (tests). */
  heartbeatTimeoutMs?: number;
  /** Milliseconds between two heartbeats of a trial child; overrides the spec's resources.heartbeatInterval (tests). */
  heartbeatMs?: number;
  cancelGraceMs?: number;
}

export interface RunSpecResult {
  sweep: string;
  points: number;
  inserted: number;
  existing: number;
  run: RunResult | null;
}

export async function runSpec(o: RunSpecOptions): Promise<RunSpecResult> {
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const spec = loadSpecFile(o.specFile);
  const maxPoints = o.maxPoints ?? DEFAULT_MAX_POINTS;
  const { total } = countSpecPoints(spec);
  if (total >= 10_000 && total <= maxPoints)
    stderr.write(`sweep ${spec.parsed.name}: expanding ${total.toLocaleString('en-US')} grid points\n`);
  const points = await expandSpecInterruptible(spec, { maxPoints, signal: o.signal });
  // Workers of the bullmq executor read their own machine's data: only a local run can check it here.
  if ((o.executor ?? 'local') === 'local') checkDataAvailable(spec, points, o.dataDir ?? null);
  if (o.dryRun) {
    stdout.write(describePoints(points));
    return { sweep: spec.parsed.name, points: points.length, inserted: 0, existing: 0, run: null };
  }
  const executor = checkRunOptions(o);
  const runsDir = resolve(o.runsDir ?? 'runs');
  const tty = o.tty ?? Boolean((stderr as NodeJS.WriteStream).isTTY);
  const renderer = tty ? new TtyRenderer(stderr) : null;
  const log = createCoordinatorLogger({
    file: join(runsDir, spec.parsed.name, 'coordinator.log'),
    console: (text) => (renderer ? renderer.log(text) : stderr.write(text)),
    consoleLevel: 'info',
    colorize: tty,
  });
  const store = ResultsStore.open(o.db, { create: true });
  try {
    const sweep = prepareSweep(store, spec, points, log.logger, o.retryFailed ?? false, o.signal);
    const common = coordinatorOptions(o, { store, spec, sweep, runsDir, logger: log.logger, renderer });
    const run = await execute(o, executor, common, spec.parsed.resources);
    renderer?.stop();
    stdout.write(`\n${resultsTable(store, sweep.name)}`);
    const c = run.counts;
    stdout.write(
      `${sweep.name}: ${c['succeeded']} succeeded, ${c['diverged']} diverged, ${c['failed']} failed, ${c['cancelled']} cancelled, ${c['pending']} pending, ${c['running']} running (${(run.elapsedMs / 1000).toFixed(1)} s)\n`,
    );
    throwUnlessComplete(store, sweep.id, sweep.name, run, join(runsDir, sweep.name));
    store.finishSweep(sweep.id);
    return {
      sweep: sweep.name,
      points: points.length,
      inserted: sweep.inserted,
      existing: sweep.existing,
      run,
    };
  } finally {
    store.close();
    log.close();
  }
}

/** Options checked before anything is written; returns the executor. */
function checkRunOptions(o: RunSpecOptions): ExecutorName {
  if (o.workers !== undefined && (!Number.isInteger(o.workers) || o.workers < 1))
    throw new ValidationError('--workers', `--workers: must be a positive integer, got ${o.workers}`);
  const executor = o.executor ?? 'local';
  if (!(EXECUTORS as readonly string[]).includes(executor))
    throw new ValidationError(
      '--executor',
      `--executor: unknown value ${JSON.stringify(executor)}; allowed: ${EXECUTORS.join(', ')}`,
    );
  if (executor === 'bullmq' && !o.redis)
    throw new ValidationError(
      '--redis',
      '--redis: the bullmq executor needs a Redis URL, e.g. --redis redis://127.0.0.1:6379',
    );
  return executor;
}

/** Writes the sweep and its points (and, with --retry-failed, re-opens its failed points). */
function prepareSweep(
  store: ResultsStore,
  spec: Spec,
  points: readonly GridPoint[],
  logger: Logger,
  retryFailed: boolean,
  signal: AbortSignal | undefined,
): PreparedSweep {
  const sweep = writeSweep(store, spec, points);
  // A signal that arrived during the (synchronous, all-or-nothing) insert is honoured here.
  if (signal?.aborted)
    throw new SchedulerError(
      'INTERRUPTED',
      `interrupted: sweep ${sweep.name}'s ${points.length} points were stored, none was run; run the same spec again to run them`,
      { context: { sweep: sweep.name } },
    );
  logger.info(
    { sweep: sweep.name, db: store.path, inserted: sweep.inserted, existing: sweep.existing },
    `sweep ${sweep.name}: ${points.length} points (${sweep.inserted} new, ${sweep.existing} already in ${store.path})`,
  );
  const notInSpec = describeNotInSpec(sweep.name, sweep.notInSpec);
  if (notInSpec) logger.info({ sweep: sweep.name, notInSpec: sweep.notInSpec }, notInSpec);
  if (retryFailed) {
    const r = store.retryFailed(sweep.id);
    logger.info(
      { sweep: sweep.name, ...r },
      `--retry-failed: ${r.failed} failed and ${r.cancelled} cancelled point(s) get a fresh budget of attempts (earlier attempts kept)`,
    );
  }
  return sweep;
}

function coordinatorOptions(
  o: RunSpecOptions,
  p: {
    store: ResultsStore;
    spec: Spec;
    sweep: PreparedSweep;
    runsDir: string;
    logger: Logger;
    renderer: TtyRenderer | null;
  },
): CoordinatorOptions {
  const res = p.spec.parsed.resources;
  let lastEnded = -1;
  const onPlainProgress = (s: ProgressSnapshot) => {
    // Plain output: one progress line whenever a trial ends (not every tick).
    const ended = s.counts.succeeded + s.counts.diverged + s.counts.failed + s.counts.cancelled;
    if (ended !== lastEnded && lastEnded !== -1) p.logger.info(progressLine(s));
    lastEnded = ended;
  };
  const renderer = p.renderer;
  return {
    store: p.store,
    sweep: { id: p.sweep.id, name: p.sweep.name },
    maxAttempts: res.maxAttempts,
    heartbeatMs: o.heartbeatMs ?? durationMs(res.heartbeatInterval),
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? durationMs(res.heartbeatTimeout),
    trialTimeoutMs: res.trialTimeout === null ? null : durationMs(res.trialTimeout),
    cancelGraceMs: o.cancelGraceMs,
    runsDir: p.runsDir,
    checkpointDir: p.spec.checkpointDir,
    dataDir: o.dataDir ?? null,
    backend: o.trainerBackend ?? 'auto',
    logger: p.logger,
    signal: o.signal,
    onProgress: renderer ? (s) => renderer.update(renderStatus(s)) : onPlainProgress,
  };
}

async function execute(
  o: RunSpecOptions,
  executor: ExecutorName,
  common: CoordinatorOptions,
  res: Resources,
): Promise<RunResult> {
  if (executor === 'bullmq') {
    const { runBullmqCoordinator } = await import('./bullmq/coordinator.js');
    return runBullmqCoordinator({ ...common, redisUrl: o.redis!, queueName: o.queue });
  }
  const plan = await planSlots({
    gpus: o.gpus ?? res.gpus,
    workersPerGpu: o.workers ?? res.workersPerGpu,
    cpuWorkers: o.workers ?? res.cpuWorkers,
    discover: o.discoverGpus,
    host: o.pinningHost,
  });
  common.logger.info(
    `${plan.reason}; ${plan.slots.length} slot${plan.slots.length > 1 ? 's' : ''}: ${plan.slots.map((s) => s.id).join(', ')}`,
  );
  for (const w of plan.warnings) common.logger.warn(w);
  return runLocal({ ...common, slots: plan.slots, childEntry: o.childEntry, childEnv: o.childEnv });
}

/** Exit 8 (SchedulerError) when the run was interrupted or a point did not end well, saying why per trial. */
function throwUnlessComplete(
  store: ResultsStore,
  sweepId: number,
  sweep: string,
  run: RunResult,
  logs: string,
): void {
  const c = run.counts;
  if (run.interrupted)
    throw new SchedulerError(
      'INTERRUPTED',
      `interrupted: ${c['pending']} trials left pending; run the same spec again to resume with only the unfinished points`,
      { context: { sweep, counts: c } },
    );
  if (c['failed']! + c['cancelled']! + c['pending']! + c['running']! > 0)
    throw new SchedulerError('TRIALS_FAILED', describeEnd(store, sweepId, sweep, run, logs), {
      context: { sweep, counts: c },
    });
}

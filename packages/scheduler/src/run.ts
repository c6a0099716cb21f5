/**
 * `flatrank run <spec>` as a library call: spec -> grid -> store -> local or BullMQ execution ->
 * results table. The CLI command only parses flags and calls runSpec.
 */
import { join, resolve } from 'node:path';
import { SchedulerError, ValidationError, type BackendName } from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { planSlots, type GpuDiscovery, type GpuRequest } from './gpus.js';
import type { PinningHost } from './webgpu-gpus.js';
import { runLocal, type RunResult } from './local.js';
import { createCoordinatorLogger, type Logger } from './logging.js';
import { progressLine, renderStatus, resultsTable, TtyRenderer, type ProgressSnapshot } from './progress.js';
import { expandSpec } from './spec/expand.js';
import { loadSpecFile } from './spec/load.js';
import { durationMs } from './spec/schema.js';
import { describeNotInSpec, describePoints, writeSweep } from './sweep.js';

export interface RunSpecOptions {
  specFile: string;
  /** Database file (already resolved: --db, FLATRANK_DB, ./flatrank.sqlite). */
  db: string;
  gpus?: GpuRequest;
  /** CPU workers, or workers per GPU when running on GPUs (overrides the spec's resources). */
  workers?: number;
  backend?: 'local' | 'bullmq';
  redis?: string;
  /** BullMQ queue name (several sweeps may share one). */
  queue?: string;
  dataDir?: string | null;
  runsDir?: string;
  trainerBackend?: BackendName | 'auto';
  dryRun?: boolean;
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
  const points = expandSpec(spec);
  if (o.dryRun) {
    stdout.write(describePoints(points));
    return { sweep: spec.parsed.name, points: points.length, inserted: 0, existing: 0, run: null };
  }
  if (o.workers !== undefined && (!Number.isInteger(o.workers) || o.workers < 1))
    throw new ValidationError('--workers', `--workers: must be a positive integer, got ${o.workers}`);
  const backend = o.backend ?? 'local';
  if (backend !== 'local' && backend !== 'bullmq')
    throw new ValidationError(
      '--backend',
      `--backend: unknown value ${JSON.stringify(backend)}; allowed: local, bullmq`,
    );
  if (backend === 'bullmq' && !o.redis)
    throw new ValidationError(
      '--redis',
      '--redis: the bullmq backend needs a Redis URL, e.g. --redis redis://127.0.0.1:6379',
    );

  const res = spec.parsed.resources;
  const runsDir = resolve(o.runsDir ?? 'runs');
  const tty = o.tty ?? Boolean((stderr as NodeJS.WriteStream).isTTY);
  const renderer = tty ? new TtyRenderer(stderr) : null;
  const log = createCoordinatorLogger({
    file: join(runsDir, spec.parsed.name, 'coordinator.log'),
    console: (text) => (renderer ? renderer.log(text) : stderr.write(text)),
    consoleLevel: 'info',
    colorize: tty,
  });
  const logger: Logger = log.logger;
  const store = ResultsStore.open(o.db, { create: true });
  try {
    const sweep = writeSweep(store, spec, points);
    logger.info(
      { sweep: sweep.name, db: store.path, inserted: sweep.inserted, existing: sweep.existing },
      `sweep ${sweep.name}: ${points.length} points (${sweep.inserted} new, ${sweep.existing} already in ${store.path})`,
    );
    const notInSpec = describeNotInSpec(sweep.name, sweep.notInSpec);
    if (notInSpec) logger.info({ sweep: sweep.name, notInSpec: sweep.notInSpec }, notInSpec);
    const onProgress = (s: ProgressSnapshot) => renderer?.update(renderStatus(s));
    let lastEnded = -1;
    const onPlainProgress = (s: ProgressSnapshot) => {
      // Plain output: one progress line whenever a trial ends (not every tick).
      const ended = s.counts.succeeded + s.counts.diverged + s.counts.failed + s.counts.cancelled;
      if (ended !== lastEnded && lastEnded !== -1) logger.info(progressLine(s));
      lastEnded = ended;
    };
    const common = {
      store,
      sweep: { id: sweep.id, name: sweep.name },
      maxAttempts: res.maxAttempts,
      heartbeatMs: o.heartbeatMs ?? durationMs(res.heartbeatInterval),
      heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? durationMs(res.heartbeatTimeout),
      trialTimeoutMs: res.trialTimeout === null ? null : durationMs(res.trialTimeout),
      cancelGraceMs: o.cancelGraceMs,
      runsDir,
      checkpointDir: spec.checkpointDir,
      dataDir: o.dataDir ?? null,
      backend: o.trainerBackend ?? 'auto',
      logger,
      signal: o.signal,
      onProgress: renderer ? onProgress : onPlainProgress,
    };
    let run: RunResult;
    if (backend === 'local') {
      const plan = await planSlots({
        gpus: o.gpus ?? res.gpus,
        workersPerGpu: o.workers ?? res.workersPerGpu,
        cpuWorkers: o.workers ?? res.cpuWorkers,
        discover: o.discoverGpus,
        host: o.pinningHost,
      });
      logger.info(
        `${plan.reason}; ${plan.slots.length} slot${plan.slots.length > 1 ? 's' : ''}: ${plan.slots.map((s) => s.id).join(', ')}`,
      );
      for (const w of plan.warnings) logger.warn(w);
      run = await runLocal({ ...common, slots: plan.slots, childEntry: o.childEntry, childEnv: o.childEnv });
    } else {
      const { runBullmqCoordinator } = await import('./bullmq/coordinator.js');
      run = await runBullmqCoordinator({ ...common, redisUrl: o.redis!, queueName: o.queue });
    }
    renderer?.stop();
    stdout.write(`\n${resultsTable(store, sweep.name)}`);
    const c = run.counts;
    const tail = `${sweep.name}: ${c['succeeded']} succeeded, ${c['diverged']} diverged, ${c['failed']} failed, ${c['cancelled']} cancelled, ${c['pending']} pending, ${c['running']} running (${(run.elapsedMs / 1000).toFixed(1)} s)`;
    stdout.write(`${tail}\n`);
    if (run.interrupted)
      throw new SchedulerError(
        'INTERRUPTED',
        `interrupted: ${c['pending']} trials left pending; run the same spec again to resume with only the unfinished points`,
        {
          context: { sweep: sweep.name, counts: c },
        },
      );
    if (c['failed']! + c['cancelled']! + c['pending']! + c['running']! > 0) {
      const blocked = run.blocked.length
        ? `; ${run.blocked.length} pending trial(s) wait for start trials outside this sweep that have not succeeded (or are not in this database)`
        : '';
      throw new SchedulerError(
        'TRIALS_FAILED',
        `sweep ${sweep.name}: ${c['failed']} failed, ${c['cancelled']} cancelled (a dependency failed)${blocked}; see flatrank status ${sweep.name} and the logs in ${join(runsDir, sweep.name)}`,
        {
          context: { sweep: sweep.name, counts: c },
        },
      );
    }
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

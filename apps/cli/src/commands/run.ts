/**
 * `flatrank run <spec.yaml> [--db F] [--gpus auto|none|0,1,...] [--workers N] [--executor local|bullmq]
 * [--redis URL] [--data-dir DIR] [--runs-dir DIR] [--trainer-backend auto|wasm|cpu|...] [--retry-failed]
 * [--dry-run]`:
 * expands the spec's grid, stores every point (idempotent), runs what has not succeeded yet, prints
 * the sweep's results table. Ctrl-C cancels running trials cleanly; the next run resumes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import { BACKENDS, SchedulerError, ValidationError, type BackendName } from '@flatrank/protocol';
import {
  DEFAULT_MAX_POINTS,
  EXECUTORS,
  parseGpusFlag,
  runSpec,
  type ExecutorName,
} from '@flatrank/scheduler';
import { resolveDbPath } from '@flatrank/store';

interface RunFlags {
  db?: string;
  gpus?: string;
  workers?: string;
  executor?: string;
  backend?: string;
  redis?: string;
  queue?: string;
  dataDir?: string;
  runsDir: string;
  trainerBackend: string;
  dryRun?: boolean;
  retryFailed?: boolean;
  maxPoints?: string;
  childEntry?: string;
}

/**
 * The executor from --executor, or from the --backend of earlier releases (with a notice on
 * stderr: --backend names the TensorFlow.js backend from the next release on).
 */
export function resolveExecutor(
  flags: Pick<RunFlags, 'executor' | 'backend'>,
  stderr = process.stderr,
): ExecutorName {
  let value = flags.executor;
  if (flags.backend !== undefined) {
    if (flags.executor !== undefined)
      throw new ValidationError(
        '--backend',
        '--backend: give --executor only (--backend is its deprecated name)',
      );
    stderr.write(
      `flatrank: --backend ${flags.backend} is deprecated for choosing the executor and will mean the TensorFlow.js backend in the next release; use --executor ${flags.backend}\n`,
    );
    value = flags.backend;
  }
  value ??= 'local';
  if (!(EXECUTORS as readonly string[]).includes(value))
    throw new ValidationError(
      flags.executor !== undefined ? '--executor' : '--backend',
      `${flags.executor !== undefined ? '--executor' : '--backend'}: unknown value ${JSON.stringify(value)}; allowed: ${EXECUTORS.join(', ')}`,
    );
  return value as ExecutorName;
}

/** apps/cli/dist/trial-child.js next to the built CLI (the real trainer child). */
export function defaultChildEntry(): string {
  return fileURLToPath(new URL('../trial-child.js', import.meta.url));
}

export function resolveChildEntry(flag: string | undefined): string {
  const entry = flag ?? defaultChildEntry();
  if (!existsSync(entry))
    throw new SchedulerError(
      'CHILD_ENTRY_MISSING',
      `the trial child ${entry} does not exist; build the CLI first (npx tsc -b apps/cli)`,
      { context: { entry } },
    );
  return entry;
}

export function parsePositiveInt(value: string | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1)
    throw new ValidationError(field, `${field}: must be a positive integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

export function parseTrainerBackend(value: string): BackendName | 'auto' {
  if (value === 'auto' || (BACKENDS as readonly string[]).includes(value))
    return value as BackendName | 'auto';
  throw new ValidationError(
    '--trainer-backend',
    `--trainer-backend: unknown value ${JSON.stringify(value)}; allowed: auto, ${BACKENDS.join(', ')}`,
  );
}

/**
 * After a long-running command: if a stray handle (a Redis socket, a timer of a library) keeps the
 * event loop alive, leave anyway once the result has been printed.
 */
export function exitWhenDone(): void {
  setTimeout(() => process.exit(process.exitCode ?? 0), 3000).unref();
}

/** SIGINT / SIGTERM abort the returned signal once; a second one exits at once. */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) {
      process.stderr.write(`\nflatrank: second ${sig}: exiting without waiting for trials to stop\n`);
      process.exit(130);
    }
    process.stderr.write(
      `\nflatrank: ${sig}: cancelling running trials (press Ctrl-C again to exit at once)\n`,
    );
    ac.abort(sig);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  const stopWatching = watchLauncher(() => {
    if (!ac.signal.aborted) handler('SIGTERM');
  });
  return {
    signal: ac.signal,
    dispose() {
      stopWatching();
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/**
 * Started by npm (npx flatrank, npm run): npm passes a SIGTERM only to the shell it runs us
 * through, which dies without passing it on, and a SIGKILLed npm tells nobody. Either way the
 * coordinator would go on as an orphan. Watch the npm process and stop (as on SIGTERM) once it is
 * gone. Not done otherwise: a coordinator started with nohup / disown must outlive its shell.
 */
function watchLauncher(onGone: () => void): () => void {
  if (!process.env['npm_command']) return () => {};
  const launcher = npmAncestor() ?? process.ppid;
  const firstParent = process.ppid;
  const timer = setInterval(() => {
    let gone = process.ppid !== firstParent;
    try {
      process.kill(launcher, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') gone = true;
    }
    if (gone) {
      clearInterval(timer);
      process.stderr.write(`\nflatrank: npm (pid ${launcher}), which started this run, is gone\n`);
      onGone();
    }
  }, 500);
  timer.unref();
  return () => clearInterval(timer);
}

/** The nearest ancestor process (up to 3 levels, Linux /proc) whose command is npm / npx. */
function npmAncestor(): number | null {
  let pid = process.ppid;
  for (let level = 0; level < 3 && pid > 1; level++) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (/\bnp[mx](-cli\.js)?\b/.test(cmdline)) return pid;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      return null;
    }
  }
  return null;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run an experiment spec: expand its grid, store every point, run what has not succeeded yet')
    .argument('<spec>', 'experiment spec (YAML), e.g. experiments/example-small.yaml')
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option(
      '--gpus <list>',
      'auto (ask nvidia-smi), none (CPU workers), or GPU indices such as 0,1 (default: the spec, else auto)',
    )
    .option('--workers <n>', 'CPU workers, or workers per GPU when running on GPUs (default: the spec)')
    .option(
      '--executor <name>',
      'where trials run: local (child processes on this machine, the default) or bullmq (flatrank worker processes via Redis)',
    )
    .addOption(new Option('--backend <name>', 'deprecated name of --executor').hideHelp())
    .option('--redis <url>', 'Redis URL for --executor bullmq, e.g. redis://127.0.0.1:6379')
    .option('--queue <name>', 'BullMQ queue name (workers must use the same)', 'flatrank-trials')
    .option('--data-dir <dir>', 'dataset directory on this machine')
    .option('--runs-dir <dir>', 'logs, checkpoints and exported models', 'runs')
    .option(
      '--trainer-backend <name>',
      `TensorFlow.js backend of the trials: auto, ${BACKENDS.join(', ')}`,
      'auto',
    )
    .option('--dry-run', 'print the grid points and their count; write nothing')
    .option(
      '--retry-failed',
      'give failed points, and the points cancelled because of them, a fresh budget of attempts (earlier attempts are kept)',
    )
    .option(
      '--max-points <n>',
      `refuse grids of more points than this (checked before expanding; default ${DEFAULT_MAX_POINTS})`,
    )
    .addOption(
      new Option(
        '--child-entry <file>',
        'module forked for every trial (tests use a fake trainer)',
      ).hideHelp(),
    )
    .action(async (spec: string, flags: RunFlags) => {
      const executor = resolveExecutor(flags);
      const common = {
        specFile: spec,
        db: resolveDbPath(flags.db),
        gpus: flags.gpus === undefined ? undefined : parseGpusFlag(flags.gpus),
        workers: parsePositiveInt(flags.workers, '--workers'),
        executor,
        retryFailed: flags.retryFailed ?? false,
        redis: flags.redis,
        queue: flags.queue,
        dataDir: flags.dataDir ?? null,
        runsDir: flags.runsDir,
        trainerBackend: parseTrainerBackend(flags.trainerBackend),
        maxPoints: parsePositiveInt(flags.maxPoints, '--max-points'),
      };
      if (flags.dryRun) {
        await runSpec({ ...common, dryRun: true, childEntry: flags.childEntry ?? defaultChildEntry() });
        return;
      }
      const childEntry =
        executor === 'local'
          ? resolveChildEntry(flags.childEntry)
          : (flags.childEntry ?? defaultChildEntry());
      const interrupt = interruptSignal();
      try {
        await runSpec({ ...common, childEntry, signal: interrupt.signal });
      } finally {
        interrupt.dispose();
        exitWhenDone();
      }
    });
}

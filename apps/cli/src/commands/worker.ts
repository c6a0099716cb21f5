/**
 * `flatrank worker --redis URL [--gpus auto|none|0,1,...] [--concurrency N] [--queue NAME]
 * [--runs-dir DIR] [--data-dir DIR]`: one machine's share of a multi-machine sweep. Pulls trial
 * attempts from the BullMQ queue, runs each in its own child process, reports events back through
 * Redis to the coordinator (`flatrank run --backend bullmq`), which writes the database.
 */
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { createCoordinatorLogger, parseGpusFlag, planSlots, startWorker } from '@flatrank/scheduler';
import { exitWhenDone, interruptSignal, parsePositiveInt, resolveChildEntry } from './run.js';

interface WorkerFlags {
  redis: string;
  gpus: string;
  concurrency?: string;
  queue: string;
  runsDir: string;
  dataDir?: string;
  childEntry?: string;
  lockMs?: string;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description(
      'run trials of multi-machine sweeps: pull them from Redis (BullMQ), report results to the coordinator',
    )
    .requiredOption(
      '--redis <url>',
      'Redis URL, e.g. redis://10.0.0.5:6379 (maxmemory-policy must be noeviction)',
    )
    .option('--gpus <list>', 'auto (ask nvidia-smi), none (CPU), or GPU indices such as 0,1', 'auto')
    .option(
      '--concurrency <n>',
      'trials at once: CPU workers, or trials per GPU when running on GPUs (default 1)',
    )
    .option('--queue <name>', 'BullMQ queue name (the coordinator must use the same)', 'flatrank-trials')
    .option(
      '--runs-dir <dir>',
      'logs, checkpoints and exported models (share it between machines for dependent trials)',
      'runs',
    )
    .option('--data-dir <dir>', 'dataset directory on this machine')
    .addOption(
      new Option(
        '--child-entry <file>',
        'module forked for every trial (tests use a fake trainer)',
      ).hideHelp(),
    )
    .addOption(
      new Option(
        '--lock-ms <ms>',
        'BullMQ lock duration (a dead worker is noticed after about this long)',
      ).hideHelp(),
    )
    .action(async (flags: WorkerFlags) => {
      const childEntry = resolveChildEntry(flags.childEntry);
      const n = parsePositiveInt(flags.concurrency, '--concurrency') ?? 1;
      const plan = await planSlots({ gpus: parseGpusFlag(flags.gpus), workersPerGpu: n, cpuWorkers: n });
      const log = createCoordinatorLogger({
        file: join(flags.runsDir, 'workers', `worker-${process.pid}.log`),
        console: (text) => process.stderr.write(text),
        colorize: Boolean(process.stderr.isTTY),
        name: 'flatrank-worker',
        deferFile: true,
      });
      const interrupt = interruptSignal();
      try {
        log.logger.info(plan.reason);
        for (const w of plan.warnings) log.logger.warn(w);
        const handle = await startWorker({
          redisUrl: flags.redis,
          queueName: flags.queue,
          slots: plan.slots,
          childEntry,
          runsDir: flags.runsDir,
          dataDir: flags.dataDir ?? null,
          logger: log.logger,
          signal: interrupt.signal,
          lockDurationMs: parsePositiveInt(flags.lockMs, '--lock-ms'),
        });
        log.openFile(); // started: from now on (and what came before) in the worker's log file
        await handle.done;
        log.logger.info('worker stopped');
      } finally {
        interrupt.dispose();
        log.close();
        exitWhenDone();
      }
    });
}

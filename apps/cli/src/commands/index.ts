import type { Command } from 'commander';
import { registerRuns } from './runs.js';
import { registerShow } from './show.js';
import { registerQuery } from './query.js';
import { registerExport } from './export.js';
import { registerMigrate } from './migrate.js';
import { registerReport } from './report.js';
import { registerPlot } from './plot.js';
import { registerDecompose } from './decompose.js';
import { registerRun } from './run.js';
import { registerWorker } from './worker.js';
import { registerStatus } from './status.js';
import { registerTrain } from './train.js';
import { registerServe } from './serve.js';

/**
 * Every command registers itself here (one import + one line each, so that commands added side by
 * side do not collide).
 */
type Register = (program: Command) => void;

const commands: Register[] = [
  // (commands are added here)
  registerRuns,
  registerShow,
  registerQuery,
  registerExport,
  registerMigrate,
  registerReport,
  registerPlot,
  registerDecompose,
  registerRun,
  registerWorker,
  registerStatus,
  registerTrain,
  registerServe,
];

export function registerCommands(program: Command): void {
  for (const register of commands) register(program);
}

import type { Command } from 'commander';
import { registerReport } from './report.js';
import { registerPlot } from './plot.js';

/**
 * Every command registers itself here (one import + one line each, so that commands added by
 * different issues do not collide).
 */
type Register = (program: Command) => void;

const commands: Register[] = [
  // (commands are added here)
  registerReport,
  registerPlot,
];

export function registerCommands(program: Command): void {
  for (const register of commands) register(program);
}

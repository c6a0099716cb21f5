import type { Command } from 'commander';

/**
 * Every command registers itself here (one import + one line each, so that commands added by
 * different issues do not collide).
 */
type Register = (program: Command) => void;

const commands: Register[] = [
  // (commands are added here)
];

export function registerCommands(program: Command): void {
  for (const register of commands) register(program);
}

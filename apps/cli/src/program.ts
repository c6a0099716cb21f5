import { Command, CommanderError } from 'commander';
import { FlatrankError } from '@flatrank/protocol';
import { registerCommands } from './commands/index.js';
import { CLI_VERSION } from './version.js';

export function buildProgram(): Command {
  const program = new Command('flatrank')
    .description('Low-rank CNN compression research: flat-minimum training vs Tucker-2 / CP / SVD baselines')
    .version(CLI_VERSION)
    .option('--debug', 'print stack traces of errors')
    .showHelpAfterError()
    .exitOverride();
  registerCommands(program);
  return program;
}

/** Runs the CLI and returns the process exit code (documented in apps/cli/README.md). */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help / version exit with 0; usage errors with 2
      return e.exitCode === 0 ? 0 : 2;
    }
    const debug = argv.includes('--debug');
    if (e instanceof FlatrankError) {
      process.stderr.write(`flatrank: ${e.message}\n`);
      if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
      if (debug && e.cause)
        process.stderr.write(`caused by: ${String((e.cause as Error)?.stack ?? e.cause)}\n`);
      return e.exitCode;
    }
    process.stderr.write(`flatrank: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    if (debug) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
    return 70;
  }
}

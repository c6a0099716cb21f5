import { Command, CommanderError } from 'commander';
import { FlatrankError, StoreError } from '@flatrank/protocol';
import { databaseFault, resolveDbPath } from '@flatrank/store';
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
  } catch (thrown) {
    let e = thrown;
    if (e instanceof CommanderError) {
      // help / version exit with 0; usage errors with 2
      return e.exitCode === 0 ? 0 : 2;
    }
    const debug = argv.includes('--debug');
    if (!(e instanceof StoreError)) {
      // A fault of the results database (corrupt, full, read-only, ...) raised anywhere below,
      // also inside another error: exit 6 naming the file, never "internal error".
      const db = databaseOfCommand(program, argv);
      const fault = db === null ? null : databaseFault(e, db);
      if (fault) e = fault;
    }
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

/** The database file of the command that ran (its --db, else FLATRANK_DB, else the default), or null. */
function databaseOfCommand(program: Command, argv: string[]): string | null {
  const name = argv.slice(2).find((a) => !a.startsWith('-'));
  const command = program.commands.find((c) => c.name() === name);
  if (!command || !command.options.some((o) => o.long === '--db')) return null;
  return resolveDbPath(command.opts<{ db?: string }>().db);
}

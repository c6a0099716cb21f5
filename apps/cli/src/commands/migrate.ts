/**
 * `flatrank migrate [--db F]`: upgrades an existing flatrank database to this version's schema
 * (read commands never modify a database, so an older one is upgraded explicitly or by the sweep
 * coordinator). Never creates a database.
 */
import type { Command } from 'commander';
import { ResultsStore, SCHEMA_VERSION, resolveDbPath } from '@flatrank/store';

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('upgrade an existing results database to the current schema version')
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .action((flags: { db?: string }) => {
      const store = ResultsStore.open(resolveDbPath(flags.db));
      try {
        const m = store.migrated;
        process.stdout.write(
          m.length === 0
            ? `${store.path}: already at schema version ${SCHEMA_VERSION}\n`
            : `${store.path}: migrated from schema version ${m[0]! - 1} to ${SCHEMA_VERSION} (applied ${m.join(', ')})\n`,
        );
      } finally {
        store.close();
      }
    });
}

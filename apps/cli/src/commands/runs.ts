/**
 * `flatrank runs [--db F] [--sweep NAME] [--status S] [--where "k=v,..."] [--format table|csv|json]
 * [--only-changed]`: the trials with their config axes and results, from a read-only connection.
 */
import type { Command } from 'commander';
import { formatRows, parseFormat } from '@flatrank/report';
import { ResultsStore, listRuns, listRunsOnlyChanged, resolveDbPath, RUN_COLUMNS } from '@flatrank/store';

interface RunsFlags {
  db?: string;
  sweep?: string;
  status?: string;
  where?: string;
  format: string;
  onlyChanged?: boolean;
}

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .description('list trials with their config axes and results (read-only)')
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option('--sweep <name>', 'only trials of this sweep')
    .option(
      '--status <status>',
      'only trials with this status: pending, running, succeeded, failed, diverged, cancelled',
    )
    .option(
      '--where <conditions>',
      'comma-separated axis conditions, e.g. "method=cp,seed=1|2,target_ratio>=4" (keys: model, dataset, method, decomposition, scheme, rank_policy, target_ratio, distortion_interval (s_d), seed, lr, epochs, batch_size, status, worker, backend)',
    )
    .option('--format <format>', 'table, csv or json', 'table')
    .option('--only-changed', 'show only the config keys that differ between the listed trials')
    .action((flags: RunsFlags) => {
      const format = parseFormat(flags.format);
      const store = ResultsStore.open(resolveDbPath(flags.db), { readonly: true });
      try {
        const filter = { sweep: flags.sweep, status: flags.status, where: flags.where };
        if (flags.onlyChanged) {
          const { columns, rows } = listRunsOnlyChanged(store, filter);
          process.stdout.write(formatRows(format, rows, columns));
        } else {
          const rows = listRuns(store, filter);
          // A terminal table hides columns that are empty for every listed trial (e.g. latency never
          // measured); csv / json keep the full, stable column set for scripts.
          const columns =
            format === 'table' && rows.length > 0
              ? RUN_COLUMNS.filter((c) => rows.some((r) => r[c] !== null && r[c] !== undefined))
              : [...RUN_COLUMNS];
          process.stdout.write(formatRows(format, rows, columns));
        }
      } finally {
        store.close();
      }
    });
}

/**
 * `flatrank query [--db F] "<SQL>" [--format table|csv|json]`: the user's own SQL on a read-only
 * connection; statements that would write are refused (StoreError WRITE_REFUSED, exit code 6).
 */
import type { Command } from 'commander';
import { formatRows, parseFormat } from '@flatrank/report';
import { resolveDbPath, runUserQuery } from '@flatrank/store';

export function registerQuery(program: Command): void {
  program
    .command('query')
    .description(
      'run one read-only SQL query, e.g. "SELECT method, avg(accuracy_final) FROM trial_summary GROUP BY method"',
    )
    .argument(
      '<sql>',
      'one SELECT / WITH statement (tables: sweeps, trials, metrics, layers, results, artifacts; views: trial_summary, ...)',
    )
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option('--format <format>', 'table, csv or json', 'table')
    .action((sql: string, flags: { db?: string; format: string }) => {
      const format = parseFormat(flags.format);
      const { columns, rows } = runUserQuery(resolveDbPath(flags.db), sql);
      process.stdout.write(formatRows(format, rows, columns));
    });
}

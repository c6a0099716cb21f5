/**
 * `flatrank query [--db F] "<SQL>" [--format table|csv|json] [--timeout SECONDS]`: the user's own
 * SQL on a read-only connection; statements that would write are refused (StoreError
 * WRITE_REFUSED, exit code 6); a statement still running after --timeout is stopped
 * (QUERY_TIMEOUT, exit code 6).
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { formatRows, parseFormat } from '@flatrank/report';
import { DEFAULT_QUERY_TIMEOUT_MS, resolveDbPath, runUserQueryWithTimeout } from '@flatrank/store';

function parseTimeout(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0)
    throw new ValidationError(
      '--timeout',
      `--timeout: must be a number of seconds >= 0 (0 = no limit), got ${JSON.stringify(value)}`,
    );
  return Math.round(seconds * 1000);
}

export function registerQuery(program: Command): void {
  program
    .command('query')
    .description(
      'run one read-only SQL query, e.g. "SELECT method, avg(accuracy_final) FROM trial_summary GROUP BY method"',
    )
    .argument(
      '<sql>',
      'one SELECT / WITH statement (tables: sweeps, trials, metrics, layers, allocations, results, artifacts; views: trial_summary, trial_layers, trial_allocations, allocation_layers, ...)',
    )
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option('--format <format>', 'table, csv or json', 'table')
    .option(
      '--timeout <seconds>',
      'stop the statement after this many seconds (0 = no limit)',
      String(DEFAULT_QUERY_TIMEOUT_MS / 1000),
    )
    .action(async (sql: string, flags: { db?: string; format: string; timeout: string }) => {
      const format = parseFormat(flags.format);
      const timeoutMs = parseTimeout(flags.timeout);
      const { columns, rows } = await runUserQueryWithTimeout(resolveDbPath(flags.db), sql, { timeoutMs });
      process.stdout.write(formatRows(format, rows, columns));
    });
}

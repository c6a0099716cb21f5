/**
 * `flatrank report <sweep> [--db F] [--format md|csv|json] [--out FILE]`: one row per configuration
 * (mean +- std over seeds), best per ratio marked, beside the paper's numbers when the sweep's spec
 * says `reproduces: paper-fig3 | paper-table1`. Reads the database read-only.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { resolveDbPath } from '@flatrank/store';
import {
  buildReport,
  formatReport,
  loadSweep,
  parseReportFormat,
  writeFileAtomic,
  DEFAULT_MATCH_TOLERANCE,
} from '@flatrank/report';

interface ReportFlags {
  db?: string;
  format: string;
  out?: string;
  tolerance: string;
  paired?: boolean;
}

export function parseTolerance(v: string, field = '--tolerance'): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0 || n >= 1)
    throw new ValidationError(
      field,
      `${field}: a relative tolerance in (0, 1) is required, e.g. 0.1; got ${JSON.stringify(v)}`,
    );
  return n;
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description(
      'tabulate a sweep: mean ± std over seeds per method x decomposition x ratio, best per ratio, published numbers beside ours',
    )
    .argument('<sweep>', "sweep name (the spec's name)")
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option('--format <format>', 'md, csv or json', 'md')
    .option('--out <file>', 'write the report to this file instead of stdout')
    .option(
      '--tolerance <x>',
      'relative ratio tolerance for matching published rows',
      String(DEFAULT_MATCH_TOLERANCE),
    )
    .option(
      '--paired',
      'add seed-paired differences (mean, std, t) between rows of the same ratio and against the baselines (md, json)',
    )
    .action((sweep: string, flags: ReportFlags) => {
      const format = parseReportFormat(flags.format);
      const matchTolerance = parseTolerance(flags.tolerance);
      const loaded = loadSweep(resolveDbPath(flags.db), sweep);
      const text = formatReport(
        buildReport(loaded.trials, {
          sweep: loaded.sweep,
          reproduces: loaded.reproduces,
          matchTolerance,
          paired: flags.paired === true,
        }),
        format,
      );
      if (flags.out) {
        writeFileAtomic(flags.out, text);
        process.stderr.write(`wrote ${flags.out}\n`);
      } else process.stdout.write(text);
    });
}

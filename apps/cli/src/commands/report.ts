/**
 * `flatrank report <sweep> [--db F] [--format md|csv|json] [--out FILE] [--paired] [--ranks]
 * [--rank-values ranks|ratio]`: one row per configuration (mean +- std over seeds), best per ratio
 * marked, beside the paper's numbers when the sweep's spec says `reproduces: paper-fig3 |
 * paper-table1` (with --paired, seed-paired differences); the rank
 * profile (rank per layer and configuration) follows in md / json when the sweep's trials recorded
 * rank allocations, or with --ranks (csv: --ranks writes the profile instead of the rows). Reads the
 * database read-only.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { resolveDbPath } from '@flatrank/store';
import {
  buildRankProfile,
  buildReport,
  formatReport,
  loadSweep,
  loadSweepRanks,
  parseRankValues,
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
  ranks?: boolean;
  rankValues: string;
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
    .option(
      '--ranks',
      'add the rank profile (rank per layer and configuration; automatic in md / json when the trials recorded allocations); with --format csv, write the profile instead of the rows',
    )
    .option(
      '--rank-values <what>',
      "rank profile cells: ranks, or ratio (each layer's params before / after)",
      'ranks',
    )
    .action((sweep: string, flags: ReportFlags) => {
      const format = parseReportFormat(flags.format);
      const matchTolerance = parseTolerance(flags.tolerance);
      const values = parseRankValues(flags.rankValues);
      const db = resolveDbPath(flags.db);
      const loaded = loadSweep(db, sweep);
      const report = buildReport(loaded.trials, {
        sweep: loaded.sweep,
        reproduces: loaded.reproduces,
        matchTolerance,
        paired: flags.paired === true,
      });
      // The CSV stays the rows' table unless the profile is asked for: scripts read its columns.
      const wanted = flags.ranks === true || format !== 'csv';
      const ranks = wanted ? loadSweepRanks(db, sweep) : null;
      const show = ranks !== null && (flags.ranks === true || ranks.allocations.length > 0);
      const text = formatReport(
        report,
        format,
        show ? { profile: buildRankProfile(report, ranks), values } : undefined,
      );
      if (flags.out) {
        writeFileAtomic(flags.out, text);
        process.stderr.write(`wrote ${flags.out}\n`);
      } else process.stdout.write(text);
    });
}

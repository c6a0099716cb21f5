/**
 * `flatrank plot <sweep> [--db F] --out F.svg|F.png [--y-range LO:HI]`: final accuracy vs
 * compression ratio, one line per method (and kind of rank choice), error bars over seeds, the
 * Pareto front and the uncompressed baseline. `--ranks [--rank-values ranks|ratio] [--at RATIO]`:
 * the rank profile instead, layer index on x, rank or layer ratio on y, one line per configuration.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { resolveDbPath } from '@flatrank/store';
import {
  buildRankProfile,
  buildReport,
  loadSweep,
  loadSweepRanks,
  parseRankValues,
  plotData,
  plotFormatOf,
  rankPlotData,
  renderPlotSvg,
  renderRankPlotSvg,
  svgToPng,
  writeFileAtomic,
} from '@flatrank/report';

interface PlotFlags {
  db?: string;
  out: string;
  yRange?: string;
  ranks?: boolean;
  rankValues: string;
  at?: string;
}

/** --at: a compression ratio > 0 (a bucket of the report, e.g. 4). */
export function parseAt(v: string, field = '--at'): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new ValidationError(
      field,
      `${field}: a compression ratio > 0 is required, e.g. 4; got ${JSON.stringify(v)}`,
    );
  return n;
}

/** "80:95" -> [80, 95] (accuracy in percent, lo < hi). */
export function parseYRange(v: string, field = '--y-range'): [number, number] {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*:\s*(-?\d+(?:\.\d+)?)\s*$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2]) : NaN;
  if (!m || !(hi > lo))
    throw new ValidationError(
      field,
      `${field}: give LO:HI in percent with LO < HI, e.g. 80:95; got ${JSON.stringify(v)}`,
    );
  return [lo, hi];
}

export function registerPlot(program: Command): void {
  program
    .command('plot')
    .description(
      'plot a sweep: final accuracy vs compression ratio, or with --ranks the rank per layer (SVG or PNG by the --out extension)',
    )
    .argument('<sweep>', "sweep name (the spec's name)")
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .requiredOption('--out <file>', 'output file, .svg or .png')
    .option('--y-range <lo:hi>', 'zoom the accuracy axis to LO:HI percent (data outside is clipped)')
    .option('--ranks', 'plot the rank profile: layer index on x, one line per configuration')
    .option('--rank-values <what>', 'with --ranks: y is the rank, or the layer ratio (ratio)', 'ranks')
    .option('--at <ratio>', 'with --ranks: only the configurations at this compression ratio')
    .action((sweep: string, flags: PlotFlags) => {
      const format = plotFormatOf(flags.out);
      const yRange = flags.yRange === undefined ? undefined : parseYRange(flags.yRange);
      const values = parseRankValues(flags.rankValues);
      const bucket = flags.at === undefined ? undefined : parseAt(flags.at);
      if (!flags.ranks && (bucket !== undefined || values !== 'ranks'))
        throw new ValidationError(
          flags.at !== undefined ? '--at' : '--rank-values',
          `${flags.at !== undefined ? '--at' : '--rank-values'}: only with --ranks (the rank profile plot)`,
        );
      if (flags.ranks && yRange)
        throw new ValidationError('--y-range', '--y-range: zooms the accuracy plot; not with --ranks');
      const db = resolveDbPath(flags.db);
      const loaded = loadSweep(db, sweep);
      const report = buildReport(loaded.trials, { sweep: loaded.sweep, reproduces: loaded.reproduces });
      const svg = flags.ranks
        ? renderRankPlotSvg(
            rankPlotData(buildRankProfile(report, loadSweepRanks(db, sweep)), { values, bucket }),
          )
        : renderPlotSvg(plotData(report), { yRange });
      writeFileAtomic(flags.out, format === 'svg' ? svg : svgToPng(svg));
      process.stderr.write(`wrote ${flags.out}\n`);
    });
}

/**
 * `flatrank plot <sweep> [--db F] --out F.svg|F.png [--y-range LO:HI]`: final accuracy vs
 * compression ratio, one line per method, error bars over seeds, the Pareto front and the
 * uncompressed baseline.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { resolveDbPath } from '@flatrank/store';
import {
  buildReport,
  loadSweep,
  plotData,
  plotFormatOf,
  renderPlotSvg,
  svgToPng,
  writeFileAtomic,
} from '@flatrank/report';

interface PlotFlags {
  db?: string;
  out: string;
  yRange?: string;
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
    .description('plot a sweep: final accuracy vs compression ratio (SVG or PNG by the --out extension)')
    .argument('<sweep>', "sweep name (the spec's name)")
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .requiredOption('--out <file>', 'output file, .svg or .png')
    .option('--y-range <lo:hi>', 'zoom the accuracy axis to LO:HI percent (data outside is clipped)')
    .action((sweep: string, flags: PlotFlags) => {
      const format = plotFormatOf(flags.out);
      const yRange = flags.yRange === undefined ? undefined : parseYRange(flags.yRange);
      const loaded = loadSweep(resolveDbPath(flags.db), sweep);
      const svg = renderPlotSvg(
        plotData(buildReport(loaded.trials, { sweep: loaded.sweep, reproduces: loaded.reproduces })),
        { yRange },
      );
      writeFileAtomic(flags.out, format === 'svg' ? svg : svgToPng(svg));
      process.stderr.write(`wrote ${flags.out}\n`);
    });
}

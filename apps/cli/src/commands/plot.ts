/**
 * `flatrank plot <sweep> [--db F] --out F.svg|F.png`: final accuracy vs compression ratio, one line
 * per method, error bars over seeds, the Pareto front and the uncompressed baseline.
 */
import type { Command } from 'commander';
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
}

export function registerPlot(program: Command): void {
  program
    .command('plot')
    .description('plot a sweep: final accuracy vs compression ratio (SVG or PNG by the --out extension)')
    .argument('<sweep>', "sweep name (the spec's name)")
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .requiredOption('--out <file>', 'output file, .svg or .png')
    .action((sweep: string, flags: PlotFlags) => {
      const format = plotFormatOf(flags.out);
      const loaded = loadSweep(resolveDbPath(flags.db), sweep);
      const svg = renderPlotSvg(
        plotData(buildReport(loaded.trials, { sweep: loaded.sweep, reproduces: loaded.reproduces })),
      );
      writeFileAtomic(flags.out, format === 'svg' ? svg : svgToPng(svg));
      process.stderr.write(`wrote ${flags.out}\n`);
    });
}

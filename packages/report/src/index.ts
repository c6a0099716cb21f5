// @flatrank/report: sweep reports (md / csv / json, beside the paper's published numbers) and plots (SVG / PNG).
export {
  aggregate,
  describeRankPolicy,
  groupKeys,
  groupTrials,
  targetRatioOf,
  trialValues,
  TrialGroup,
} from './aggregate.js';
export type {
  ReportRow,
  ReportTrial,
  AggregateOptions,
  GroupedTrials,
  GroupedTrialInput,
  TrialValues,
} from './aggregate.js';
export { describe, ratio } from './stats.js';
export type { Stat } from './stats.js';
export {
  PUBLISHED,
  PAPER_BASELINE_ACCURACY,
  PAPER_REFERENCES,
  isPaperReference,
  publishedRows,
} from './paper.js';
export type { PaperReference, PublishedRow, RatioBasis } from './paper.js';
export { matchRow, unmatchedPublished, DEFAULT_MATCH_TOLERANCE } from './compare.js';
export type { PaperMatch, CompareOptions } from './compare.js';
export { buildReport } from './report.js';
export { pairedDifferences, pairRows, rowLabel, tCritical95 } from './paired.js';
export type { PairedDifference, PairedRowRef } from './paired.js';
export type { Report, ReportEntry, BuildReportOptions } from './report.js';
export {
  REPORT_FORMATS,
  formatReport,
  parseReportFormat,
  toMarkdown,
  toCsv,
  fmtStat,
  OUTPUT_FORMATS,
  parseFormat,
  formatRows,
  formatTable,
  formatCsv,
  formatJson,
} from './format.js';
export type { ReportFormat, OutputFormat, FormatRow, FormatCell } from './format.js';
export { plotData, paretoFront, rankFamily, renderPlotSvg } from './plot.js';
export {
  RANK_VALUES,
  buildRankProfile,
  parseRankValues,
  rankCellText,
  rankProfileCsv,
  rankProfileMarkdown,
} from './rank-profile.js';
export type {
  AllocationInput,
  RankCell,
  RankLayerInput,
  RankProfile,
  RankProfileColumn,
  RankProfileLayer,
  RankValues,
  SweepRanks,
} from './rank-profile.js';
export { rankPlotData, renderRankPlotSvg } from './rank-plot.js';
export type { RankPlotData, RankPlotOptions, RankPlotSeries } from './rank-plot.js';
export type { PlotData, PlotPoint, PlotSeries, SvgOptions } from './plot.js';
export { svgToPng, rasterise, findFontFiles, FONT_DIRS, writeFileAtomic, plotFormatOf } from './output.js';
export type { PlotFormat, PngOptions, Raster } from './output.js';
export {
  loadSweep,
  loadSweepFrom,
  loadSweepRanks,
  loadSweepRanksFrom,
  loadSweepTrials,
  loadSweepTrialsFrom,
} from './load.js';
export type { LoadedSweep, LoadedSweepTrials } from './load.js';

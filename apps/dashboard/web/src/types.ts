// The API's shapes, from the server's own types (type imports only: nothing of the server is bundled).
export type {
  SweepListEntry,
  SweepPage,
  RowAxes,
  TrialPage,
  ComparePage,
  MetricSeries,
  PlotPointRows,
} from '@flatrank/dashboard';
export type { SweepTrialPage } from '@flatrank/store';
export type { ReportEntry, Report } from '@flatrank/report';

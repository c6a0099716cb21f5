/** A sweep's report: aggregated rows, optionally beside the paper's published numbers. */
import type { TrialStatus } from '@flatrank/protocol';
import {
  aggregate,
  groupTrials,
  isGrouped,
  type AggregateOptions,
  type GroupedTrials,
  type ReportRow,
  type ReportTrial,
} from './aggregate.js';
import { DEFAULT_MATCH_TOLERANCE, matchRow, unmatchedPublished, type PaperMatch } from './compare.js';
import type { PaperReference, PublishedRow } from './paper.js';
import { pairedDifferences, type PairedDifference } from './paired.js';

export interface ReportEntry extends ReportRow {
  /** The published counterpart (only when the sweep reproduces a paper figure / table). */
  paper: PaperMatch | null;
  /**
   * Mean final accuracy minus the uncompressed baseline's, in percentage points (null for the
   * baseline itself, without a baseline row, or without our accuracy).
   */
  vsBaseline: number | null;
}

export interface Report {
  sweep: string;
  /** The spec's `reproduces` field, when it names a published figure / table. */
  reproduces: PaperReference | null;
  /** Relative ratio tolerance used to match published rows. */
  matchTolerance: number;
  totals: Record<TrialStatus, number> & { trials: number };
  rows: ReportEntry[];
  /** Published rows that no row of ours was matched with. */
  notCovered: PublishedRow[];
  /** The nets and data sets the sweep's trials ran (the published numbers are ResNet-32 / CIFAR-10). */
  settings: Array<{ model: string; dataset: string }>;
  /** Seed-paired differences between rows (only when asked for: BuildReportOptions.paired). */
  paired?: PairedDifference[];
}

export interface BuildReportOptions extends AggregateOptions {
  sweep: string;
  reproduces?: PaperReference | null;
  matchTolerance?: number;
  /** Add the seed-paired differences between rows of the same ratio and against the baselines. */
  paired?: boolean;
}

/** `trials`: an array of trials, or the groups loadSweep streamed from the store (same report). */
export function buildReport(
  trials: readonly ReportTrial[] | GroupedTrials,
  options: BuildReportOptions,
): Report {
  const reproduces = options.reproduces ?? null;
  const tolerance = options.matchTolerance ?? DEFAULT_MATCH_TOLERANCE;
  const grouped = isGrouped(trials) ? trials : groupTrials(trials);
  const aggregated = aggregate(grouped, options);
  // With several baseline configurations, the first (sorted) one is the reference.
  const base =
    aggregated.find((r) => r.isBaseline && r.accuracyFinal.mean !== null)?.accuracyFinal.mean ?? null;
  const rows: ReportEntry[] = aggregated.map((r) => ({
    ...r,
    paper: reproduces ? matchRow(r, reproduces, { tolerance }) : null,
    vsBaseline:
      r.isBaseline || base === null || r.accuracyFinal.mean === null
        ? null
        : (r.accuracyFinal.mean - base) * 100,
  }));
  const totals = { ...grouped.totals };
  const settings = new Map<string, { model: string; dataset: string }>();
  for (const g of grouped.groups.values())
    settings.set(`${g.config.model}\n${g.config.dataset.name}`, {
      model: g.config.model,
      dataset: g.config.dataset.name,
    });
  const report: Report = {
    sweep: options.sweep,
    reproduces,
    matchTolerance: tolerance,
    totals,
    rows,
    settings: [...settings.values()],
    notCovered: reproduces
      ? unmatchedPublished(
          rows.map((r) => r.paper),
          reproduces,
        )
      : [],
  };
  if (options.paired) {
    const finalBySeed = new Map([...grouped.groups].map(([g, group]) => [g.slice(0, 12), group.finalBySeed]));
    report.paired = pairedDifferences(rows, finalBySeed);
  }
  return report;
}

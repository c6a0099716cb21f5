/**
 * Matching report rows with the paper's published numbers: a row is compared with the published
 * row of the same method and decomposition (and tile edge for tiled-svd) whose ratio is nearest
 * to ours on a log scale, if it is within the tolerance (default 10 %, relative). Ratios are
 * compared on the basis the paper states them in: whole-model params for Fig. 3, params of the
 * compressed layers for Table 1. Ours is the measured mean; when a trial recorded no sizes, the
 * ratio its config asks for on the same basis stands in.
 */
import {
  PAPER_BASELINE_ACCURACY,
  publishedRows,
  type PaperReference,
  type PublishedRow,
  type RatioBasis,
} from './paper.js';
import type { ReportRow } from './aggregate.js';

export interface PaperMatch {
  reference: PaperReference;
  /** Published accuracy, percent. */
  accuracy: number;
  /** Published ratio (null for the baseline). */
  ratio: number | null;
  ratioBasis: RatioBasis | null;
  /** Our ratio on the same basis that was used for the match. */
  ourRatio: number | null;
  /** Our mean final accuracy minus the published one, in percentage points (null without our accuracy). */
  delta: number | null;
  note: string;
}

export interface CompareOptions {
  /** Largest relative ratio difference accepted for a match. Default 0.10. */
  tolerance?: number;
}

export const DEFAULT_MATCH_TOLERANCE = 0.1;

function ourRatio(row: ReportRow, basis: RatioBasis): number | null {
  const measured = basis === 'model' ? row.paramsRatio.mean : row.layersRatio.mean;
  if (measured !== null) return measured;
  return row.targetBasis === basis ? row.targetRatio : null;
}

function eligible(row: ReportRow, p: PublishedRow): boolean {
  if (row.method !== p.method || row.decomposition !== p.decomposition) return false;
  if (p.tile !== null) return row.tile !== null && row.tile[0] === p.tile && row.tile[1] === p.tile;
  return true;
}

/** The published row a report row is compared with, or null (no counterpart within the tolerance). */
export function matchRow(
  row: ReportRow,
  reference: PaperReference,
  options: CompareOptions = {},
): PaperMatch | null {
  const tol = options.tolerance ?? DEFAULT_MATCH_TOLERANCE;
  const ours = row.accuracyFinal.mean === null ? null : row.accuracyFinal.mean * 100;
  if (row.isBaseline) {
    return {
      reference,
      accuracy: PAPER_BASELINE_ACCURACY,
      ratio: null,
      ratioBasis: null,
      ourRatio: null,
      delta: ours === null ? null : ours - PAPER_BASELINE_ACCURACY,
      note: 'pre-trained ResNet-32 / CIFAR-10 all runs start from',
    };
  }
  let best: { p: PublishedRow; r: number; d: number } | null = null;
  for (const p of publishedRows(reference)) {
    if (!eligible(row, p)) continue;
    const r = ourRatio(row, p.ratioBasis);
    if (r === null || r <= 0) continue;
    const d = Math.abs(Math.log(r / p.ratio));
    if (d <= Math.log(1 + tol) && (best === null || d < best.d)) best = { p, r, d };
  }
  if (!best) return null;
  return {
    reference,
    accuracy: best.p.accuracy,
    ratio: best.p.ratio,
    ratioBasis: best.p.ratioBasis,
    ourRatio: best.r,
    delta: ours === null ? null : ours - best.p.accuracy,
    note: best.p.note,
  };
}

/** Published rows no report row was matched with (the parts of the paper the sweep did not cover). */
export function unmatchedPublished(
  matches: ReadonlyArray<PaperMatch | null>,
  reference: PaperReference,
): PublishedRow[] {
  return publishedRows(reference).filter(
    (p) => !matches.some((m) => m && m.ratio === p.ratio && m.accuracy === p.accuracy && m.note === p.note),
  );
}

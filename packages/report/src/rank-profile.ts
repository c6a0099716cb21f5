/**
 * The rank profile of a sweep: the rank each configuration (a report row: method x decomposition x
 * rank policy x variant) gave each layer, layers in model order, averaged over the seeds, with the
 * layer's compression ratio and, where the trials recorded one, the allocation's budget and the
 * whole-model ratios it reached. Read from the layers rows and allocation records of the sweep's
 * succeeded trials (load.ts loadSweepRanks).
 */
import { ValidationError } from '@flatrank/protocol';
import type { Report, ReportEntry } from './report.js';
import { describe, ratio, type Stat } from './stats.js';

/** One compressed layer of a succeeded trial (its current attempt's layers row). */
export interface RankLayerInput {
  key: string;
  seed: number;
  layer: string;
  decomposition: string;
  /** [r] (svd, cp, per tile of tiled-svd) or [R_S, R_T] (tucker2). */
  ranks: number[];
  paramsBefore: number;
  paramsAfter: number;
}

/** The allocation record of a succeeded trial (what the allocation aimed at and reached). */
export interface AllocationInput {
  key: string;
  seed: number;
  policy: string;
  budget: { kind: 'params' | 'macs'; ratio: number } | null;
  achieved: { params: number | null; macs: number | null };
  /** The record's layers (model order by the event's contract), with the ranks it chose. */
  layers: Array<{ name: string; ranks: number[] }>;
}

export interface SweepRanks {
  layers: RankLayerInput[];
  allocations: AllocationInput[];
}

/** What a cell of the profile shows: the chosen ranks, or the layer's params ratio (before / after). */
export const RANK_VALUES = ['ranks', 'ratio'] as const;
export type RankValues = (typeof RANK_VALUES)[number];

export function parseRankValues(v: string, field = '--rank-values'): RankValues {
  if ((RANK_VALUES as readonly string[]).includes(v)) return v as RankValues;
  throw new ValidationError(
    field,
    `${field}: unknown value ${JSON.stringify(v)}; allowed: ${RANK_VALUES.join(', ')}`,
  );
}

export interface RankCell {
  /** Trials (seeds) that reported this layer. */
  n: number;
  /** Per rank component ([r] or [R_S, R_T]): mean, min and max over those trials. */
  ranks: Stat[];
  /** The trials chose different ranks for this layer (the cell is a mean). */
  ranksVary: boolean;
  /** Params ratio of this layer (before / after) over those trials. */
  ratio: Stat;
  ratioVaries: boolean;
}

export interface RankProfileColumn {
  /** The report row's group (12 hex digits). */
  group: string;
  /** e.g. 'finetune tucker2 ratio 4x', 'distort tucker2 alloc-error:params=4 S_D=200'. */
  label: string;
  method: string;
  decomposition: string | null;
  rank: string | null;
  variant: string;
  /** The report row's compression-ratio bucket (target ratio, else the measured one). */
  bucket: number | null;
  /** Seeds of the succeeded trials the column averages. */
  seeds: number[];
  /** Whole-model params ratio of the report row (mean over seeds). */
  paramsRatio: number | null;
  /** From the trials' allocation records; null when none of them recorded one. */
  allocation: {
    policy: string;
    budget: { kind: 'params' | 'macs'; ratio: number } | null;
    /** Trials with a record. */
    n: number;
    achievedParams: Stat;
    achievedMacs: Stat;
  } | null;
}

export interface RankProfileLayer {
  /** Position in model order (0-based), the x of the rank plot. */
  index: number;
  name: string;
  /** One per column; null when no trial of that column compressed the layer. */
  cells: Array<RankCell | null>;
}

export interface RankProfile {
  sweep: string;
  columns: RankProfileColumn[];
  layers: RankProfileLayer[];
}

/**
 * Inserts each trial's layer order into one model order: a layer first seen in a trial goes right
 * after the layer before it in that trial (so configurations that compress different subsets of
 * the layers still line up).
 */
function mergeOrders(orders: ReadonlyArray<readonly string[]>): string[] {
  const merged: string[] = [];
  const seen = new Set<string>();
  for (const order of orders) {
    let at = 0;
    for (const name of order) {
      if (seen.has(name)) {
        at = merged.indexOf(name) + 1;
        continue;
      }
      merged.splice(at, 0, name);
      seen.add(name);
      at++;
    }
  }
  return merged;
}

const varies = (s: Stat): boolean => s.n > 1 && s.min !== s.max;

function cellOf(records: ReadonlyArray<{ ranks: number[]; ratio: number | null }>): RankCell | null {
  if (records.length === 0) return null;
  const width = Math.max(...records.map((r) => r.ranks.length));
  const ranks = Array.from({ length: width }, (_, i) => describe(records.map((r) => r.ranks[i])));
  const layerRatio = describe(records.map((r) => r.ratio));
  return {
    n: records.length,
    ranks,
    ranksVary: ranks.some(varies),
    ratio: layerRatio,
    ratioVaries: varies(layerRatio),
  };
}

function columnLabel(r: ReportEntry): string {
  return [r.method, r.decomposition ?? '', r.rank ?? '', r.variant].filter((s) => s !== '').join(' ');
}

function allocationSummary(records: readonly AllocationInput[]): RankProfileColumn['allocation'] {
  if (records.length === 0) return null;
  const first = records[0]!;
  return {
    policy: first.policy,
    budget: first.budget,
    n: records.length,
    achievedParams: describe(records.map((a) => a.achieved.params)),
    achievedMacs: describe(records.map((a) => a.achieved.macs)),
  };
}

/**
 * One column per compressed report row with at least one succeeded trial that recorded layers
 * (report order: by compression ratio, then method), one row per layer in model order.
 */
export function buildRankProfile(report: Report, ranks: SweepRanks): RankProfile {
  const layersOf = new Map<string, RankLayerInput[]>();
  for (const l of ranks.layers) layersOf.set(l.key, [...(layersOf.get(l.key) ?? []), l]);
  const allocationOf = new Map(ranks.allocations.map((a) => [a.key, a]));
  const seedOf = new Map<string, number>();
  for (const x of [...ranks.layers, ...ranks.allocations]) seedOf.set(x.key, x.seed);

  const columns: RankProfileColumn[] = [];
  const perColumn: Array<Map<string, Array<{ ranks: number[]; ratio: number | null }>>> = [];
  const orders: string[][] = [];
  for (const row of report.rows) {
    if (row.isBaseline) continue;
    const keys = row.trialKeys.filter((k) => layersOf.has(k) || allocationOf.has(k));
    if (keys.length === 0) continue;
    const byLayer = new Map<string, Array<{ ranks: number[]; ratio: number | null }>>();
    for (const key of keys) {
      const layers = layersOf.get(key) ?? [];
      const allocation = allocationOf.get(key);
      // The allocation lists the layers in model order; the layers rows in the order reported.
      orders.push(allocation ? allocation.layers.map((l) => l.name) : layers.map((l) => l.layer));
      const recorded = new Set<string>();
      for (const l of layers) {
        recorded.add(l.layer);
        const list = byLayer.get(l.layer) ?? [];
        list.push({ ranks: l.ranks, ratio: ratio(l.paramsBefore, l.paramsAfter) });
        byLayer.set(l.layer, list);
      }
      // A layer the allocation chose a rank for but that has no layers row (e.g. left at full
      // rank) still shows its rank.
      for (const l of allocation?.layers ?? [])
        if (!recorded.has(l.name))
          byLayer.set(l.name, [...(byLayer.get(l.name) ?? []), { ranks: l.ranks, ratio: null }]);
    }
    columns.push({
      group: row.group,
      label: columnLabel(row),
      method: row.method,
      decomposition: row.decomposition,
      rank: row.rank,
      variant: row.variant,
      bucket: row.bucket,
      seeds: [...new Set(keys.map((k) => seedOf.get(k)!))].sort((a, b) => a - b),
      paramsRatio: row.paramsRatio.mean,
      allocation: allocationSummary(
        keys.map((k) => allocationOf.get(k)).filter((a): a is AllocationInput => a !== undefined),
      ),
    });
    perColumn.push(byLayer);
  }
  const layers = mergeOrders(orders).map((name, index) => ({
    index,
    name,
    cells: perColumn.map((byLayer) => cellOf(byLayer.get(name) ?? [])),
  }));
  return { sweep: report.sweep, columns, layers };
}

// ---------------------------------------------------------------- text forms

/** 4 -> '4', 2.5 -> '2.5', 3.333 -> '3.33'. */
function fmtRatio(v: number): string {
  return String(Number(v.toFixed(2)));
}

function rankText(s: Stat): string {
  if (s.mean === null) return '-';
  return s.min === s.max ? String(s.mean) : s.mean.toFixed(1);
}

/** The text of one cell: ranks (R_S x R_T for Tucker-2) or the layer's params ratio; '*' = seeds differ. */
export function rankCellText(cell: RankCell | null, values: RankValues): string {
  if (cell === null) return '-';
  if (values === 'ratio')
    return cell.ratio.mean === null ? '-' : `${cell.ratio.mean.toFixed(2)}${cell.ratioVaries ? ' *' : ''}`;
  return `${cell.ranks.map(rankText).join('x')}${cell.ranksVary ? ' *' : ''}`;
}

/** Columns by compression-ratio bucket, in report order. */
function byBucket(p: RankProfile): Array<{ bucket: number | null; columns: number[] }> {
  const out: Array<{ bucket: number | null; columns: number[] }> = [];
  p.columns.forEach((c, i) => {
    const b = out.find((x) => x.bucket === c.bucket);
    if (b) b.columns.push(i);
    else out.push({ bucket: c.bucket, columns: [i] });
  });
  return out;
}

const mdCell = (s: string): string => s.replace(/\|/g, '\\|');

function budgetText(c: RankProfileColumn): string {
  const b = c.allocation?.budget;
  return b ? `${b.kind} ${fmtRatio(b.ratio)}x` : '-';
}

function reachedText(c: RankProfileColumn): string {
  const a = c.allocation;
  if (!a || a.achievedParams.mean === null) return '-';
  const macs = a.achievedMacs.mean === null ? '-' : fmtRatio(a.achievedMacs.mean);
  return `${fmtRatio(a.achievedParams.mean)} / ${macs}`;
}

/** The profile as markdown: one table per compression ratio, layers as rows, configurations as columns. */
export function rankProfileMarkdown(p: RankProfile, values: RankValues = 'ranks'): string {
  const out: string[] = ['## Rank profile', ''];
  if (p.columns.length === 0) {
    out.push('No succeeded compressed trial recorded per-layer ranks.');
    return `${out.join('\n')}\n`;
  }
  out.push(
    values === 'ranks'
      ? 'The rank each configuration chose per layer (rows: layers in model order; Tucker-2: R_S x R_T), one table per compression ratio.'
      : "Each layer's compression ratio (its params before / after) per configuration (rows: layers in model order), one table per compression ratio.",
    '',
  );
  const allocated = p.columns.some((c) => c.allocation !== null);
  for (const { bucket, columns } of byBucket(p)) {
    out.push(`### ${bucket === null ? 'no compression ratio' : `${fmtRatio(bucket)}x`}`, '');
    const cols = columns.map((i) => p.columns[i]!);
    const head = ['#', 'layer', ...cols.map((c) => c.label)];
    out.push(`| ${head.map(mdCell).join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
    for (const l of p.layers) {
      const cells = columns.map((i) => l.cells[i] ?? null);
      if (cells.every((c) => c === null)) continue;
      out.push(
        `| ${[String(l.index), l.name, ...cells.map((c) => rankCellText(c, values))].map(mdCell).join(' | ')} |`,
      );
    }
    const summary: Array<[string, (c: RankProfileColumn) => string]> = [
      ['seeds', (c) => String(c.seeds.length)],
      ['params × (whole model)', (c) => (c.paramsRatio === null ? '-' : fmtRatio(c.paramsRatio))],
    ];
    if (allocated) summary.push(['budget', budgetText], ['reached params × / MACs ×', reachedText]);
    for (const [name, text] of summary)
      out.push(`| ${['', `_${name}_`, ...cols.map(text)].map(mdCell).join(' | ')} |`);
    out.push('');
  }
  const notes: string[] = [];
  if (
    p.layers.some((l) =>
      l.cells.some((c) => c !== null && (values === 'ranks' ? c.ranksVary : c.ratioVaries)),
    )
  )
    notes.push(
      '\\* mean over seeds that chose different ranks for the layer (min and max in the CSV / JSON).',
    );
  if (allocated)
    notes.push(
      'budget / reached: the whole-model target of the allocation and the ratios (params, MACs) its ranks reached, mean over seeds.',
    );
  if (notes.length) out.push(notes.join(' '));
  else out.pop();
  return `${out.join('\n')}\n`;
}

function csvCell(v: string | number | boolean | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const joinStat = (stats: Stat[], k: 'mean' | 'min' | 'max'): string =>
  stats.map((s) => (s[k] === null ? '' : String(s[k]))).join('x');

/** The profile in long form: one line per (configuration, layer it compressed), configurations in report order. */
export function rankProfileCsv(p: RankProfile): string {
  const head = [
    'sweep',
    'group',
    'method',
    'decomposition',
    'rank',
    'variant',
    'bucket',
    'layer_index',
    'layer',
    'n',
    'ranks_mean',
    'ranks_min',
    'ranks_max',
    'ranks_vary',
    'layer_ratio_mean',
    'layer_ratio_min',
    'layer_ratio_max',
    'allocation_policy',
    'budget_kind',
    'budget_ratio',
    'achieved_params_ratio_mean',
    'achieved_macs_ratio_mean',
  ];
  const lines = [head.join(',')];
  p.columns.forEach((c, i) => {
    for (const l of p.layers) {
      const cell = l.cells[i];
      if (!cell) continue;
      const cells: Array<string | number | boolean | null> = [
        p.sweep,
        c.group,
        c.method,
        c.decomposition,
        c.rank,
        c.variant,
        c.bucket,
        l.index,
        l.name,
        cell.n,
        joinStat(cell.ranks, 'mean'),
        joinStat(cell.ranks, 'min'),
        joinStat(cell.ranks, 'max'),
        cell.ranksVary,
        cell.ratio.mean,
        cell.ratio.min,
        cell.ratio.max,
        c.allocation?.policy ?? null,
        c.allocation?.budget?.kind ?? null,
        c.allocation?.budget?.ratio ?? null,
        c.allocation?.achievedParams.mean ?? null,
        c.allocation?.achievedMacs.mean ?? null,
      ];
      lines.push(cells.map(csvCell).join(','));
    }
  });
  return `${lines.join('\n')}\n`;
}

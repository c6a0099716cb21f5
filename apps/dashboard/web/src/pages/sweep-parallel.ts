/**
 * Parallel coordinates of the grid axes that vary in the sweep against final accuracy. The lines
 * are a bounded sample the server picks (the most accurate, then every n-th of the rest by
 * accuracy: `spread`), so a 10k-trial sweep draws about a thousand polylines, never ten thousand.
 * Dragging along an axis brushes a range: lines outside it fade, and the brush becomes a filter of
 * the trial list (on the server, so it covers every trial, not only the drawn ones).
 */
import type { ECharts } from 'echarts/core';
import { chart, type Option } from '../charts.js';
import type { SweepTrialPage } from '../types.js';

interface Axis {
  col: string;
  name: string;
  /** The trial list's parameter for a set of values of this column (category axes). */
  param?: string;
  /** Shown x scale (accuracy in %). */
  scale?: number;
}

const AXES: Axis[] = [
  { col: 'method', name: 'method', param: 'method' },
  { col: 'decomposition', name: 'decomposition', param: 'decomposition' },
  { col: 'scheme', name: 'scheme', param: 'scheme' },
  { col: 'rank_policy', name: 'rank policy', param: 'rank_policy' },
  { col: 'distortion_interval', name: 'S_D', param: 'sd' },
  { col: 'lr', name: 'lr' },
  { col: 'epochs', name: 'epochs' },
  { col: 'batch_size', name: 'batch' },
  { col: 'seed', name: 'seed' },
  { col: 'params_ratio', name: 'params ×' },
];
const ACCURACY: Axis = { col: 'accuracy_final', name: 'final acc. %', scale: 100 };

// ECharts reads '-' as "no value": absent axis values are shown as '(none)'.
const NONE = '(none)';

/** A brushed axis: value ranges (in the column's own units) or, on a category axis, the values. */
export type AxisBrush =
  { kind: 'range'; intervals: Array<[number, number]> } | { kind: 'values'; values: string[] };
/** The brushes by column. */
export type Brush = Map<string, AxisBrush>;

interface Layout {
  axes: Axis[];
  numeric: boolean[];
  categories: string[][];
  data: unknown[][];
}

function layout(trials: SweepTrialPage): Layout {
  const ix = (c: string) => (trials.columns as readonly string[]).indexOf(c);
  const rows = trials.rows.filter((r) => r[ix(ACCURACY.col)] !== null);
  const axes = [
    ...AXES.filter((a) => new Set(rows.map((r) => r[ix(a.col)])).size > 1 || a.col === 'method'),
    ACCURACY,
  ];
  const numeric = axes.map((a) => !a.param && rows.every((r) => typeof r[ix(a.col)] === 'number'));
  const shown = (v: unknown) => (v === null ? NONE : String(v));
  const categories = axes.map((a, i) =>
    numeric[i] ? [] : [...new Set(rows.map((r) => shown(r[ix(a.col)])))].sort(),
  );
  const data = rows.map((r) => [
    ...axes.map((a, i) => {
      const v = r[ix(a.col)];
      return numeric[i] ? (v as number) * (a.scale ?? 1) : shown(v);
    }),
    r[0],
  ]);
  return { axes, numeric, categories, data };
}

export function parallelOption(trials: SweepTrialPage): Option {
  const { axes, numeric, categories, data } = layout(trials);
  const acc = axes.length - 1;
  const accs = data.map((d) => d[acc] as number);
  return {
    animation: false,
    parallelAxis: axes.map((a, dim) =>
      numeric[dim]
        ? { id: a.col, dim, name: a.name, type: 'value', scale: true, minInterval: a.col === 'seed' ? 1 : 0 }
        : { id: a.col, dim, name: a.name, type: 'category', data: categories[dim] },
    ),
    // A brush is applied when the drag ends (realtime: false): one trial-list request per gesture.
    parallel: { left: 60, right: 90, top: 40, bottom: 30, parallelAxisDefault: { realtime: false } },
    visualMap: {
      show: true,
      dimension: acc,
      min: accs.length ? Math.min(...accs) : 0,
      max: accs.length ? Math.max(...accs) : 100,
      precision: 2,
      right: 0,
      top: 'middle',
      inRange: { color: ['#d62728', '#ff7f0e', '#2ca02c'] },
      text: ['acc %', ''],
    },
    series: [
      {
        type: 'parallel',
        name: 'trials',
        data,
        lineStyle: { width: 1, opacity: data.length > 300 ? 0.3 : 0.6 },
        inactiveOpacity: 0.04,
      },
    ],
  };
}

/** How many drawn lines pass every brushed axis. */
function linesInBrush(l: Layout, brush: Brush): number {
  const checks = l.axes.flatMap((a, i) => {
    const b = brush.get(a.col);
    if (!b) return [];
    if (b.kind === 'values') return [(d: unknown[]) => b.values.includes(d[i] as string)];
    const scale = a.scale ?? 1;
    return [
      (d: unknown[]) =>
        b.intervals.some(([lo, hi]) => (d[i] as number) >= lo * scale && (d[i] as number) <= hi * scale),
    ];
  });
  return l.data.filter((d) => checks.every((ok) => ok(d))).length;
}

/** The brush as trial-list parameters (`range=col:min:max`, or the values of a category column). */
export function brushParams(brush: Brush): Array<[string, string[]]> {
  const out: Array<[string, string[]]> = [];
  for (const [col, b] of brush) {
    const axis = [...AXES, ACCURACY].find((a) => a.col === col);
    if (!axis) continue;
    if (b.kind === 'range') out.push(['range', b.intervals.map(([lo, hi]) => `${col}:${lo}:${hi}`)]);
    else if (axis.param) out.push([axis.param, b.values.map((v) => (v === NONE ? '-' : v))]);
    // A category axis of numbers without a list parameter (a column with gaps): each value exactly.
    else out.push(['range', b.values.filter((v) => v !== NONE).map((v) => `${col}:${v}:${v}`)]);
  }
  return out;
}

export interface ParallelView {
  chart: ECharts;
  /** Lines drawn, and of them the ones in the brushed ranges (all when nothing is brushed). */
  drawn: number;
  inBrush: number;
}

/**
 * Draws the sample, restores `brush` on the axes that are still there (dropping the others from
 * it), and calls `onBrush` after every change of it (drag, click to clear).
 */
export function drawParallel(
  el: HTMLElement,
  trials: SweepTrialPage,
  brush: Brush,
  onBrush: (view: ParallelView) => void,
): ParallelView {
  const l = layout(trials);
  const c = chart('parallel', el, parallelOption(trials), 'canvas');
  const view: ParallelView = { chart: c, drawn: l.data.length, inBrush: l.data.length };
  let restoring = true;
  const update = () => {
    view.inBrush = linesInBrush(l, brush);
    if (!restoring) onBrush(view);
  };
  c.on('axisareaselected', (e) => {
    const { parallelAxisId, intervals } = e as { parallelAxisId: string; intervals: Array<[number, number]> };
    const i = l.axes.findIndex((a) => a.col === parallelAxisId);
    if (i < 0) return;
    const a = l.axes[i]!;
    if (intervals.length === 0) brush.delete(a.col);
    else if (l.numeric[i]) {
      const scale = a.scale ?? 1;
      brush.set(a.col, { kind: 'range', intervals: intervals.map(([lo, hi]) => [lo / scale, hi / scale]) });
    } else {
      // Category intervals are in ordinal positions.
      const values = l.categories[i]!.filter((_, k) => intervals.some(([lo, hi]) => k >= lo && k <= hi));
      brush.set(a.col, { kind: 'values', values });
    }
    update();
  });
  for (const [col, b] of [...brush]) {
    const i = l.axes.findIndex((a) => a.col === col);
    if (i < 0 || (b.kind === 'range') !== l.numeric[i]) {
      brush.delete(col);
      continue;
    }
    const scale = l.axes[i]!.scale ?? 1;
    const intervals =
      b.kind === 'range'
        ? b.intervals.map(([lo, hi]) => [lo * scale, hi * scale])
        : b.values.flatMap((v) => {
            const k = l.categories[i]!.indexOf(v);
            return k < 0 ? [] : [[k, k]];
          });
    c.dispatchAction({ type: 'axisAreaSelect', parallelAxisId: col, intervals });
  }
  restoring = false;
  view.inBrush = linesInBrush(l, brush);
  return view;
}

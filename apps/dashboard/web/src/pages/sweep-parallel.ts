/**
 * Parallel coordinates of the grid axes that vary in the sweep against final accuracy, one line per
 * succeeded trial, with a top-k filter (the k most accurate) and the page's method / decomposition /
 * rank / S_D filters. Canvas renderer: a 10k-trial sweep is 10k polylines.
 */
import { chart, type Option } from '../charts.js';
import type { SweepTrialPage } from '../types.js';

const AXES: Array<{ col: string; name: string }> = [
  { col: 'method', name: 'method' },
  { col: 'decomposition', name: 'decomposition' },
  { col: 'scheme', name: 'scheme' },
  { col: 'rank_policy', name: 'rank policy' },
  { col: 'distortion_interval', name: 'S_D' },
  { col: 'lr', name: 'lr' },
  { col: 'epochs', name: 'epochs' },
  { col: 'batch_size', name: 'batch' },
  { col: 'seed', name: 'seed' },
  { col: 'params_ratio', name: 'params ×' },
];

/** `trials`: succeeded trials sorted by final accuracy, best first. */
export function parallelOption(
  trials: SweepTrialPage,
  keep: ReadonlySet<string> | null,
  topK: number,
): Option {
  const ix = (c: string) => (trials.columns as readonly string[]).indexOf(c);
  const rows = trials.rows.filter(
    (r) => r[ix('accuracy_final')] !== null && (keep === null || keep.has(r[0] as string)),
  );
  const shown = topK > 0 ? rows.slice(0, topK) : rows;
  const axes = AXES.filter((a) => new Set(rows.map((r) => r[ix(a.col)])).size > 1 || a.col === 'method');
  // ECharts reads '-' as "no value": absent axis values are shown as '(none)'.
  const NONE = '(none)';
  const numericAxis = axes.map(
    (a) => a.col !== 'seed' && shown.every((r) => typeof r[ix(a.col)] === 'number'),
  );
  const dims = axes.map((a, dim) =>
    numericAxis[dim]
      ? { dim, name: a.name, type: 'value', scale: true }
      : {
          dim,
          name: a.name,
          type: 'category',
          data: [...new Set(shown.map((r) => (r[ix(a.col)] === null ? NONE : String(r[ix(a.col)]))))].sort(),
        },
  );
  dims.push({ dim: axes.length, name: 'final acc. %', type: 'value', scale: true });
  const data = shown.map((r) => [
    ...axes.map((a, dim) => {
      const v = r[ix(a.col)];
      return numericAxis[dim] ? v : v === null ? NONE : String(v);
    }),
    (r[ix('accuracy_final')] as number) * 100,
    r[0],
  ]);
  const accs = data.map((d) => d[axes.length] as number);
  return {
    animation: false,
    parallelAxis: dims,
    parallel: { left: 60, right: 90, top: 40, bottom: 30 },
    visualMap: {
      show: true,
      dimension: axes.length,
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
        lineStyle: { width: 1, opacity: shown.length > 500 ? 0.25 : 0.6 },
        progressive: 2000,
      },
    ],
  };
}

export function drawParallel(
  el: HTMLElement,
  trials: SweepTrialPage,
  keep: ReadonlySet<string> | null,
  topK: number,
): void {
  chart('parallel', el, parallelOption(trials, keep, topK), 'canvas');
}

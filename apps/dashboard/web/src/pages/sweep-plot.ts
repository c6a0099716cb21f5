/**
 * Accuracy vs compression ratio from @flatrank/report's plotData: one line per method (legend click
 * toggles it with its error bars), ± one std over seeds, the Pareto front, the baseline, published
 * points dashed; log ratio axis; hover a point for its row and trials, click it to open a trial.
 */
import { chart, encodeHTML, PALETTE, type Option } from '../charts.js';
import { fmtStat } from '../dom.js';
import type { ReportEntry, SweepPage } from '../types.js';

type Point = [number, number, number, number | null];

function tooltip(rows: readonly ReportEntry[]) {
  return (p: { seriesName: string; data: Point | number[] }): string => {
    const [x, y, rowIndex] = p.data as Point;
    const r = rowIndex !== undefined && rowIndex >= 0 ? rows[rowIndex] : undefined;
    const lines = [
      `<b>${encodeHTML(p.seriesName)}</b>`,
      `ratio ${x.toFixed(2)}x · final ${Number(y).toFixed(2)} %`,
    ];
    if (r) {
      lines.push(
        `${encodeHTML(r.rank ?? '')} ${encodeHTML(r.variant)} · n = ${r.accuracyFinal.n}, final ${encodeHTML(fmtStat(r.accuracyFinal, 2, 100))} %`,
        `after decomposition ${encodeHTML(fmtStat(r.accuracyAfterDecomposition, 2, 100))} %`,
        `trials: ${r.trialKeys
          .slice(0, 6)
          .map((k) => encodeHTML(k.slice(0, 10)))
          .join(', ')}${r.trialKeys.length > 6 ? ', …' : ''}`,
        '<span style="color:#888">click: open the first trial</span>',
      );
    }
    return lines.join('<br>');
  };
}

/** Error bar of [x, lo, hi] as a vertical segment with caps (a custom series). */
function errorBars(name: string, color: string, points: Array<[number, number, number]>) {
  return {
    type: 'custom',
    name,
    silent: true,
    z: 1,
    data: points,
    encode: { x: 0, y: [1, 2] },
    renderItem: (_params: unknown, api: { value(i: number): number; coord(p: number[]): number[] }) => {
      const x = api.value(0);
      const lo = api.coord([x, api.value(1)]);
      const hi = api.coord([x, api.value(2)]);
      const cap = 4;
      const style = { stroke: color, lineWidth: 1.2 };
      return {
        type: 'group',
        children: [
          { type: 'line', shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style },
          { type: 'line', shape: { x1: lo[0]! - cap, y1: lo[1], x2: lo[0]! + cap, y2: lo[1] }, style },
          { type: 'line', shape: { x1: hi[0]! - cap, y1: hi[1], x2: hi[0]! + cap, y2: hi[1] }, style },
        ],
      };
    },
  };
}

export function plotOption(page: SweepPage, visibleRows: ReadonlySet<number>): Option {
  const { plot, plotRows, report } = page;
  const series: unknown[] = [];
  plot.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const pts: Point[] = s.points
      .map((p, j): Point => [p.x, p.y, plotRows[i]?.[j] ?? -1, p.err])
      .filter((p) => s.published || visibleRows.has(p[2]));
    series.push({
      type: 'line',
      name: s.label,
      data: pts,
      color,
      symbol: s.published ? 'emptyCircle' : 'circle',
      symbolSize: 8,
      lineStyle: { type: s.published ? 'dashed' : 'solid', width: 1.6 },
      emphasis: { focus: 'series' },
      z: 3,
    });
    const bars = pts
      .filter((p) => p[3] !== null)
      .map((p): [number, number, number] => [p[0], p[1] - p[3]!, p[1] + p[3]!]);
    if (bars.length > 0) series.push(errorBars(s.label, color, bars));
  });
  const front = plot.pareto.filter((p) => series.length > 0 && p);
  series.push({
    type: 'line',
    name: 'Pareto front',
    data: front.map((p) => [p.x, p.y]),
    symbol: 'none',
    silent: true,
    color: '#bbbbbb',
    lineStyle: { width: 9, opacity: 0.45, cap: 'round', join: 'round' },
    z: 0,
  });
  if (plot.baseline)
    series.push({
      type: 'line',
      name: plot.baseline.label,
      data: [],
      color: '#444',
      markLine: {
        silent: true,
        symbol: 'none',
        lineStyle: { type: 'dotted', color: '#444', width: 1.5 },
        label: {
          formatter: `${plot.baseline.label} ${plot.baseline.y.toFixed(2)} %`,
          position: 'insideEndTop',
        },
        data: [{ yAxis: plot.baseline.y }],
      },
    });
  return {
    animation: false,
    title: { text: plot.title, textStyle: { fontSize: 14 } },
    legend: { type: 'scroll', orient: 'vertical', right: 0, top: 30, width: 200 },
    grid: { left: 60, right: 250, top: 40, bottom: 50 },
    // Zoom the accuracy axis (a floor such as post-training SVD otherwise stretches it), as plot --y-range.
    dataZoom: [
      { type: 'inside', yAxisIndex: 0, filterMode: 'none' },
      { type: 'slider', yAxisIndex: 0, filterMode: 'none', right: 215, width: 14 },
    ],
    tooltip: { trigger: 'item', confine: true, formatter: tooltip(report.rows) },
    xAxis: {
      type: 'log',
      logBase: 2,
      name: plot.xBasis,
      nameLocation: 'middle',
      nameGap: 30,
      scale: true,
      axisLabel: { formatter: (v: number) => `${+v.toFixed(2)}x` },
    },
    yAxis: { type: 'value', name: 'final accuracy %', scale: true },
    series,
  };
}

export function drawPlot(el: HTMLElement, page: SweepPage, visibleRows: ReadonlySet<number>): void {
  const c = chart('sweepPlot', el, plotOption(page, visibleRows));
  c.on('click', (p) => {
    const rowIndex = Array.isArray(p.data) ? (p.data[2] as number) : -1;
    const key = page.report.rows[rowIndex]?.trialKeys[0];
    if (key) location.href = `/trials/${encodeURIComponent(key)}`;
  });
}

/**
 * Accuracy vs compression ratio: one line per method (method x decomposition x variant), error
 * bars over seeds, the Pareto front of all compressed rows, the uncompressed baseline as a
 * horizontal line, and (for a paper reproduction) the published points as dashed lines.
 */
import type { Report, ReportEntry } from './report.js';
import { publishedRows } from './paper.js';
import { ValidationError } from '@flatrank/protocol';
import { FONT, PALETTE, document, el, linearTicks, logTicks, polyline, text, linearYAxis } from './svg.js';

export interface PlotPoint {
  /** Compression ratio (whole-model params, measured mean; the config's target when unmeasured). */
  x: number;
  /** Mean final accuracy, percent. */
  y: number;
  /** Sample std over seeds, percent (null with one seed). */
  err: number | null;
}

export interface PlotSeries {
  label: string;
  points: PlotPoint[];
  published: boolean;
}

export interface PlotData {
  title: string;
  series: PlotSeries[];
  baseline: { label: string; y: number } | null;
  pareto: PlotPoint[];
  xBasis: string;
}

function xOf(r: ReportEntry): number | null {
  return r.paramsRatio.mean ?? (r.targetBasis === 'model' ? r.targetRatio : null) ?? r.targetRatio;
}

/** Pareto front of (ratio, accuracy), both maximised: the points no other point beats on both. */
export function paretoFront(points: readonly PlotPoint[]): PlotPoint[] {
  const sorted = [...points].sort((a, b) => b.x - a.x || b.y - a.y);
  const front: PlotPoint[] = [];
  let bestY = -Infinity;
  for (const p of sorted) {
    if (p.y > bestY) {
      front.push(p);
      bestY = p.y;
    }
  }
  return front.sort((a, b) => a.x - b.x);
}

/**
 * The kind of rank choice of a row, without its ratio or rank value: 'ratio 4x' -> 'ratio',
 * 'alloc-error:params=4' -> 'alloc-error:params', 'vbmf' -> 'vbmf'. Rows of one kind at several
 * ratios are one line of the plot.
 */
export function rankFamily(rank: string | null): string {
  return (rank ?? '').replace(/(?:=|\s)\d[\d.]*(?:x\d[\d.]*)*x?(?=$|\s)/g, '').trim();
}

export function plotData(report: Report): PlotData {
  // Rows of one method and decomposition that choose ranks differently (uniform ratios beside a
  // budgeted allocation, EVBMF, ...) are separate lines, named by their kind of rank choice.
  const families = new Map<string, Set<string>>();
  for (const r of report.rows) {
    const k = `${r.method}/${r.decomposition ?? ''}`;
    families.set(k, (families.get(k) ?? new Set()).add(rankFamily(r.rank)));
  }
  const bySeries = new Map<string, PlotPoint[]>();
  for (const r of report.rows) {
    if (r.isBaseline || r.accuracyFinal.mean === null) continue;
    const x = xOf(r);
    if (x === null) continue;
    const mixed = (families.get(`${r.method}/${r.decomposition ?? ''}`)?.size ?? 0) > 1;
    const family = mixed ? rankFamily(r.rank) : '';
    const label = [r.method, r.decomposition ?? '', family, r.variant].filter((s) => s !== '').join(' ');
    const pts = bySeries.get(label) ?? [];
    pts.push({
      x,
      y: r.accuracyFinal.mean * 100,
      err: r.accuracyFinal.std === null ? null : r.accuracyFinal.std * 100,
    });
    bySeries.set(label, pts);
  }
  const series: PlotSeries[] = [...bySeries].map(([label, points]) => ({
    label,
    points: points.sort((a, b) => a.x - b.x),
    published: false,
  }));
  // Table 1 states ratios of the nine layers, not of the whole model: only Fig. 3 shares our x axis.
  if (report.reproduces === 'paper-fig3') {
    const pub = new Map<string, PlotPoint[]>();
    for (const p of publishedRows(report.reproduces)) {
      const label = `paper: ${p.method} ${p.decomposition}`;
      pub.set(label, [...(pub.get(label) ?? []), { x: p.ratio, y: p.accuracy, err: null }]);
    }
    for (const [label, points] of pub) series.push({ label, points, published: true });
  }
  const baseRow = report.rows.find((r) => r.isBaseline && r.accuracyFinal.mean !== null);
  let baseline: PlotData['baseline'] = null;
  if (baseRow) baseline = { label: 'uncompressed baseline', y: baseRow.accuracyFinal.mean! * 100 };
  else {
    // No baseline trial in the sweep: the accuracy of the model the trials started from.
    const orig = report.rows.map((r) => r.accuracyOriginal.mean).filter((v): v is number => v !== null);
    if (orig.length > 0)
      baseline = { label: 'original model', y: (orig.reduce((a, b) => a + b, 0) / orig.length) * 100 };
  }
  return {
    title: `${report.sweep}: final accuracy vs compression`,
    series,
    baseline,
    pareto: paretoFront(series.filter((s) => !s.published).flatMap((s) => s.points)),
    xBasis: 'compression ratio (whole-model params, log scale)',
  };
}

export interface SvgOptions {
  width?: number;
  height?: number;
  /** Fixed accuracy range [lo, hi] in percent (zoom); data outside it is clipped. Default: fit the data. */
  yRange?: readonly [number, number];
}

export function renderPlotSvg(data: PlotData, options: SvgOptions = {}): string {
  const W = options.width ?? 800;
  const H = options.height ?? 500;
  const m = { left: 70, right: 250, top: 44, bottom: 62 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;

  const pts = data.series.flatMap((s) => s.points);
  const xs = pts.map((p) => p.x);
  const ys = pts.flatMap((p) => [p.y - (p.err ?? 0), p.y + (p.err ?? 0)]);
  if (data.baseline) ys.push(data.baseline.y);
  // Pad the x range on the log scale so that a narrow range (e.g. 1.02x .. 1.04x) still spreads out.
  const logLo = xs.length ? Math.log(Math.min(...xs)) : 0;
  const logHi = xs.length ? Math.log(Math.max(...xs)) : Math.log(2);
  const padX = Math.max(0.02, (logHi - logLo) * 0.08);
  const xLo = Math.exp(logLo - padX);
  const xHi = Math.exp(logHi + padX);
  let yLo = ys.length ? Math.min(...ys) : 0;
  let yHi = ys.length ? Math.max(...ys) : 100;
  const pad = Math.max(0.5, (yHi - yLo) * 0.08);
  yLo -= pad;
  yHi += pad;
  if (options.yRange) {
    const [lo, hi] = options.yRange;
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo))
      throw new ValidationError('yRange', `yRange: needs two numbers lo < hi, got [${lo}, ${hi}]`);
    [yLo, yHi] = [lo, hi];
  }
  const X = (v: number) => m.left + ((Math.log(v) - Math.log(xLo)) / (Math.log(xHi) - Math.log(xLo))) * pw;
  const Y = (v: number) => m.top + (1 - (v - yLo) / (yHi - yLo)) * ph;

  const body: string[] = [el('rect', { x: 0, y: 0, width: W, height: H, fill: '#ffffff' })];
  body.push(
    text(m.left + pw / 2, 24, data.title, {
      'text-anchor': 'middle',
      'font-size': 15,
      'font-weight': 'bold',
      'font-family': FONT,
    }),
  );

  // Axes with ticks and grid.
  const axes: string[] = [];
  // Round ratios on a wide range; plain decimal ticks when the range is too narrow for them.
  const roundTicks = logTicks(xLo, xHi);
  const xTicks = roundTicks.length >= 3 ? roundTicks : linearTicks(xLo, xHi, 5);
  for (const t of xTicks) {
    const x = X(t);
    axes.push(el('line', { x1: x, y1: m.top, x2: x, y2: m.top + ph, stroke: '#e5e5e5' }));
    axes.push(el('line', { x1: x, y1: m.top + ph, x2: x, y2: m.top + ph + 5, stroke: '#333' }));
    axes.push(
      text(x, m.top + ph + 19, `${Number(t.toFixed(6))}x`, {
        'text-anchor': 'middle',
        'font-size': 12,
        'font-family': FONT,
      }),
    );
  }
  axes.push(...linearYAxis(linearTicks(yLo, yHi, 6), Y, { left: m.left, top: m.top, width: pw, height: ph }));
  axes.push(
    text(m.left + pw / 2, H - 16, data.xBasis, {
      'text-anchor': 'middle',
      'font-size': 13,
      'font-family': FONT,
    }),
  );
  axes.push(
    text(18, m.top + ph / 2, 'final test accuracy (%)', {
      'text-anchor': 'middle',
      'font-size': 13,
      'font-family': FONT,
      transform: `rotate(-90 18 ${m.top + ph / 2})`,
    }),
  );
  body.push(el('g', { class: 'axes' }, axes));
  // Everything drawn from here on is data: clipped to the plot area (matters with a fixed yRange).
  body.push(
    el('defs', {}, [
      el('clipPath', { id: 'plot-area' }, [el('rect', { x: m.left, y: m.top, width: pw, height: ph })]),
    ]),
  );
  const dataStart = body.length;

  const legend: Array<{ label: string; draw: (x: number, y: number) => string[] }> = [];

  if (data.baseline) {
    const y = Y(data.baseline.y);
    body.push(
      el('line', {
        class: 'baseline',
        x1: m.left,
        y1: y,
        x2: m.left + pw,
        y2: y,
        stroke: '#000',
        'stroke-width': 1.2,
        'stroke-dasharray': '2 3',
      }),
    );
    legend.push({
      label: `${data.baseline.label} (${data.baseline.y.toFixed(2)} %)`,
      draw: (x, yy) => [
        el('line', { x1: x, y1: yy, x2: x + 22, y2: yy, stroke: '#000', 'stroke-dasharray': '2 3' }),
      ],
    });
  }

  if (data.pareto.length > 0) {
    const front = data.pareto.map((p) => [X(p.x), Y(p.y)] as const);
    body.push(
      polyline(front, {
        class: 'pareto',
        stroke: '#999',
        'stroke-width': 7,
        'stroke-opacity': 0.35,
        'stroke-linejoin': 'round',
        'stroke-linecap': 'round',
      }),
    );
    legend.push({
      label: 'Pareto front',
      draw: (x, y) => [
        el('line', {
          x1: x,
          y1: y,
          x2: x + 22,
          y2: y,
          stroke: '#999',
          'stroke-width': 7,
          'stroke-opacity': 0.35,
        }),
      ],
    });
  }

  data.series.forEach((s, i) => {
    const color = s.published ? '#555' : PALETTE[i % PALETTE.length]!;
    const g: string[] = [];
    const dash = s.published ? (i % 2 === 0 ? '6 4' : '2 2') : null;
    g.push(
      polyline(
        s.points.map((p) => [X(p.x), Y(p.y)] as const),
        { class: 'series-line', stroke: color, 'stroke-width': 2, 'stroke-dasharray': dash },
      ),
    );
    for (const p of s.points) {
      const x = X(p.x);
      if (p.err !== null && p.err > 0) {
        const y1 = Y(p.y - p.err);
        const y2 = Y(p.y + p.err);
        g.push(
          el('g', { class: 'errorbar', stroke: color, 'stroke-width': 1.3 }, [
            el('line', { x1: x, y1, x2: x, y2 }),
            el('line', { x1: x - 4, y1, x2: x + 4, y2: y1 }),
            el('line', { x1: x - 4, y1: y2, x2: x + 4, y2 }),
          ]),
        );
      }
      g.push(
        el('circle', {
          class: 'point',
          cx: x,
          cy: Y(p.y),
          r: 3.5,
          fill: s.published ? '#fff' : color,
          stroke: color,
          'stroke-width': 1.5,
        }),
      );
    }
    body.push(el('g', { class: s.published ? 'series published' : 'series', 'data-label': s.label }, g));
    legend.push({
      label: s.label,
      draw: (x, y) => [
        el('line', {
          x1: x,
          y1: y,
          x2: x + 22,
          y2: y,
          stroke: color,
          'stroke-width': 2,
          'stroke-dasharray': dash,
        }),
        el('circle', { cx: x + 11, cy: y, r: 3.5, fill: s.published ? '#fff' : color, stroke: color }),
      ],
    });
  });

  body.push(el('g', { class: 'data', 'clip-path': 'url(#plot-area)' }, body.splice(dataStart)));

  const lg: string[] = [];
  const lx = m.left + pw + 16;
  legend.forEach((item, i) => {
    const y = m.top + 10 + i * 20;
    lg.push(...item.draw(lx, y));
    lg.push(text(lx + 28, y + 4, item.label, { 'font-size': 11, 'font-family': FONT }));
  });
  body.push(el('g', { class: 'legend' }, lg));
  return document(W, H, body, data.title);
}

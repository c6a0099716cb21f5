/**
 * The rank profile as a plot: layer index (model order) on x, the chosen rank or the layer's
 * compression ratio on y, one line per configuration (report row) of the sweep.
 */
import { ValidationError } from '@flatrank/protocol';
import type { RankProfile, RankValues } from './rank-profile.js';
import { FONT, PALETTE, document, el, linearTicks, polyline, text, linearYAxis } from './svg.js';

export interface RankPlotSeries {
  label: string;
  /** x: layer index; y: mean rank (over components and seeds) or mean layer ratio. */
  points: Array<{ x: number; y: number }>;
}

export interface RankPlotData {
  title: string;
  /** Layer names by index (the x axis). */
  layers: string[];
  yLabel: string;
  series: RankPlotSeries[];
}

export interface RankPlotOptions {
  values?: RankValues;
  /** Only the configurations of this compression-ratio bucket (report rows' ratio). */
  bucket?: number;
}

/** One series per profile column (of the bucket, if given) that has a value for at least one layer. */
export function rankPlotData(profile: RankProfile, options: RankPlotOptions = {}): RankPlotData {
  const values = options.values ?? 'ranks';
  const wanted = profile.columns
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => options.bucket === undefined || c.bucket === options.bucket);
  if (options.bucket !== undefined && wanted.length === 0) {
    const buckets = [...new Set(profile.columns.map((c) => c.bucket).filter((b) => b !== null))];
    throw new ValidationError(
      'bucket',
      `bucket: no configuration of ${profile.sweep} at compression ratio ${options.bucket}; ratios there: ${buckets.join(', ') || '(none)'}`,
    );
  }
  let multi = false;
  const series: RankPlotSeries[] = [];
  for (const { c, i } of wanted) {
    const points: RankPlotSeries['points'] = [];
    for (const l of profile.layers) {
      const cell = l.cells[i];
      if (!cell) continue;
      let y: number | null;
      if (values === 'ratio') y = cell.ratio.mean;
      else {
        const means = cell.ranks.map((s) => s.mean).filter((v): v is number => v !== null);
        if (means.length > 1) multi = true;
        y = means.length ? means.reduce((a, b) => a + b, 0) / means.length : null;
      }
      if (y !== null) points.push({ x: l.index, y });
    }
    if (points.length) series.push({ label: c.label, points });
  }
  const suffix = options.bucket === undefined ? '' : ` at ${options.bucket}x`;
  return {
    title: `${profile.sweep}: ${values === 'ranks' ? 'rank' : 'compression ratio'} per layer${suffix}`,
    layers: profile.layers.map((l) => l.name),
    yLabel:
      values === 'ratio'
        ? 'layer compression ratio (params before / after)'
        : multi
          ? 'rank (Tucker-2: mean of R_S and R_T)'
          : 'rank',
    series,
  };
}

/** At most ~16 x ticks: every k-th layer index. */
function layerTicks(n: number): number[] {
  const step = Math.max(1, Math.ceil(n / 16));
  return Array.from({ length: Math.ceil(n / step) }, (_, i) => i * step);
}

export function renderRankPlotSvg(
  data: RankPlotData,
  options: { width?: number; height?: number } = {},
): string {
  const m = { left: 70, right: 300, top: 44, bottom: 62 };
  const W = options.width ?? 900;
  // The legend lists every series: grow the figure rather than clip it.
  const H = Math.max(options.height ?? 500, m.top + 20 * (data.series.length + 1) + m.bottom);
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const n = Math.max(1, data.layers.length);
  const ys = data.series.flatMap((s) => s.points.map((p) => p.y));
  const yHi = (ys.length ? Math.max(...ys) : 1) * 1.08 || 1;
  const X = (i: number) => m.left + ((i + 0.5) / n) * pw;
  const Y = (v: number) => m.top + (1 - v / yHi) * ph;

  const body: string[] = [el('rect', { x: 0, y: 0, width: W, height: H, fill: '#ffffff' })];
  body.push(
    text(m.left + pw / 2, 24, data.title, {
      'text-anchor': 'middle',
      'font-size': 15,
      'font-weight': 'bold',
      'font-family': FONT,
    }),
  );
  const axes: string[] = [];
  for (const i of layerTicks(data.layers.length)) {
    const x = X(i);
    axes.push(el('line', { x1: x, y1: m.top, x2: x, y2: m.top + ph, stroke: '#e5e5e5' }));
    axes.push(el('line', { x1: x, y1: m.top + ph, x2: x, y2: m.top + ph + 5, stroke: '#333' }));
    axes.push(
      text(x, m.top + ph + 19, String(i), { 'text-anchor': 'middle', 'font-size': 12, 'font-family': FONT }),
    );
  }
  axes.push(...linearYAxis(linearTicks(0, yHi, 6), Y, { left: m.left, top: m.top, width: pw, height: ph }));
  axes.push(
    text(m.left + pw / 2, H - 16, 'layer (index in model order)', {
      'text-anchor': 'middle',
      'font-size': 13,
      'font-family': FONT,
    }),
  );
  axes.push(
    text(18, m.top + ph / 2, data.yLabel, {
      'text-anchor': 'middle',
      'font-size': 13,
      'font-family': FONT,
      transform: `rotate(-90 18 ${m.top + ph / 2})`,
    }),
  );
  body.push(el('g', { class: 'axes' }, axes));

  const legend: string[] = [];
  const lx = m.left + pw + 16;
  // The x axis is categorical (one slot per layer): each series is shifted a little within the
  // slot, so configurations that chose the same ranks stay visible instead of hiding each other.
  const dodge = Math.min(0.1, 0.5 / Math.max(1, data.series.length));
  data.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const shift = (i - (data.series.length - 1) / 2) * dodge;
    // Past the palette, a dash pattern keeps lines of the same colour apart.
    const dash = i >= PALETTE.length ? '6 3' : null;
    const g = [
      polyline(
        s.points.map((p) => [X(p.x + shift), Y(p.y)] as const),
        { class: 'series-line', stroke: color, 'stroke-width': 2, 'stroke-dasharray': dash },
      ),
      ...s.points.map((p) =>
        el('circle', { class: 'point', cx: X(p.x + shift), cy: Y(p.y), r: 3, fill: color, stroke: color }),
      ),
    ];
    body.push(el('g', { class: 'series', 'data-label': s.label }, g));
    const y = m.top + 10 + i * 20;
    legend.push(
      el('line', {
        x1: lx,
        y1: y,
        x2: lx + 22,
        y2: y,
        stroke: color,
        'stroke-width': 2,
        'stroke-dasharray': dash,
      }),
      text(lx + 28, y + 4, s.label, { 'font-size': 11, 'font-family': FONT }),
    );
  });
  body.push(el('g', { class: 'legend' }, legend));
  return document(W, H, body, data.title);
}

/** A small SVG writer: elements as strings, attributes escaped, numbers rounded. */

/** Line colours of the plots, in series order. */
export const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
  '#bcbd22',
];
export const FONT = 'DejaVu Sans, Arial, Helvetica, sans-serif';

export type Attrs = Record<string, string | number | null | undefined>;

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Coordinates with 2 decimals keep files small and diffs stable. */
export function num(v: number): string {
  const r = Math.round(v * 100) / 100;
  return Object.is(r, -0) ? '0' : String(r);
}

function attrs(a: Attrs): string {
  let s = '';
  for (const [k, v] of Object.entries(a)) {
    if (v === null || v === undefined) continue;
    s += ` ${k}="${escapeXml(typeof v === 'number' ? num(v) : v)}"`;
  }
  return s;
}

/** An element; children are already-rendered strings (use text() for character data). */
export function el(name: string, a: Attrs = {}, children: readonly string[] = []): string {
  return children.length === 0
    ? `<${name}${attrs(a)}/>`
    : `<${name}${attrs(a)}>${children.join('')}</${name}>`;
}

export function text(x: number, y: number, content: string, a: Attrs = {}): string {
  return `<text${attrs({ x, y, ...a })}>${escapeXml(content)}</text>`;
}

export function polyline(points: ReadonlyArray<readonly [number, number]>, a: Attrs = {}): string {
  return el('polyline', {
    ...a,
    points: points.map(([x, y]) => `${num(x)},${num(y)}`).join(' '),
    fill: a['fill'] ?? 'none',
  });
}

export function document(width: number, height: number, body: readonly string[], title?: string): string {
  const head = title ? [el('title', {}, [escapeXml(title)])] : [];
  return `<?xml version="1.0" encoding="UTF-8"?>\n${el('svg', { xmlns: 'http://www.w3.org/2000/svg', width, height, viewBox: `0 0 ${width} ${height}` }, [...head, ...body])}\n`;
}

/** "Nice" linear ticks (steps of 1, 2 or 5 x 10^k), about `count` of them, covering [lo, hi]. */
export function linearTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push(Math.round(v / step) * step);
  return out;
}

const LOG_CANDIDATES = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 100];

/** Ticks for a log axis of compression ratios: round values inside [lo, hi], thinned to at most `max`. */
export function logTicks(lo: number, hi: number, max = 9): number[] {
  let ticks = LOG_CANDIDATES.filter((v) => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9));
  while (ticks.length > max) ticks = ticks.filter((_, i) => i % 2 === 0);
  return ticks;
}

/** A linear y axis on the left of a plot box: grid lines, ticks, tick labels, then the box's frame. */
export function linearYAxis(
  ticks: readonly number[],
  y: (v: number) => number,
  box: { left: number; top: number; width: number; height: number },
): string[] {
  const out: string[] = [];
  for (const t of ticks) {
    const at = y(t);
    out.push(el('line', { x1: box.left, y1: at, x2: box.left + box.width, y2: at, stroke: '#e5e5e5' }));
    out.push(el('line', { x1: box.left - 5, y1: at, x2: box.left, y2: at, stroke: '#333' }));
    out.push(
      text(box.left - 8, at + 4, Number(t.toFixed(6)).toString(), {
        'text-anchor': 'end',
        'font-size': 12,
        'font-family': FONT,
      }),
    );
  }
  out.push(
    el('rect', {
      x: box.left,
      y: box.top,
      width: box.width,
      height: box.height,
      fill: 'none',
      stroke: '#333',
    }),
  );
  return out;
}

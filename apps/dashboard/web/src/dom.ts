/**
 * DOM building without HTML strings: every value from the database becomes a text node
 * (textContent), so a sweep named `<script>…</script>` is shown as text, never parsed.
 */
export type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** The href of an internal page (path segments encoded). */
export function href(...segments: string[]): string {
  return `/${segments.map(encodeURIComponent).join('/')}`;
}

export function fmt(v: number | null | undefined, digits: number, scale = 1): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : (v * scale).toFixed(digits);
}

export function fmtSigned(v: number | null | undefined, digits: number): string {
  return v === null || v === undefined ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
}

export interface Stat {
  n: number;
  mean: number | null;
  std: number | null;
}

/** "mean ± std" exactly as `flatrank report` prints it. */
export function fmtStat(s: Stat, digits: number, scale = 1): string {
  if (s.mean === null) return '-';
  const m = (s.mean * scale).toFixed(digits);
  return s.std === null ? m : `${m} ± ${(s.std * scale).toFixed(digits)}`;
}

export function fmtTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

export function fmtDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '-';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function table(head: Array<string | [string, string]>, rows: HTMLTableRowElement[]): HTMLElement {
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h('tr', {}, ...head.map((c) => (Array.isArray(c) ? h('th', { class: c[1] }, c[0]) : h('th', {}, c)))),
      ),
      h('tbody', {}, ...rows),
    ),
  );
}

export function kv(pairs: Array<[string, Child]>): HTMLElement {
  const dl = h('dl', { class: 'kv' });
  for (const [k, v] of pairs)
    append(dl, h('dt', {}, k), h('dd', {}, v === null || v === undefined ? '-' : v));
  return dl;
}

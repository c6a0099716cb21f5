/**
 * A sweep's trials, one page of 50 at a time: filtered, sorted and paged by the server (the page's
 * method / decomposition / rank / S_D filters and the parallel coordinates' brush, plus a status
 * filter and a sort by any column here), so a 10k-trial sweep never ships more than a page. Picks
 * (kept across pages) open the compare page.
 */
import { getJson } from '../api.js';
import { append, clear, fmt, h, href } from '../dom.js';
import type { SweepTrialPage } from '../types.js';

const PAGE = 50;
const STATUSES = ['', 'succeeded', 'running', 'pending', 'failed', 'diverged', 'cancelled'];

interface Column {
  title: string;
  /** The server's column: sortable by it. */
  col?: string;
  num?: boolean;
  cell?: (v: unknown) => string;
}

const COLUMNS: Column[] = [
  { title: '' },
  { title: 'trial' },
  { title: 'status', col: 'status' },
  { title: 'method', col: 'method' },
  { title: 'decomposition', col: 'decomposition' },
  { title: 'rank policy', col: 'rank_policy' },
  { title: 'S_D', col: 'distortion_interval', num: true },
  { title: 'seed', col: 'seed', num: true },
  { title: 'final %', col: 'accuracy_final', num: true, cell: (v) => fmt(v as number | null, 2, 100) },
  {
    title: 'after decomp. %',
    col: 'accuracy_after_decomposition',
    num: true,
    cell: (v) => fmt(v as number | null, 2, 100),
  },
  { title: 'params ×', col: 'params_ratio', num: true, cell: (v) => fmt(v as number | null, 2) },
  { title: 'wall s', col: 'wall_seconds', num: true, cell: (v) => fmt(v as number | null, 1) },
];

export class TrialList {
  readonly el = h('div', { id: 'trial-list' });
  private offset = 0;
  private status = '';
  private sort: string | null = null;
  private order: 'asc' | 'desc' = 'desc';
  /** The page's filters as query parameters; null when they match nothing. */
  private filters: URLSearchParams | null = new URLSearchParams();
  private readonly picked = new Set<string>();
  private request = 0;

  constructor(private readonly sweep: string) {}

  /** New filters from the page (facets, brush): back to the first page. */
  async setFilters(filters: URLSearchParams | null): Promise<void> {
    this.filters = filters;
    this.offset = 0;
    await this.refresh();
  }

  async refresh(): Promise<void> {
    const mine = ++this.request;
    let page: SweepTrialPage;
    if (this.filters === null) page = { columns: [], total: 0, rows: [] };
    else {
      const q = new URLSearchParams(this.filters);
      q.set('offset', String(this.offset));
      q.set('limit', String(PAGE));
      if (this.status) q.set('status', this.status);
      if (this.sort) {
        q.set('sort', this.sort);
        q.set('order', this.order);
      }
      page = await getJson<SweepTrialPage>(`/api/sweeps/${encodeURIComponent(this.sweep)}/trials?${q}`);
    }
    // An answer to an older request (filters changed meanwhile) is dropped.
    if (mine === this.request) this.draw(page);
  }

  private header(): HTMLTableRowElement {
    return h(
      'tr',
      {},
      ...COLUMNS.map((c) => {
        if (!c.col) return h('th', {}, c.title);
        const active = this.sort === c.col;
        return h(
          'th',
          {
            class: `sortable${c.num ? ' num' : ''}`,
            'data-sort': c.col,
            'aria-sort': active ? (this.order === 'asc' ? 'ascending' : 'descending') : 'none',
            title: 'sort by this column (again: reverse)',
            onclick: () => {
              if (active) this.order = this.order === 'asc' ? 'desc' : 'asc';
              else [this.sort, this.order] = [c.col!, c.num ? 'desc' : 'asc'];
              this.offset = 0;
              void this.refresh();
            },
          },
          c.title + (active ? (this.order === 'asc' ? ' ▲' : ' ▼') : ''),
        );
      }),
    );
  }

  private draw(page: SweepTrialPage): void {
    const ix = (c: string) => (page.columns as readonly string[]).indexOf(c);
    const compare = h('a', { class: 'compare-link' }, 'compare picked');
    const updateCompare = () => {
      const n = this.picked.size;
      compare.textContent = `compare ${n} picked (2-6)`;
      if (n >= 2 && n <= 6)
        compare.setAttribute(
          'href',
          `/compare?keys=${[...this.picked].map((k) => k.slice(0, 16)).join(',')}`,
        );
      else compare.removeAttribute('href');
    };
    const statusSelect = h(
      'select',
      {
        'aria-label': 'status',
        onchange: (e: Event) => {
          this.status = (e.target as HTMLSelectElement).value;
          this.offset = 0;
          void this.refresh();
        },
      },
      ...STATUSES.map((s) => h('option', { value: s, selected: s === this.status }, s || 'any status')),
    );
    const rows = page.rows.map((r) => {
      const key = r[0] as string;
      const box = h('input', {
        type: 'checkbox',
        checked: this.picked.has(key),
        'aria-label': `pick ${key.slice(0, 10)}`,
        onchange: (e: Event) => {
          if ((e.target as HTMLInputElement).checked) this.picked.add(key);
          else this.picked.delete(key);
          updateCompare();
        },
      });
      const status = String(r[ix('status')]);
      return h(
        'tr',
        { 'data-key': key },
        h('td', {}, box),
        h('td', {}, h('a', { href: href('trials', key) }, key.slice(0, 12))),
        h('td', { 'data-col': 'status' }, h('span', { class: `pill ${status}` }, status)),
        ...COLUMNS.slice(3).map((c) => {
          const v = r[ix(c.col!)];
          return h(
            'td',
            { class: c.num ? 'num' : undefined, 'data-col': c.col },
            c.cell ? c.cell(v) : String(v ?? '-'),
          );
        }),
      );
    });
    const last = Math.min(this.offset + PAGE, page.total);
    const prev = h(
      'button',
      {
        disabled: this.offset === 0,
        onclick: () => ((this.offset = Math.max(0, this.offset - PAGE)), void this.refresh()),
      },
      '‹ prev',
    );
    const next = h(
      'button',
      { disabled: last >= page.total, onclick: () => ((this.offset += PAGE), void this.refresh()) },
      'next ›',
    );
    clear(this.el);
    append(
      this.el,
      h(
        'div',
        { class: 'toolbar' },
        statusSelect,
        prev,
        h(
          'span',
          { class: 'muted', id: 'trial-range' },
          `${page.total === 0 ? 0 : this.offset + 1}-${last} of ${page.total}`,
        ),
        next,
        compare,
      ),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, this.header()), h('tbody', {}, ...rows))),
    );
    this.el.dataset['total'] = String(page.total);
    updateCompare();
  }
}

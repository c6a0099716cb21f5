/** A sweep's trials, paged (the store's paged list), with a status filter and picks for compare. */
import { getJson } from '../api.js';
import { clear, fmt, h, href, table } from '../dom.js';
import type { SweepTrialPage } from '../types.js';

const PAGE = 50;
const STATUSES = ['', 'succeeded', 'running', 'pending', 'failed', 'diverged', 'cancelled'];

export class TrialList {
  readonly el = h('div');
  private offset = 0;
  private status = '';
  private readonly picked = new Set<string>();

  constructor(private readonly sweep: string) {}

  async refresh(): Promise<void> {
    const q = new URLSearchParams({ offset: String(this.offset), limit: String(PAGE) });
    if (this.status) q.set('status', this.status);
    const page = await getJson<SweepTrialPage>(`/api/sweeps/${encodeURIComponent(this.sweep)}/trials?${q}`);
    this.draw(page);
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
      return h(
        'tr',
        { 'data-key': key },
        h('td', {}, box),
        h('td', {}, h('a', { href: href('trials', key) }, key.slice(0, 12))),
        h('td', {}, h('span', { class: `pill ${r[ix('status')]}` }, String(r[ix('status')]))),
        h('td', {}, String(r[ix('method')])),
        h('td', {}, String(r[ix('decomposition')] ?? '-')),
        h('td', {}, String(r[ix('rank_policy')] ?? '-')),
        h('td', { class: 'num' }, String(r[ix('distortion_interval')] ?? '-')),
        h('td', { class: 'num' }, String(r[ix('seed')])),
        h('td', { class: 'num' }, fmt(r[ix('accuracy_final')] as number | null, 2, 100)),
        h('td', { class: 'num' }, fmt(r[ix('accuracy_after_decomposition')] as number | null, 2, 100)),
        h('td', { class: 'num' }, fmt(r[ix('params_ratio')] as number | null, 2)),
        h('td', { class: 'num' }, fmt(r[ix('wall_seconds')] as number | null, 1)),
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
    this.el.append(
      h(
        'div',
        { class: 'toolbar' },
        statusSelect,
        prev,
        h('span', { class: 'muted' }, `${page.total === 0 ? 0 : this.offset + 1}-${last} of ${page.total}`),
        next,
        compare,
      ),
      table(
        [
          '',
          'trial',
          'status',
          'method',
          'decomposition',
          'rank policy',
          ['S_D', 'num'],
          ['seed', 'num'],
          ['final %', 'num'],
          ['after decomp. %', 'num'],
          ['params ×', 'num'],
          ['wall s', 'num'],
        ],
        rows,
      ),
    );
    updateCompare();
  }
}

/** The sweeps list: every sweep with its progress, refreshed live. */
import { getJson } from '../api.js';
import { clear, fmtDuration, fmtTime, h, href, table } from '../dom.js';
import { poll } from '../live.js';
import type { SweepListEntry } from '../types.js';

const STATUSES = ['succeeded', 'running', 'pending', 'failed', 'diverged', 'cancelled'] as const;

export function progressBar(s: SweepListEntry): HTMLElement {
  const total = Math.max(s.counts.trials, 1);
  return h(
    'div',
    { class: 'bar', title: STATUSES.map((k) => `${s.counts[k]} ${k}`).join(', ') },
    ...(['succeeded', 'running', 'failed', 'diverged', 'cancelled'] as const).map((k) =>
      h('span', { class: k, style: `width:${(100 * s.counts[k]) / total}%` }),
    ),
  );
}

function row(s: SweepListEntry): HTMLTableRowElement {
  const done = s.counts.succeeded + s.counts.failed + s.counts.diverged + s.counts.cancelled;
  return h(
    'tr',
    { 'data-sweep': s.name },
    h(
      'td',
      {},
      h('a', { href: href('sweeps', s.name) }, s.name),
      s.description ? h('div', { class: 'muted' }, s.description) : null,
    ),
    h('td', {}, progressBar(s)),
    h('td', { class: 'num', 'data-col': 'done' }, `${done} / ${s.counts.trials}`),
    ...STATUSES.map((k) => h('td', { class: 'num', 'data-col': k }, s.counts[k])),
    h(
      'td',
      { class: 'num' },
      s.finishedAt !== null && s.counts.pending + s.counts.running === 0 ? 'finished' : fmtDuration(s.etaMs),
    ),
    h('td', { class: 'num' }, fmtTime(s.createdAt)),
    h('td', { class: 'num' }, fmtTime(s.updatedAt)),
  );
}

export async function renderSweeps(root: HTMLElement): Promise<void> {
  const first = await getJson<{ sweeps: SweepListEntry[] }>('/api/sweeps');
  document.title = 'flatrank: sweeps';
  const body = h('div');
  const draw = (sweeps: SweepListEntry[]) => {
    clear(body);
    if (sweeps.length === 0) {
      body.append(
        h('p', { class: 'muted' }, 'No sweeps in this database yet: flatrank run <spec.yaml> writes one.'),
      );
      return;
    }
    body.append(
      table(
        [
          'sweep',
          'progress',
          ['done', 'num'],
          ...STATUSES.map((s): [string, string] => [s, 'num']),
          ['ETA', 'num'],
          'created',
          'updated',
        ],
        sweeps.map(row),
      ),
    );
  };
  clear(root);
  root.append(h('h1', {}, 'Sweeps'), body);
  draw(first.sweeps);
  poll(async () => draw((await getJson<{ sweeps: SweepListEntry[] }>('/api/sweeps')).sweeps));
}

/** 2-6 trials side by side: the config fields that differ, curves overlaid, per-layer ranks. */
import { getJson } from '../api.js';
import { chart } from '../charts.js';
import { append, clear, h, href, table } from '../dom.js';
import type { ComparePage } from '../types.js';
import { drawCurves } from './curves.js';
import { list, rankOption } from './trial.js';

type Row = Record<string, string | number | boolean | null>;

const show = (v: unknown) =>
  v === null || v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v);

export async function renderCompare(root: HTMLElement, query: URLSearchParams): Promise<void> {
  const keys = query.get('keys') ?? '';
  const page = await getJson<ComparePage>(`/api/compare?keys=${encodeURIComponent(keys)}`);
  document.title = `flatrank: compare ${page.trials.length} trials`;
  const labels = page.trials.map((t) => t.trial.key.slice(0, 8));
  const lossEl = h('div', { class: 'chart small', id: 'loss-chart' });
  const accEl = h('div', { class: 'chart small', id: 'accuracy-chart' });
  const rankEl = h('div', { class: 'chart small', id: 'rank-chart' });
  const diff = table(
    ['config field', ...labels],
    page.changedKeys.map((k) =>
      h('tr', { 'data-field': k }, h('td', {}, k), ...page.values.map((v) => h('td', {}, show(v[k])))),
    ),
  );
  const summary = table(
    ['', ...labels],
    [
      h(
        'tr',
        {},
        h('td', {}, 'trial'),
        ...page.trials.map((t) =>
          h('td', {}, h('a', { href: href('trials', t.trial.key) }, t.trial.key.slice(0, 12))),
        ),
      ),
      h('tr', {}, h('td', {}, 'status'), ...page.trials.map((t) => h('td', {}, t.trial.status))),
      h(
        'tr',
        {},
        h('td', {}, 'final acc. %'),
        ...page.trials.map((t) =>
          h(
            'td',
            { class: 'num' },
            show(t.result ? ((t.result['accuracy_final'] as number) * 100).toFixed(2) : null),
          ),
        ),
      ),
      h(
        'tr',
        {},
        h('td', {}, 'after decomp. %'),
        ...page.trials.map((t) =>
          h(
            'td',
            { class: 'num' },
            show(
              t.result?.['accuracy_after_decomposition'] == null
                ? null
                : ((t.result['accuracy_after_decomposition'] as number) * 100).toFixed(2),
            ),
          ),
        ),
      ),
      h(
        'tr',
        {},
        h('td', {}, 'params ×'),
        ...page.trials.map((t) =>
          h(
            'td',
            { class: 'num' },
            show(t.result?.['params_ratio'] == null ? null : (t.result['params_ratio'] as number).toFixed(2)),
          ),
        ),
      ),
    ],
  );
  const layerNames = [...new Set(page.trials.flatMap((t) => t.layers.map((l) => String(l['layer']))))];
  const ranks = table(
    ['layer', ...labels],
    layerNames.map((n) =>
      h(
        'tr',
        {},
        h('td', {}, n),
        ...page.trials.map((t) => {
          const l = t.layers.find((x) => String(x['layer']) === n);
          return h('td', { class: 'num' }, l ? list(l['ranks']) : '-');
        }),
      ),
    ),
  );
  clear(root);
  append(
    root,
    h('h1', {}, `Compare ${page.trials.length} trials`),
    summary,
    h('h2', {}, 'Config differences'),
    page.changedKeys.length ? diff : h('p', { class: 'muted' }, 'the configs are identical'),
    h('h2', {}, 'Curves'),
    h('div', { class: 'row' }, lossEl, accEl),
    h('h2', {}, 'Per-layer ranks'),
    layerNames.length ? ranks : h('p', { class: 'muted' }, 'no per-layer records'),
    layerNames.length ? rankEl : null,
  );
  const trials = page.trials.map((t, i) => ({ label: labels[i]!, page: t }));
  drawCurves(lossEl, accEl, trials);
  if (layerNames.length)
    chart(
      'ranks',
      rankEl,
      rankOption(page.trials.map((t, i) => ({ label: labels[i]!, layers: t.layers as Row[] }))),
    );
}

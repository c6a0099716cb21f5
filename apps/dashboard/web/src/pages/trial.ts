/**
 * One trial: canonical config, environment, results (accuracy right after decomposition included),
 * loss / accuracy curves with the distortion steps marked, the per-layer table and rank chart, the
 * rank allocation (when the trial's ranks were allocated), artifacts and the log file.
 */
import { getJson, getText } from '../api.js';
import { chart, type Option } from '../charts.js';
import { append, fmt, fmtTime, h, href, kv, table, clear } from '../dom.js';
import type { TrialPage } from '../types.js';
import { allocationSection } from './allocation.js';
import { drawCurves } from './curves.js';

type Row = Record<string, string | number | boolean | null>;

const parseJson = (v: unknown): unknown => {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
};
export const list = (v: unknown): string => {
  const p = parseJson(v);
  return Array.isArray(p) ? p.join(' × ') : p === null || p === undefined ? '-' : String(p);
};

/** An error: 4 decimals, or 3 significant digits when it is tiny (a distort trial's final projection). */
const fmtError = (v: unknown): string =>
  typeof v !== 'number' ? '' : v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4);

interface LayerColumn {
  col: string;
  title: string;
  num?: boolean;
  text: (l: Row) => string;
}

const cell = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

const LAYER_COLUMNS: LayerColumn[] = [
  { col: 'layer', title: 'layer', text: (l) => String(l['layer']) },
  { col: 'decomposition', title: 'decomposition', text: (l) => String(l['decomposition'] ?? '-') },
  { col: 'scheme', title: 'scheme', text: (l) => String(l['scheme'] ?? '-') },
  { col: 'ranks', title: 'ranks', text: (l) => list(l['ranks']) },
  { col: 'tile', title: 'tile', text: (l) => list(l['tile']) },
  { col: 'kernel_shape', title: 'kernel', text: (l) => list(l['kernel_shape']) },
  { col: 'params_before', title: 'params before', num: true, text: (l) => String(l['params_before']) },
  { col: 'params_after', title: 'params after', num: true, text: (l) => String(l['params_after']) },
  {
    col: 'params_ratio',
    title: 'params ×',
    num: true,
    text: (l) => fmt(Number(l['params_before']) / Number(l['params_after']), 2),
  },
  { col: 'macs_before', title: 'MACs before', num: true, text: (l) => String(l['macs_before']) },
  { col: 'macs_after', title: 'MACs after', num: true, text: (l) => String(l['macs_after']) },
  {
    col: 'relative_error',
    title: 'rel. error',
    num: true,
    text: (l) => fmtError(l['relative_error']) || '-',
  },
];

/**
 * The records of how a layer was fitted; a group of columns is shown when some layer of the trial
 * has it (older records and other methods have NULL), and a layer without a value is blank.
 */
const FIT_COLUMNS: LayerColumn[] = [
  { col: 'lowering_order', title: 'lowering order', text: (l) => cell(l['lowering_order']) },
  { col: 'iterations', title: 'iterations', num: true, text: (l) => cell(l['iterations']) },
  {
    col: 'converged',
    title: 'converged',
    text: (l) =>
      l['converged'] === null || l['converged'] === undefined ? '' : l['converged'] ? 'yes' : 'no',
  },
  { col: 'cp_init', title: 'CP init', text: (l) => cell(l['cp_init']) },
  { col: 'cp_seed', title: 'CP seed', num: true, text: (l) => cell(l['cp_seed']) },
  {
    col: 'cp_fit',
    title: 'CP fit',
    num: true,
    text: (l) => (typeof l['cp_fit'] === 'number' ? l['cp_fit'].toFixed(4) : ''),
  },
  {
    col: 'first_distortion_error',
    title: 'first distortion err.',
    num: true,
    text: (l) => fmtError(l['first_distortion_error']),
  },
  {
    col: 'final_distortion_error',
    title: 'final distortion err.',
    num: true,
    text: (l) => fmtError(l['final_distortion_error']),
  },
];

export function layerTable(layers: readonly Row[]): HTMLElement {
  const has = (col: string) => layers.some((l) => l[col] !== null && l[col] !== undefined);
  // Iterations and convergence are one record (an iterative fit), as are CP's init, seed and fit.
  const groups: Record<string, string[]> = {
    iterations: ['iterations', 'converged'],
    converged: ['iterations', 'converged'],
    cp_init: ['cp_init', 'cp_seed', 'cp_fit'],
    cp_seed: ['cp_init', 'cp_seed', 'cp_fit'],
    cp_fit: ['cp_init', 'cp_seed', 'cp_fit'],
  };
  const columns = [...LAYER_COLUMNS, ...FIT_COLUMNS.filter((c) => (groups[c.col] ?? [c.col]).some(has))];
  return table(
    columns.map((c) => (c.num ? [c.title, 'num'] : c.title)),
    layers.map((l) =>
      h(
        'tr',
        { 'data-layer': String(l['layer']) },
        ...columns.map((c) => h('td', { class: c.num ? 'num' : undefined, 'data-col': c.col }, c.text(l))),
      ),
    ),
  );
}

/** Ranks per layer as grouped bars: one group per layer, one bar per trial and rank component. */
export function rankOption(trials: ReadonlyArray<{ label: string; layers: readonly Row[] }>): Option {
  const names = [...new Set(trials.flatMap((t) => t.layers.map((l) => String(l['layer']))))];
  const width = Math.max(
    1,
    ...trials.flatMap((t) => t.layers.map((l) => (parseJson(l['ranks']) as number[] | null)?.length ?? 1)),
  );
  const series = trials.flatMap((t) =>
    Array.from({ length: width }, (_, c) => ({
      type: 'bar',
      name: `${t.label}${width > 1 ? (c === 0 ? ' R_S / r' : ' R_T') : ''}`,
      data: names.map((n) => {
        const l = t.layers.find((x) => String(x['layer']) === n);
        const ranks = l ? (parseJson(l['ranks']) as number[] | null) : null;
        return ranks?.[c] ?? null;
      }),
    })),
  );
  return {
    animation: false,
    legend: { type: 'scroll', top: 0 },
    grid: { left: 50, right: 20, top: 64, bottom: 40 },
    tooltip: { trigger: 'axis', confine: true },
    xAxis: { type: 'category', data: names },
    yAxis: { type: 'value', name: 'rank' },
    series,
  };
}

function environment(t: TrialPage): HTMLElement {
  const e = t.trial.environment;
  if (!e) return h('p', { class: 'muted' }, 'not started yet');
  return kv([
    ['git commit', e.gitCommit ?? '-'],
    ['dirty', e.gitDirty === null ? '-' : e.gitDirty ? 'yes (uncommitted changes)' : 'no'],
    ['backend', `${e.backend} ${e.backendVersion ?? ''}`],
    ['device', e.device ?? '-'],
    ['host', e.host ?? '-'],
    ['node', e.nodeVersion ?? '-'],
    ['CUDA_VISIBLE_DEVICES', e.cudaVisibleDevices ?? '-'],
    ['worker', t.trial.worker ?? '-'],
    [
      'versions',
      Object.entries(e.packageVersions ?? {})
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
  ]);
}

function results(t: TrialPage): HTMLElement {
  const r = t.result as Row | null;
  if (!r) return h('p', { class: 'muted' }, 'no result yet');
  const pct = (k: string) => (r[k] === null ? '-' : `${fmt(r[k] as number, 2, 100)} %`);
  return kv([
    ['accuracy before (start model)', pct('accuracy_original')],
    [
      'accuracy right after decomposition',
      h('span', { id: 'acc-after-decomposition' }, pct('accuracy_after_decomposition')),
    ],
    ['final accuracy', h('span', { id: 'acc-final' }, pct('accuracy_final'))],
    [
      'params',
      `${r['params_before']} → ${r['params_after']} (${fmt(r['params_ratio'] as number | null, 2)}x)`,
    ],
    ['MACs', `${r['macs_before']} → ${r['macs_after']} (${fmt(r['macs_ratio'] as number | null, 2)}x)`],
    [
      'latency (ms / batch)',
      `${fmt(r['latency_before_ms'] as number | null, 3)} → ${fmt(r['latency_after_ms'] as number | null, 3)} (batch ${r['latency_batch'] ?? '-'})`,
    ],
    ['wall time', `${fmt(r['wall_seconds'] as number | null, 1)} s`],
    ['steps / epochs', `${r['steps']} / ${r['epochs']}`],
  ]);
}

export async function renderTrial(root: HTMLElement, key: string): Promise<void> {
  const t = await getJson<TrialPage>(`/api/trials/${encodeURIComponent(key)}`);
  const tr = t.trial;
  document.title = `flatrank: trial ${tr.key.slice(0, 12)}`;
  const lossEl = h('div', { class: 'chart small', id: 'loss-chart' });
  const accEl = h('div', { class: 'chart small', id: 'accuracy-chart' });
  const rankEl = h('div', { class: 'chart small', id: 'rank-chart' });
  const logBox = h(
    'pre',
    { id: 'log' },
    t.hasLog ? 'loading…' : 'no log file found under the runs directory (serve --runs-dir)',
  );
  clear(root);
  append(
    root,
    h('h1', {}, `trial ${tr.key}`),
    h(
      'p',
      {},
      h('span', { class: `pill ${tr.status}` }, tr.status),
      ` ${tr.axes.method} ${tr.axes.decomposition ?? ''} ${tr.axes.rankPolicy ?? ''} seed ${tr.axes.seed} · attempt ${tr.attempts} · sweeps: `,
      ...t.sweeps.flatMap((s, i) => [i > 0 ? ', ' : '', h('a', { href: href('sweeps', s) }, s)]),
      ` · started ${fmtTime(tr.startedAt)} · finished ${fmtTime(tr.finishedAt)}`,
    ),
    tr.error ? h('p', { class: 'error' }, `${tr.errorCode ?? 'error'}: ${tr.error}`) : null,
    t.dependsOn.length
      ? h(
          'p',
          {},
          'starts from: ',
          ...t.dependsOn.flatMap((d, i) => [
            i > 0 ? ', ' : '',
            h('a', { href: href('trials', d.key) }, d.key.slice(0, 12)),
            ` (${d.status ?? 'missing'})`,
          ]),
        )
      : null,
    h(
      'div',
      { class: 'row' },
      h('div', {}, h('h2', {}, 'Result'), results(t)),
      h('div', {}, h('h2', {}, 'Environment'), environment(t)),
    ),
    h('h2', {}, 'Curves'),
    h(
      'p',
      { class: 'muted' },
      t.distortionSteps.length
        ? `${t.distortionSteps.length} distortion steps (dashed purple lines)`
        : 'no distortion steps',
    ),
    h('div', { class: 'row' }, lossEl, accEl),
    h('h2', {}, 'Layers'),
    t.layers.length
      ? layerTable(t.layers as Row[])
      : h('p', { class: 'muted' }, 'no per-layer records (uncompressed, or not finished)'),
    t.layers.length ? rankEl : null,
    t.allocation ? h('h2', {}, 'Rank allocation') : null,
    t.allocation ? allocationSection(t.allocation) : null,
    h('h2', {}, 'Config (canonical JSON)'),
    h('pre', { id: 'config' }, JSON.stringify(JSON.parse(t.configJson), null, 2)),
    h('h2', {}, 'Artifacts'),
    t.artifacts.length
      ? table(
          ['kind', 'path'],
          t.artifacts.map((a) => h('tr', {}, h('td', {}, a.kind), h('td', {}, a.path))),
        )
      : h('p', { class: 'muted' }, 'none'),
    h('h2', {}, 'Log'),
    logBox,
  );
  drawCurves(lossEl, accEl, [{ label: tr.key.slice(0, 8), page: t }]);
  if (t.layers.length)
    chart('ranks', rankEl, rankOption([{ label: tr.key.slice(0, 8), layers: t.layers as Row[] }]));
  if (t.hasLog) logBox.textContent = await getText(`/api/trials/${encodeURIComponent(tr.key)}/log`);
}

/**
 * A sweep: progress (live), the report table, the accuracy-vs-compression plot, filters, parallel
 * coordinates with top-k, and the paged trial list. A change in the sweep's counts reloads the data.
 */
import { getJson } from '../api.js';
import { append, clear, fmtDuration, h } from '../dom.js';
import { poll } from '../live.js';
import type { ReportEntry, SweepListEntry, SweepPage, SweepTrialPage } from '../types.js';
import { progressBar } from './sweeps.js';
import { reportTable } from './report-table.js';
import { drawPlot } from './sweep-plot.js';
import { drawParallel } from './sweep-parallel.js';
import { TrialList } from './trial-list.js';

interface Facet {
  name: string;
  of: (r: ReportEntry) => string;
}

const FACETS: Facet[] = [
  { name: 'method', of: (r) => r.method },
  { name: 'decomposition', of: (r) => r.decomposition ?? '(none)' },
  { name: 'rank policy', of: (r) => r.rank ?? '(none)' },
  { name: 'S_D', of: (r) => (r.distortionInterval === null ? '(none)' : String(r.distortionInterval)) },
];

function countsText(s: SweepListEntry): string {
  const c = s.counts;
  const eta = s.etaMs === null ? '' : ` · ETA ${fmtDuration(s.etaMs)}`;
  return `${c.succeeded} succeeded, ${c.running} running, ${c.pending} pending, ${c.failed} failed, ${c.diverged} diverged, ${c.cancelled} cancelled of ${c.trials}${eta}`;
}

export async function renderSweep(root: HTMLElement, name: string): Promise<void> {
  const api = `/api/sweeps/${encodeURIComponent(name)}`;
  const succeededQuery = '/trials?status=succeeded&sort=accuracy_final&order=desc&limit=50000';
  let [page, trials] = await Promise.all([
    getJson<SweepPage>(api),
    getJson<SweepTrialPage>(api + succeededQuery),
  ]);
  document.title = `flatrank: ${name}`;
  const hidden = new Map<string, Set<string>>(FACETS.map((f) => [f.name, new Set()]));
  let topK = 0;

  const progress = h('div', { class: 'toolbar' });
  const filters = h('div', { class: 'filters' });
  const tableBox = h('div');
  const plotBox = h('div', { class: 'chart', id: 'sweep-plot' });
  const parallelBox = h('div', { class: 'chart', id: 'parallel' });
  const list = new TrialList(name);

  const visible = (r: ReportEntry) => FACETS.every((f) => !hidden.get(f.name)!.has(f.of(r)));
  const drawProgress = () => {
    clear(progress);
    progress.append(progressBar(page.sweep), h('span', { id: 'sweep-counts' }, countsText(page.sweep)));
  };
  const drawFilters = () => {
    clear(filters);
    for (const f of FACETS) {
      const values = [...new Set(page.report.rows.map(f.of))].sort();
      if (values.length < 2) continue;
      filters.append(
        h(
          'fieldset',
          { 'data-facet': f.name },
          h('legend', {}, f.name),
          ...values.map((v) =>
            h(
              'label',
              {},
              h('input', {
                type: 'checkbox',
                checked: !hidden.get(f.name)!.has(v),
                onchange: (e: Event) => {
                  if ((e.target as HTMLInputElement).checked) hidden.get(f.name)!.delete(v);
                  else hidden.get(f.name)!.add(v);
                  drawData();
                },
              }),
              ` ${v}`,
            ),
          ),
        ),
      );
    }
    if (!filters.firstChild)
      filters.append(
        h('span', { class: 'muted' }, 'every row has the same method, decomposition, rank policy and S_D'),
      );
  };
  const drawData = () => {
    const rows = page.report.rows.filter(visible);
    const rowSet = new Set(page.report.rows.flatMap((r, i) => (visible(r) ? [i] : [])));
    clear(tableBox);
    tableBox.append(reportTable(page.report, rows));
    drawPlot(plotBox, page, rowSet);
    const keep = new Set(rows.flatMap((r) => r.trialKeys));
    drawParallel(parallelBox, trials, keep, topK);
  };
  const topKInput = h('input', {
    type: 'number',
    min: 0,
    step: 1,
    value: 0,
    style: 'width:6em',
    'aria-label': 'top k',
    onchange: (e: Event) => {
      const v = Number((e.target as HTMLInputElement).value);
      topK = Number.isInteger(v) && v > 0 ? v : 0;
      drawData();
    },
  });

  clear(root);
  append(
    root,
    h('h1', {}, name),
    page.sweep.description ? h('p', { class: 'muted' }, page.sweep.description) : null,
    progress,
    h('details', {}, h('summary', {}, 'spec'), h('pre', {}, page.specText)),
    h('h2', {}, 'Filters'),
    filters,
    h('h2', {}, 'Report'),
    tableBox,
    h('h2', {}, 'Accuracy vs compression'),
    plotBox,
    h('h2', {}, 'Grid axes vs final accuracy'),
    h(
      'div',
      { class: 'toolbar' },
      h('label', {}, 'top k (0 = all) ', topKInput),
      h('span', { class: 'muted' }, 'succeeded trials, most accurate first; drag on an axis to brush'),
    ),
    parallelBox,
    h('h2', {}, 'Trials'),
    list.el,
  );
  drawProgress();
  drawFilters();
  drawData();
  await list.refresh();

  poll(async () => {
    const { sweeps } = await getJson<{ sweeps: SweepListEntry[] }>('/api/sweeps');
    const now = sweeps.find((s) => s.name === name);
    if (!now) return;
    const changed = JSON.stringify(now.counts) !== JSON.stringify(page.sweep.counts);
    page.sweep = now;
    drawProgress();
    if (!changed) return;
    [page, trials] = await Promise.all([
      getJson<SweepPage>(api),
      getJson<SweepTrialPage>(api + succeededQuery),
    ]);
    drawFilters();
    drawData();
    await list.refresh();
  });
}

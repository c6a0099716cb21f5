/**
 * A sweep: progress (live), the report table, the accuracy-vs-compression plot, filters, parallel
 * coordinates with top-k and axis brushing, and the paged trial list. The table and plot come from
 * the report (one row per configuration); the parallel coordinates and the list are asked of the
 * server with the same filters, so the page holds a bounded sample and one page of trials however
 * large the sweep. A new revision of the sweep (a trial finished) reloads the data.
 */
import { getJson } from '../api.js';
import { append, clear, fmtDuration, h } from '../dom.js';
import { poll } from '../live.js';
import type { ReportEntry, RowAxes, SweepListEntry, SweepPage, SweepTrialPage } from '../types.js';
import { progressBar } from './sweeps.js';
import { reportTable } from './report-table.js';
import { drawPlot } from './sweep-plot.js';
import { brushParams, drawParallel, type Brush, type ParallelView } from './sweep-parallel.js';
import { TrialList } from './trial-list.js';

/** Lines the parallel coordinates draw at most, and how many of them are the most accurate trials. */
export const PARALLEL_LINES = 1000;
export const PARALLEL_BEST = 250;

interface Facet {
  name: string;
  /** The report row's value (what the checkbox says). */
  of: (r: ReportEntry) => string;
  /** The trial list's parameter and the row's value for it (RowAxes: as the trials table has it). */
  param: string;
  axis: (a: RowAxes) => string | number | null;
}

const FACETS: Facet[] = [
  { name: 'method', of: (r) => r.method, param: 'method', axis: (a) => a.method },
  {
    name: 'decomposition',
    of: (r) => r.decomposition ?? '(none)',
    param: 'decomposition',
    axis: (a) => a.decomposition,
  },
  { name: 'rank policy', of: (r) => r.rank ?? '(none)', param: 'rank_policy', axis: (a) => a.rankPolicy },
  {
    name: 'S_D',
    of: (r) => (r.distortionInterval === null ? '(none)' : String(r.distortionInterval)),
    param: 'sd',
    axis: (a) => a.distortionInterval,
  },
];

function countsText(s: SweepListEntry): string {
  const c = s.counts;
  const eta = s.etaMs === null ? '' : ` · ETA ${fmtDuration(s.etaMs)}`;
  return `${c.succeeded} succeeded, ${c.running} running, ${c.pending} pending, ${c.failed} failed, ${c.diverged} diverged, ${c.cancelled} cancelled of ${c.trials}${eta}`;
}

/**
 * The facets as trial-list parameters: for each facet with a hidden value, the trial values of the
 * rows still shown. null when no row is shown (nothing matches).
 */
function facetParams(page: SweepPage, hidden: Map<string, Set<string>>): Array<[string, string[]]> | null {
  const out: Array<[string, string[]]> = [];
  if ([...hidden.values()].every((h) => h.size === 0)) return out;
  const visible = (r: ReportEntry) => FACETS.every((f) => !hidden.get(f.name)!.has(f.of(r)));
  if (!page.report.rows.some(visible)) return null;
  for (const f of FACETS) {
    if (hidden.get(f.name)!.size === 0) continue;
    const values = new Set<string>();
    page.report.rows.forEach((r, i) => {
      const axes = page.rowAxes[i];
      if (axes && !hidden.get(f.name)!.has(f.of(r))) {
        const v = f.axis(axes);
        values.add(v === null ? '-' : String(v));
      }
    });
    out.push([f.param, [...values]]);
  }
  return out;
}

/** Parameters of one list, the same name given twice (facet and brush) meaning both: intersected. */
function merge(...lists: Array<Array<[string, string[]]>>): URLSearchParams | null {
  const byName = new Map<string, string[]>();
  for (const [name, values] of lists.flat()) {
    const had = byName.get(name);
    byName.set(
      name,
      had && name !== 'range' ? had.filter((v) => values.includes(v)) : [...(had ?? []), ...values],
    );
  }
  const q = new URLSearchParams();
  for (const [name, values] of byName) {
    if (values.length === 0) return null;
    q.set(name, values.join(','));
  }
  return q;
}

export async function renderSweep(root: HTMLElement, name: string): Promise<void> {
  const api = `/api/sweeps/${encodeURIComponent(name)}`;
  const hidden = new Map<string, Set<string>>(FACETS.map((f) => [f.name, new Set()]));
  const brush: Brush = new Map();
  let topK = 0;
  // Filled before anything reads it: the first lines and list requests need no facets (none hidden).
  let page = undefined as unknown as SweepPage;

  const progress = h('div', { class: 'toolbar' });
  const filters = h('div', { class: 'filters' });
  const tableBox = h('div');
  const plotBox = h('div', { class: 'chart', id: 'sweep-plot' });
  const parallelBox = h('div', { class: 'chart', id: 'parallel' });
  const sampleNote = h('span', { class: 'muted', id: 'parallel-sample' });
  const brushNote = h('span', { class: 'muted', id: 'parallel-brush' });
  const list = new TrialList(name);

  const facetList = () => facetParams(page, hidden);
  const listFilters = () => {
    const facets = facetList();
    return facets === null ? null : merge(facets, brushParams(brush));
  };
  const describeBrush = (view: ParallelView) => {
    brushNote.textContent =
      brush.size === 0
        ? 'drag along an axis to brush a range (click the axis to clear); the trial list below follows'
        : `brushed: ${view.inBrush} of the ${view.drawn} drawn lines; the trial list below shows every trial of the sweep in the brushed ranges`;
  };
  const onBrush = (view: ParallelView) => {
    describeBrush(view);
    void list.setFilters(listFilters());
  };

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
                  drawReport();
                  void Promise.all([drawLines(), list.setFilters(listFilters())]);
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
  const drawReport = () => {
    const shown = (r: ReportEntry) => FACETS.every((f) => !hidden.get(f.name)!.has(f.of(r)));
    const rows = page.report.rows.filter(shown);
    const rowSet = new Set(page.report.rows.flatMap((r, i) => (shown(r) ? [i] : [])));
    clear(tableBox);
    tableBox.append(reportTable(page.report, rows));
    drawPlot(plotBox, page, rowSet);
  };
  // The parallel coordinates' lines: succeeded trials by final accuracy, a bounded spread of them.
  const fetchLines = async (facets: Array<[string, string[]]> | null): Promise<SweepTrialPage> => {
    if (facets === null) return { columns: [], total: 0, rows: [] };
    const q = merge(facets, [['status', ['succeeded']]])!;
    q.set('sort', 'accuracy_final');
    q.set('order', 'desc');
    q.set('limit', String(PARALLEL_LINES));
    q.set('spread', String(PARALLEL_BEST));
    if (topK > 0) q.set('top', String(topK));
    return getJson<SweepTrialPage>(`${api}/trials?${q}`);
  };
  let linesRequest = 0;
  const drawLines = async (ready?: SweepTrialPage) => {
    const mine = ++linesRequest;
    const trials = ready ?? (await fetchLines(facetList()));
    if (mine !== linesRequest) return;
    const sample = trials.spread;
    sampleNote.textContent =
      trials.rows.length === trials.total
        ? `${trials.total} succeeded trials${topK > 0 ? ` (the ${topK} most accurate)` : ''}, every one drawn`
        : `${trials.rows.length} of ${trials.total} succeeded trials${topK > 0 ? ` (the ${topK} most accurate)` : ''} drawn: the ${sample?.head ?? 0} most accurate, then 1 in ${sample?.step ?? 1} of the rest in order of accuracy (a fixed sample; the trial list below has them all)`;
    describeBrush(drawParallel(parallelBox, trials, brush, onBrush));
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
      void drawLines();
    },
  });

  // The page's three requests at once: the report, the lines, the first page of trials.
  const [first, lines] = await Promise.all([getJson<SweepPage>(api), fetchLines([]), list.refresh()]);
  page = first;
  document.title = `flatrank: ${name}`;
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
    h('div', { class: 'toolbar' }, h('label', {}, 'top k (0 = all) ', topKInput), sampleNote),
    parallelBox,
    h('div', { class: 'toolbar' }, brushNote),
    h('h2', {}, 'Trials'),
    list.el,
  );
  drawProgress();
  drawFilters();
  drawReport();
  await drawLines(lines);

  poll(async () => {
    const { sweeps } = await getJson<{ sweeps: SweepListEntry[] }>('/api/sweeps');
    const now = sweeps.find((s) => s.name === name);
    if (!now) return;
    const changed = now.revision !== page.sweep.revision;
    page.sweep = now;
    drawProgress();
    if (!changed) return;
    page = await getJson<SweepPage>(api);
    drawFilters();
    drawReport();
    await Promise.all([drawLines(), list.refresh()]);
  });
}

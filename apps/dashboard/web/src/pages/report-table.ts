/** The report table: the rows and numbers of `flatrank report` (same formatting), published beside ours. */
import { fmt, fmtSigned, fmtStat, h, href, table } from '../dom.js';
import type { Report, ReportEntry } from '../types.js';

function notDone(r: ReportEntry): string {
  const parts: string[] = [];
  for (const s of ['failed', 'diverged', 'running', 'pending', 'cancelled'] as const)
    if (r.status[s] > 0) parts.push(`${r.status[s]} ${s}`);
  return parts.join(', ');
}

const label = (r: ReportEntry) =>
  r.isBaseline ? 'baseline (uncompressed)' : `${r.method} ${r.decomposition ?? ''}`.trim();

function num(col: string, text: string, title?: string): HTMLTableCellElement {
  return h('td', { class: 'num', 'data-col': col, title }, text);
}

function trialsCell(r: ReportEntry): HTMLElement {
  const keys = r.trialKeys;
  if (keys.length === 1) return h('a', { href: href('trials', keys[0]!) }, 'trial');
  if (keys.length >= 2 && keys.length <= 6)
    return h(
      'a',
      { href: `/compare?keys=${keys.map((k) => k.slice(0, 16)).join(',')}` },
      `compare ${keys.length}`,
    );
  return h('a', { href: href('trials', keys[0]!) }, `first of ${keys.length}`);
}

export function reportTable(report: Report, rows: readonly ReportEntry[]): HTMLElement {
  const paper = report.reproduces !== null;
  // As `flatrank report`: the column appears when distort rows carry comparable decomposition errors.
  const errors = report.rows.some((r) => r.method === 'distort' && r.decompositionError.mean !== null);
  const head: Array<string | [string, string]> = [
    '',
    'method',
    'rank',
    'variant',
    ['n', 'num'],
    ['params ×', 'num'],
    ['MACs ×', 'num'],
    ['latency ×', 'num'],
    ...(errors ? [['decomp. err.', 'num'] as [string, string]] : []),
    ['acc. after decomp. %', 'num'],
    ['final acc. %', 'num'],
    ['vs base pts', 'num'],
  ];
  if (paper) head.push(['paper % (other net / data)', 'num'], ['Δ pts', 'num']);
  head.push(['wall s', 'num'], 'not done', 'trials');
  const trs = rows.map((r) => {
    const cells: HTMLTableCellElement[] = [
      h(
        'td',
        { 'data-col': 'best', title: r.best ? 'best final accuracy at this compression ratio' : undefined },
        r.best ? '★' : '',
      ),
      h('td', { 'data-col': 'label' }, label(r)),
      h('td', { 'data-col': 'rank' }, r.rank ?? ''),
      h('td', { 'data-col': 'variant' }, r.variant),
      num('n', String(r.accuracyFinal.n)),
      num('paramsRatio', r.isBaseline ? '1' : fmtStat(r.paramsRatio, 2)),
      num('macsRatio', r.isBaseline ? '1' : fmtStat(r.macsRatio, 2)),
      num('latencyRatio', fmtStat(r.latencyRatio, 2)),
      ...(errors ? [num('decompositionError', fmtStat(r.decompositionError, 3))] : []),
      num('accuracyAfterDecomposition', fmtStat(r.accuracyAfterDecomposition, 2, 100)),
      num('accuracyFinal', fmtStat(r.accuracyFinal, 2, 100)),
      num('vsBaseline', fmtSigned(r.vsBaseline, 2)),
    ];
    if (paper)
      cells.push(
        num(
          'paper',
          r.paper ? fmt(r.paper.accuracy, 2) : '',
          r.paper ? `published ratio ${r.paper.ratio}x: ${r.paper.note}` : undefined,
        ),
        num('paperDelta', r.paper ? fmtSigned(r.paper.delta, 2) : ''),
      );
    cells.push(
      num('wallSeconds', fmtStat(r.wallSeconds, 1)),
      h('td', { 'data-col': 'notDone' }, notDone(r)),
      h('td', {}, trialsCell(r)),
    );
    return h(
      'tr',
      { class: `${r.best ? 'best' : ''} ${r.isBaseline ? 'baseline' : ''}`.trim(), 'data-group': r.group },
      ...cells,
    );
  });
  const t = report.totals;
  const out = h(
    'div',
    {},
    h(
      'p',
      { class: 'muted' },
      `${t.trials} trials: ${t.succeeded} succeeded, ${t.failed} failed, ${t.diverged} diverged, ${t.running} running, ${t.pending} pending, ${t.cancelled} cancelled. Mean ± sample std over seeds (n = succeeded trials); × columns: before / after; ${errors ? "decomp. err.: mean ‖K − K'‖ / ‖K‖ over the compressed layers (distort: its first distortion); " : ''}★ / bold: best mean final accuracy at its compression ratio; vs base: points against the uncompressed baseline.`,
    ),
    table(head, trs),
  );
  const worse = rows.filter((r) => r.worseAfterFineTuning.length > 0);
  if (worse.length > 0)
    out.append(
      h(
        'p',
        {},
        '⚠ Fine-tuning ended below the accuracy right after decomposition (the recipe made these trials worse than not fine-tuning):',
      ),
      h(
        'ul',
        { id: 'worse-after-fine-tuning' },
        ...worse.map((r) =>
          h(
            'li',
            {},
            `${[label(r), r.rank ?? '', r.variant].filter((x) => x !== '').join(', ')}: seed${r.worseAfterFineTuning.length > 1 ? 's' : ''} ${r.worseAfterFineTuning.join(', ')} (${r.worseAfterFineTuning.length} of ${r.accuracyFinal.n})`,
          ),
        ),
      ),
    );
  if (paper && report.notCovered.length > 0)
    out.append(
      h('p', { class: 'muted' }, `Published rows of ${report.reproduces} without a counterpart here:`),
      h(
        'ul',
        {},
        ...report.notCovered.map((p) =>
          h(
            'li',
            {},
            `${p.method} ${p.decomposition} at ${p.ratio}x: ${p.accuracy.toFixed(2)} % (${p.note})`,
          ),
        ),
      ),
    );
  return out;
}

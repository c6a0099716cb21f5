/**
 * Text output: a Report as markdown, CSV or JSON, and the row output of the read commands (runs,
 * query, export, show, and the scheduler's progress tables) as an aligned text table, RFC 4180 CSV
 * or JSON. No runtime imports beyond the protocol and the rank profile's text forms, so
 * `@flatrank/report/format` loads without the plot renderer.
 */
import type { Report, ReportEntry } from './report.js';
import type { PairedDifference } from './paired.js';
import { PAPER_BASELINE_ACCURACY } from './paper.js';
import type { Stat } from './stats.js';
import { rankProfileCsv, rankProfileMarkdown, type RankProfile, type RankValues } from './rank-profile.js';
import { ValidationError } from '@flatrank/protocol';

const PAPER_SETTING = `Lee et al. 2019's ResNet-32 on CIFAR-10 (from a pre-trained model at ${PAPER_BASELINE_ACCURACY} %)`;

export const REPORT_FORMATS = ['md', 'csv', 'json'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export function parseReportFormat(v: string, field = '--format'): ReportFormat {
  if ((REPORT_FORMATS as readonly string[]).includes(v)) return v as ReportFormat;
  throw new ValidationError(
    field,
    `${field}: unknown format ${JSON.stringify(v)}; allowed: ${REPORT_FORMATS.join(', ')}`,
  );
}

/**
 * The report in `format`. With `ranks`, the sweep's rank profile too: markdown appends its tables,
 * JSON adds it as `rankProfile`, and CSV is the profile's own long table instead of the rows.
 */
export function formatReport(
  report: Report,
  format: ReportFormat,
  ranks?: { profile: RankProfile; values?: RankValues },
): string {
  switch (format) {
    case 'md':
      return ranks
        ? `${toMarkdown(report)}\n${rankProfileMarkdown(ranks.profile, ranks.values)}`
        : toMarkdown(report);
    case 'csv':
      return ranks ? rankProfileCsv(ranks.profile) : toCsv(report);
    case 'json':
      return `${JSON.stringify(ranks ? { ...report, rankProfile: ranks.profile } : report, null, 2)}\n`;
  }
}

/** "mean +- std" with `digits` decimals, scaled by `scale`; '-' when there is no value. */
export function fmtStat(s: Stat, digits: number, scale = 1): string {
  if (s.mean === null) return '-';
  const m = (s.mean * scale).toFixed(digits);
  return s.std === null ? m : `${m} ± ${(s.std * scale).toFixed(digits)}`;
}

function fmtNum(v: number | null, digits: number): string {
  return v === null ? '-' : v.toFixed(digits);
}

function fmtSigned(v: number | null, digits: number): string {
  return v === null ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
}

function notOk(r: ReportEntry): string {
  const parts: string[] = [];
  for (const s of ['failed', 'diverged', 'running', 'pending', 'cancelled'] as const)
    if (r.status[s] > 0) parts.push(`${r.status[s]} ${s}`);
  return parts.join(', ');
}

function label(r: ReportEntry): string {
  return r.isBaseline ? 'baseline (uncompressed)' : `${r.method} ${r.decomposition ?? ''}`.trim();
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function toMarkdown(report: Report): string {
  const paper = report.reproduces !== null;
  const t = report.totals;
  const out: string[] = [];
  out.push(`# flatrank report: ${report.sweep}`, '');
  out.push(
    `${t.trials} trials: ${t.succeeded} succeeded, ${t.failed} failed, ${t.diverged} diverged, ${t.running} running, ${t.pending} pending, ${t.cancelled} cancelled.`,
    '',
  );
  const head = [
    '',
    'method',
    'rank',
    'variant',
    'n',
    'params ×',
    'MACs ×',
    'latency ×',
    'acc. after decomp. %',
    'final acc. %',
    'vs base pts',
  ];
  // Comparable per-layer errors exist for distort trials recorded since the first / final
  // distortion errors were (older ones hold only the final projection's): only then is the column shown.
  const errors = report.rows.some((r) => r.method === 'distort' && r.decompositionError.mean !== null);
  if (errors) head.splice(head.indexOf('acc. after decomp. %'), 0, 'decomp. err.');
  if (paper) head.push('paper % (other net / data)', 'Δ pts');
  head.push('wall s', 'not done');
  out.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  for (const r of report.rows) {
    const final = fmtStat(r.accuracyFinal, 2, 100);
    const cells = [
      r.best ? '★' : '',
      label(r),
      r.rank ?? '',
      r.variant,
      String(r.accuracyFinal.n),
      r.isBaseline ? '1' : fmtStat(r.paramsRatio, 2),
      r.isBaseline ? '1' : fmtStat(r.macsRatio, 2),
      fmtStat(r.latencyRatio, 2),
      ...(errors ? [fmtStat(r.decompositionError, 3)] : []),
      fmtStat(r.accuracyAfterDecomposition, 2, 100),
      r.best ? `**${final}**` : final,
      fmtSigned(r.vsBaseline, 2),
    ];
    if (paper)
      cells.push(r.paper ? fmtNum(r.paper.accuracy, 2) : '', r.paper ? fmtSigned(r.paper.delta, 2) : '');
    cells.push(fmtStat(r.wallSeconds, 1), notOk(r));
    out.push(`| ${cells.map(mdEscape).join(' | ')} |`);
  }
  out.push('');
  out.push(
    `Mean ± sample std over seeds (n = succeeded trials).${errors ? " decomp. err.: mean relative error ‖K − K'‖ / ‖K‖ over the compressed layers (distort: its first distortion, of the kernels it starts from; finetune / posttrain: the decomposition that is fine-tuned / evaluated; trp: its final projection)." : ''} × columns: before / after (params and multiply-adds of the whole model; latency measured, > 1 means the factored model is faster). ★ / bold: highest mean final accuracy among the rows of the same compression ratio. vs base: mean final accuracy minus that of the uncompressed baseline, in points.`,
  );
  const worse = report.rows.filter((r) => r.worseAfterFineTuning.length > 0);
  if (worse.length > 0) {
    out.push(
      '',
      '⚠ Fine-tuning ended below the accuracy right after decomposition (the recipe made these trials worse than not fine-tuning):',
    );
    for (const r of worse)
      out.push(
        `- ${[label(r), r.rank ?? '', r.variant].filter((s) => s !== '').join(', ')}: seed${r.worseAfterFineTuning.length > 1 ? 's' : ''} ${r.worseAfterFineTuning.join(', ')} (${r.worseAfterFineTuning.length} of ${r.accuracyFinal.n})`,
      );
  }
  if (report.paired) out.push('', ...pairedMarkdown(report.paired));
  if (paper) {
    out.push('', paperSetting(report));
    out.push(
      '',
      `Published numbers: ${report.reproduces} (docs/paper-tables.md). A row is compared with the published row of the same method and decomposition${report.reproduces === 'paper-table1' ? ' and tile size' : ''} whose compression ratio is nearest to ours (${report.reproduces === 'paper-table1' ? 'params of the compressed layers' : 'whole-model params'}, measured), if within ${Math.round(report.matchTolerance * 100)} %. Δ = ours − paper.`,
    );
    if (report.notCovered.length > 0) {
      out.push('', 'Published rows without a counterpart here:');
      for (const p of report.notCovered)
        out.push(`- ${p.method} ${p.decomposition} at ${p.ratio}x: ${p.accuracy.toFixed(2)} % (${p.note})`);
    }
  }
  return `${out.join('\n')}\n`;
}

/** The seed-paired differences as a markdown section. */
function pairedMarkdown(paired: readonly PairedDifference[]): string[] {
  const out = [
    '## Paired differences (same seed)',
    '',
    '| ratio | a | b | seeds | a − b per seed (pts) | mean ± std (pts) | t | p < 0.05 |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const p of paired) {
    const verdict =
      p.verdict === 'a' ? 'a ahead' : p.verdict === 'b' ? 'b ahead' : p.verdict === 'tie' ? 'tie' : '-';
    const cells = [
      p.bucket === null ? 'vs baseline' : `${p.bucket}x`,
      p.a.label,
      p.b.label,
      p.seeds.join(', '),
      p.differences.map((d) => fmtSigned(d, 2)).join(' / '),
      p.mean === null ? '-' : `${fmtSigned(p.mean, 2)}${p.std === null ? '' : ` ± ${p.std.toFixed(2)}`}`,
      p.t === null ? '-' : p.t.toFixed(1),
      verdict,
    ];
    out.push(`| ${cells.map(mdEscape).join(' | ')} |`);
  }
  out.push(
    '',
    "a − b: final test accuracy of row a minus row b for the same seed, in points. t: the mean over its standard error (n − 1 degrees of freedom); 'tie' when |t| is below the two-sided 95 % critical value. Rows are paired within a compression-ratio bucket, and every compressed row against each baseline row.",
  );
  return out;
}

/** What the published numbers were measured on, and whether this sweep's net and data differ. */
function paperSetting(report: Report): string {
  const ours = report.settings.map((s) => `${s.model} on ${s.dataset}`).join(', ') || 'no trials';
  const same =
    report.settings.length > 0 &&
    report.settings.every((s) => s.model === 'resnet32' && s.dataset === 'cifar10');
  return same
    ? `Published numbers: ${PAPER_SETTING}; this sweep: ${ours} (the same net and data set).`
    : `**Different data set and net:** the published numbers are ${PAPER_SETTING}; this sweep is ${ours}. Δ compares outcomes of the same protocol on different problems, not a reproduction of the numbers.`;
}

function csvCell(v: string | number | boolean | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const STAT_COLUMNS = [
  'accuracyFinal',
  'accuracyAfterDecomposition',
  'paramsRatio',
  'macsRatio',
  'latencyRatio',
  'layersRatio',
  'decompositionError',
  'wallSeconds',
] as const;

/** One line per row; every statistic as <name>_mean, <name>_std; accuracies as fractions. */
export function toCsv(report: Report): string {
  const head = [
    'sweep',
    'best',
    'baseline',
    'method',
    'decomposition',
    'rank',
    'variant',
    'target_ratio',
    'n',
    'seeds',
  ];
  for (const c of STAT_COLUMNS) head.push(`${c}_mean`, `${c}_std`);
  head.push(
    'vs_baseline_pts',
    'finetune_worse_than_decomposed',
    'paper_accuracy_pct',
    'paper_ratio',
    'delta_pts',
    'succeeded',
    'failed',
    'diverged',
    'pending',
    'running',
    'cancelled',
    'group',
  );
  const lines = [head.join(',')];
  for (const r of report.rows) {
    const cells: Array<string | number | boolean | null> = [
      report.sweep,
      r.best,
      r.isBaseline,
      r.method,
      r.decomposition,
      r.rank,
      r.variant,
      r.targetRatio,
      r.accuracyFinal.n,
      r.seeds.join(' '),
    ];
    for (const c of STAT_COLUMNS) cells.push(r[c].mean, r[c].std);
    cells.push(
      r.vsBaseline,
      r.worseAfterFineTuning.length,
      r.paper?.accuracy ?? null,
      r.paper?.ratio ?? null,
      r.paper?.delta ?? null,
    );
    cells.push(
      r.status.succeeded,
      r.status.failed,
      r.status.diverged,
      r.status.pending,
      r.status.running,
      r.status.cancelled,
      r.group,
    );
    lines.push(cells.map(csvCell).join(','));
  }
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------- rows (runs, query, export, show)

export type FormatCell = string | number | boolean | null | undefined;
export type FormatRow = Record<string, FormatCell>;

export const OUTPUT_FORMATS = ['table', 'csv', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseFormat(
  value: string | undefined,
  allowed: readonly OutputFormat[] = OUTPUT_FORMATS,
  field = '--format',
): OutputFormat {
  const v = (value ?? allowed[0]!).toLowerCase();
  if (!(allowed as readonly string[]).includes(v))
    throw new ValidationError(
      field,
      `${field}: unknown value ${JSON.stringify(value)}; allowed: ${allowed.join(', ')}`,
    );
  return v as OutputFormat;
}

/** Short, readable cell text: floats with 4 significant digits, 64-hex keys shortened to 12. */
function tableCell(v: FormatCell): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
  }
  if (typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)) return v.slice(0, 12);
  return String(v);
}

export function formatTable(
  rows: readonly FormatRow[],
  columns: readonly string[] = inferColumns(rows),
): string {
  if (columns.length === 0) return '(no columns)\n';
  const cells = rows.map((r) => columns.map((c) => tableCell(r[c]).replace(/\s+/g, ' ')));
  const numeric = columns.map(
    (c) =>
      rows.length > 0 && rows.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === 'number'),
  );
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line([...columns]), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)];
  return `${out.join('\n')}\n(${rows.length} row${rows.length === 1 ? '' : 's'})\n`;
}

function csvField(v: FormatCell): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(v) : String(v);
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

export function formatCsv(
  rows: readonly FormatRow[],
  columns: readonly string[] = inferColumns(rows),
): string {
  const lines = [
    columns.map(csvField).join(','),
    ...rows.map((r) => columns.map((c) => csvField(r[c])).join(',')),
  ];
  return `${lines.join('\r\n')}\r\n`;
}

export function formatJson(
  rows: readonly FormatRow[],
  columns: readonly string[] = inferColumns(rows),
): string {
  const ordered = rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c] ?? null])));
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

export function formatRows(
  format: OutputFormat,
  rows: readonly FormatRow[],
  columns?: readonly string[],
): string {
  const cols = columns ?? inferColumns(rows);
  return format === 'csv'
    ? formatCsv(rows, cols)
    : format === 'json'
      ? formatJson(rows, cols)
      : formatTable(rows, cols);
}

/** Union of the rows' keys, in first-seen order. */
export function inferColumns(rows: readonly FormatRow[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
  return [...seen];
}

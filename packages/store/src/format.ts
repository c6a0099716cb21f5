/**
 * Output formats shared by the read commands (runs, query, export): an aligned text table, RFC 4180
 * CSV, and JSON (an array of row objects).
 */
import { ValidationError } from '@flatrank/protocol';

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

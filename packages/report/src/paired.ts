/**
 * Paired differences between report rows: two configurations compared seed by seed (seed s of one
 * against seed s of the other: they start from the same baseline and see the same data order), the
 * mean difference in points, its sample std and Student's t over the common seeds. Seed-to-seed
 * spread is shared by the two rows of a pair, so the paired t resolves differences that the rows'
 * own ± intervals hide.
 */
import type { ReportRow } from './aggregate.js';
import { describe } from './stats.js';

export interface PairedRowRef {
  /** First 12 hex digits of the row's group key (as in ReportRow.group). */
  group: string;
  /** method decomposition, rank and variant, as the report prints them. */
  label: string;
}

export interface PairedDifference {
  /** The ratio bucket both rows are in; null when one side is a baseline row. */
  bucket: number | null;
  a: PairedRowRef;
  b: PairedRowRef;
  /** Seeds both rows finished, ascending. */
  seeds: number[];
  /** a − b per seed, in percentage points. */
  differences: number[];
  mean: number | null;
  std: number | null;
  /** mean / (std / √n); null with fewer than 2 seeds or zero spread. */
  t: number | null;
  /** Which row is ahead at two-sided p < 0.05 (Student's t, n − 1 df), else 'tie'; null without a t. */
  verdict: 'a' | 'b' | 'tie' | null;
}

/** Two-sided 95 % critical values of Student's t for 1..30 degrees of freedom. */
const T_CRITICAL_95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

export function tCritical95(df: number): number {
  if (!Number.isInteger(df) || df < 1) throw new RangeError(`degrees of freedom must be >= 1, got ${df}`);
  return df <= T_CRITICAL_95.length ? T_CRITICAL_95[df - 1]! : 1.96;
}

/** The row label the paired table prints: what the report's method, rank and variant columns say. */
export function rowLabel(r: ReportRow): string {
  if (r.isBaseline) return ['baseline', r.variant].filter((s) => s !== '').join(' ');
  return [`${r.method} ${r.decomposition ?? ''}`.trim(), r.rank ?? '', r.variant]
    .filter((s) => s !== '')
    .join(', ');
}

/**
 * a − b over the seeds both rows finished. `finalBySeed` maps a row's group (12 hex) to its final
 * accuracy (fraction) per seed.
 */
export function pairRows(
  a: ReportRow,
  b: ReportRow,
  finalBySeed: ReadonlyMap<string, ReadonlyMap<number, number>>,
): PairedDifference {
  const fa = finalBySeed.get(a.group) ?? new Map<number, number>();
  const fb = finalBySeed.get(b.group) ?? new Map<number, number>();
  const seeds = [...fa.keys()].filter((s) => fb.has(s)).sort((x, y) => x - y);
  const differences = seeds.map((s) => (fa.get(s)! - fb.get(s)!) * 100);
  const st = describe(differences);
  const t = st.mean !== null && st.std !== null && st.std > 0 ? st.mean / (st.std / Math.sqrt(st.n)) : null;
  const verdict = t === null ? null : Math.abs(t) >= tCritical95(st.n - 1) ? (t > 0 ? 'a' : 'b') : 'tie';
  return {
    bucket: a.isBaseline || b.isBaseline ? null : a.bucket,
    a: { group: a.group, label: rowLabel(a) },
    b: { group: b.group, label: rowLabel(b) },
    seeds,
    differences,
    mean: st.mean,
    std: st.std,
    t,
    verdict,
  };
}

/**
 * Every pair of compressed rows in the same ratio bucket (in report order: a is the row printed
 * first), then every compressed row against every baseline row (the uncompressed start and, when
 * the sweep has one, the baseline trained as long as the compressed trials: the ceiling).
 */
export function pairedDifferences(
  rows: readonly ReportRow[],
  finalBySeed: ReadonlyMap<string, ReadonlyMap<number, number>>,
): PairedDifference[] {
  const out: PairedDifference[] = [];
  const compressed = rows.filter((r) => !r.isBaseline && r.bucket !== null);
  for (let i = 0; i < compressed.length; i++)
    for (let j = i + 1; j < compressed.length; j++)
      if (compressed[i]!.bucket === compressed[j]!.bucket)
        out.push(pairRows(compressed[i]!, compressed[j]!, finalBySeed));
  const baselines = rows.filter((r) => r.isBaseline);
  for (const base of baselines) for (const r of compressed) out.push(pairRows(r, base, finalBySeed));
  return out.filter((p) => p.seeds.length > 0);
}

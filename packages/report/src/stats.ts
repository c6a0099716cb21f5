/** Small descriptive statistics over seeds. */

export interface Stat {
  /** Number of finite values the statistic is over. */
  n: number;
  mean: number | null;
  /** Sample standard deviation (n - 1 denominator); null when fewer than 2 values. */
  std: number | null;
  min: number | null;
  max: number | null;
}

/** mean / sample std / min / max of the finite values (null and NaN are left out, and not counted). */
export function describe(values: ReadonlyArray<number | null | undefined>): Stat {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const n = xs.length;
  if (n === 0) return { n: 0, mean: null, std: null, min: null, max: null };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  // Two-pass variance: numerically stable for the few values (seeds) we aggregate.
  const std = n < 2 ? null : Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  return { n, mean, std, min: Math.min(...xs), max: Math.max(...xs) };
}

/** a / b, or null when either is missing or b is not positive. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return null;
  return a / b;
}

/**
 * The statistics every suite of this bench folder reports: medians with their spread over rounds,
 * and the order in which peers take turns within a round (so that no peer always runs first, right
 * after a cool-down, or last, after the others warmed the machine up).
 */

/** The median of a non-empty list (the mean of the two middle values for an even length). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  /** (max - min) / median: how far apart the rounds were (0 when the median is 0). */
  relativeRange: number;
  n: number;
}

/** Median, min and max of a non-empty list of measurements (e.g. one value per round). */
export function spread(xs: readonly number[]): Spread {
  const med = median(xs);
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  return { median: med, min, max, relativeRange: med === 0 ? 0 : (max - min) / med, n: xs.length };
}

/**
 * The peers in the order they run in round `round` (0-based): the list rotated left by `round`, so
 * over n rounds every peer runs once in every position, and with two peers they alternate
 * (A B, B A, A B, ...).
 */
export function roundOrder<T>(peers: readonly T[], round: number): T[] {
  if (!Number.isSafeInteger(round) || round < 0)
    throw new RangeError(`round must be an integer >= 0, got ${round}`);
  if (peers.length === 0) return [];
  const k = round % peers.length;
  return [...peers.slice(k), ...peers.slice(0, k)];
}

/** The element-wise ratios a[i] / b[i] of two lists of per-round measurements (paired by round). */
export function pairedRatios(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length)
    throw new RangeError(`paired ratios need lists of equal length, got ${a.length} and ${b.length}`);
  return a.map((x, i) => x / b[i]!);
}

/** x rounded to `digits` significant digits (for the bench tables; 0 and non-finite pass through). */
export function significant(x: number, digits = 4): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  return Number(x.toPrecision(digits));
}

/**
 * Query-string parsing at the HTTP boundary: every parameter is checked against a closed list of
 * names and shapes, and anything else is a ValidationError (the server answers 400 with its message).
 */
import { TRIAL_STATUSES, ValidationError, type TrialStatus } from '@flatrank/protocol';
import {
  MAX_SWEEP_TRIAL_PAGE,
  SWEEP_TRIAL_RANGE_COLUMNS,
  SWEEP_TRIAL_SORTS,
  type SweepTrialColumn,
  type SweepTrialFilter,
  type SweepTrialRange,
} from '@flatrank/store';

/** The parameters of one request, each name at most `repeatable` times. */
export function checkNames(query: URLSearchParams, allowed: readonly string[]): void {
  for (const name of new Set(query.keys()))
    if (!allowed.includes(name))
      throw new ValidationError(
        name,
        `unknown query parameter ${JSON.stringify(name)}; allowed: ${allowed.length ? allowed.join(', ') : '(none)'}`,
      );
}

/** One value (the last if repeated), or undefined. */
function single(query: URLSearchParams, name: string): string | undefined {
  const all = query.getAll(name);
  if (all.length > 1) throw new ValidationError(name, `${name}: given ${all.length} times; give it once`);
  return all[0];
}

/** Comma-separated and / or repeated values; `-` stands for "none" (NULL) where allowed. */
function list(query: URLSearchParams, name: string): string[] | undefined {
  const all = query.getAll(name);
  if (all.length === 0) return undefined;
  const values = all.flatMap((v) => v.split(',')).map((v) => v.trim());
  if (values.some((v) => v === ''))
    throw new ValidationError(name, `${name}: empty value in ${JSON.stringify(all.join(','))}`);
  if (values.length > 100) throw new ValidationError(name, `${name}: at most 100 values`);
  return values;
}

function integer(query: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const v = single(query, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new ValidationError(
      name,
      `${name}: an integer from ${min} to ${max} is required, got ${JSON.stringify(v)}`,
    );
  return n;
}

const nullable = (v: string): string | null => (v === '-' ? null : v);

export const TRIAL_LIST_PARAMS = [
  'status',
  'method',
  'decomposition',
  'rank_policy',
  'sd',
  'scheme',
  'range',
  'sort',
  'order',
  'top',
  'spread',
  'offset',
  'limit',
] as const;

const NUMBER = /^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

/** `column:min:max` (inclusive; min and max decimal numbers). */
function parseRange(v: string): SweepTrialRange {
  const [column, lo, hi, ...rest] = v.split(':');
  const allowed = SWEEP_TRIAL_RANGE_COLUMNS.join(', ');
  if (rest.length > 0 || lo === undefined || hi === undefined)
    throw new ValidationError('range', `range: column:min:max is required, got ${JSON.stringify(v)}`);
  if (!(SWEEP_TRIAL_RANGE_COLUMNS as readonly string[]).includes(column!))
    throw new ValidationError(
      'range',
      `range: unknown column ${JSON.stringify(column)}; allowed: ${allowed}`,
    );
  const min = Number(lo);
  const max = Number(hi);
  if (!NUMBER.test(lo) || !NUMBER.test(hi) || !Number.isFinite(min) || !Number.isFinite(max) || min > max)
    throw new ValidationError(
      'range',
      `range: ${column}: two numbers min <= max are required, got ${JSON.stringify(`${lo}:${hi}`)}`,
    );
  return { column: column as SweepTrialRange['column'], min, max };
}

/** `GET /api/sweeps/:name/trials` parameters as the store's filter. */
export function parseTrialListQuery(query: URLSearchParams): SweepTrialFilter {
  checkNames(query, TRIAL_LIST_PARAMS);
  const status = list(query, 'status');
  for (const s of status ?? [])
    if (!(TRIAL_STATUSES as readonly string[]).includes(s))
      throw new ValidationError(
        'status',
        `status: unknown value ${JSON.stringify(s)}; allowed: ${TRIAL_STATUSES.join(', ')}`,
      );
  const sd = list(query, 'sd')?.map((v) => {
    if (v === '-') return null;
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1)
      throw new ValidationError(
        'sd',
        `sd: a positive integer (S_D) or - (none) is required, got ${JSON.stringify(v)}`,
      );
    return n;
  });
  const sort = single(query, 'sort');
  if (sort !== undefined && !(SWEEP_TRIAL_SORTS as readonly string[]).includes(sort))
    throw new ValidationError(
      'sort',
      `sort: unknown column ${JSON.stringify(sort)}; allowed: ${SWEEP_TRIAL_SORTS.join(', ')}`,
    );
  const order = single(query, 'order');
  if (order !== undefined && order !== 'asc' && order !== 'desc')
    throw new ValidationError('order', `order: asc or desc, got ${JSON.stringify(order)}`);
  const filter: SweepTrialFilter = {
    offset: integer(query, 'offset', 0, Number.MAX_SAFE_INTEGER) ?? 0,
    limit: integer(query, 'limit', 1, MAX_SWEEP_TRIAL_PAGE) ?? 100,
  };
  const top = integer(query, 'top', 1, Number.MAX_SAFE_INTEGER);
  if (top !== undefined) filter.top = top;
  const spread = integer(query, 'spread', 0, MAX_SWEEP_TRIAL_PAGE);
  if (spread !== undefined) filter.spread = spread;
  const scheme = list(query, 'scheme')?.map(nullable);
  if (scheme) filter.scheme = scheme;
  const ranges = list(query, 'range')?.map(parseRange);
  if (ranges) filter.ranges = ranges;
  if (status) filter.status = status as TrialStatus[];
  const method = list(query, 'method');
  if (method) filter.method = method;
  const decomposition = list(query, 'decomposition')?.map(nullable);
  if (decomposition) filter.decomposition = decomposition;
  const rankPolicy = list(query, 'rank_policy')?.map(nullable);
  if (rankPolicy) filter.rankPolicy = rankPolicy;
  if (sd) filter.distortionInterval = sd;
  if (sort !== undefined) filter.sort = sort as SweepTrialColumn;
  if (order !== undefined) filter.order = order;
  return filter;
}

const KEY_PREFIX = /^[0-9a-f]{4,64}$/;

/** A trial key or unique prefix (4-64 lowercase hex characters). */
export function parseTrialKey(v: string, field = 'trial'): string {
  if (!KEY_PREFIX.test(v))
    throw new ValidationError(
      field,
      `${field}: a trial key or prefix of 4-64 hex digits is required, got ${JSON.stringify(v)}`,
    );
  return v;
}

/** `GET /api/compare?keys=a,b,...`: 2 to 6 distinct trial keys or prefixes. */
export function parseCompareQuery(query: URLSearchParams): string[] {
  checkNames(query, ['keys']);
  const keys = list(query, 'keys');
  if (!keys || keys.length < 2 || keys.length > 6)
    throw new ValidationError(
      'keys',
      `keys: 2 to 6 comma-separated trial keys are required, got ${keys?.length ?? 0}`,
    );
  const parsed = keys.map((k) => parseTrialKey(k.toLowerCase(), 'keys'));
  if (new Set(parsed).size !== parsed.length)
    throw new ValidationError('keys', 'keys: the same trial is given twice');
  return parsed;
}

/**
 * Reads behind `flatrank serve` (the read-only dashboard; ResultsStore.sweepOverviews /
 * sweepTrialPage / dataVersion): every sweep's progress in one pass, and a sweep's current trials as
 * a filtered, sorted list of plain value arrays, paged (the trial table) or spread over the sorted
 * list (a bounded, deterministic sample of a 10k-trial sweep for parallel coordinates); arrays
 * instead of row objects because building JS objects, not SQLite, bounds wide reads.
 * Everything a caller passes is validated here and bound as a parameter, never spliced into SQL.
 */
import { TRIAL_STATUSES, ValidationError, type TrialStatus } from '@flatrank/protocol';
import type { StoreContext } from './context.js';
import { checkOneOf, checkStatus } from './rows.js';

export interface SweepOverview {
  id: number;
  name: string;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  /** The spec's `description`, when it has a string one. */
  description: string | null;
  /** Current points (latest spec) by status, and their total. */
  counts: Record<TrialStatus, number> & { trials: number };
  /** Mean duration of the succeeded trials (ms), null before the first one. */
  succeededMeanMs: number | null;
  /**
   * Changes whenever what the sweep's report or trial list shows can have changed: a trial of it
   * changed status (counts and summed durations by status), its spec was updated or finished, or
   * a result was written (the newest results row). Heartbeats and metrics leave it alone, so a
   * reader can keep a sweep's derived data while a study writes progress.
   */
  revision: string;
}

/** Every sweep with its progress, in creation order: three statements whatever the sweep sizes. */
export function sweepOverviews(ctx: StoreContext): SweepOverview[] {
  const sweeps = ctx
    .stmt(
      `SELECT id, name, created_at, updated_at, finished_at,
              CASE WHEN json_valid(spec_resolved) THEN json_extract(spec_resolved, '$.description') END AS description
       FROM sweeps ORDER BY id`,
    )
    .all() as Array<{
    id: number;
    name: string;
    created_at: number;
    updated_at: number;
    finished_at: number | null;
    description: unknown;
  }>;
  const counts = ctx
    .stmt(
      'SELECT sweep_id, status, trials, timed, time_ms FROM sweep_status_counts ORDER BY sweep_id, status',
    )
    .all() as Array<{
    sweep_id: number;
    status: TrialStatus;
    trials: number;
    timed: number;
    time_ms: number;
  }>;
  // Results are inserted once per trial (never updated), so the newest id moves with every new one.
  const newestResult = ctx.stmt('SELECT max(id) FROM results').pluck().get() as number | null;
  const bySweep = new Map<number, SweepOverview>();
  const parts = new Map<number, string[]>();
  const out = sweeps.map((s) => {
    const o: SweepOverview = {
      id: s.id,
      name: s.name,
      createdAt: s.created_at,
      updatedAt: s.updated_at,
      finishedAt: s.finished_at,
      description: typeof s.description === 'string' ? s.description : null,
      counts: { ...emptyCounts(), trials: 0 },
      succeededMeanMs: null,
      revision: '',
    };
    bySweep.set(s.id, o);
    parts.set(s.id, [`${s.updated_at}`, `${s.finished_at}`, `${newestResult}`]);
    return o;
  });
  for (const c of counts) {
    const o = bySweep.get(c.sweep_id);
    if (!o || !(TRIAL_STATUSES as readonly string[]).includes(c.status)) continue;
    o.counts[c.status] += c.trials;
    o.counts.trials += c.trials;
    if (c.status === 'succeeded' && c.timed > 0) o.succeededMeanMs = c.time_ms / c.timed;
    parts.get(c.sweep_id)!.push(`${c.status}:${c.trials}:${c.timed}:${c.time_ms}`);
  }
  for (const o of out) o.revision = parts.get(o.id)!.join(' ');
  return out;
}

function emptyCounts(): Record<TrialStatus, number> {
  return Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
}

/** The numeric columns of the list: those a range filter applies to (parallel-coordinates brushing). */
export const SWEEP_TRIAL_RANGE_COLUMNS = [
  'target_ratio',
  'distortion_interval',
  'seed',
  'lr',
  'epochs',
  'batch_size',
  'accuracy_final',
  'accuracy_after_decomposition',
  'params_ratio',
  'macs_ratio',
  'wall_seconds',
  'attempts',
] as const;
export type SweepTrialRangeColumn = (typeof SWEEP_TRIAL_RANGE_COLUMNS)[number];

/** Columns of a sweep trial list row, in the order of the value arrays: the text ones, then the numeric. */
export const SWEEP_TRIAL_COLUMNS = [
  'key',
  'status',
  'method',
  'decomposition',
  'scheme',
  'rank_policy',
  ...SWEEP_TRIAL_RANGE_COLUMNS,
] as const;
export type SweepTrialColumn = (typeof SWEEP_TRIAL_COLUMNS)[number];

/** Sortable columns of the list (all but the key). */
export const SWEEP_TRIAL_SORTS: readonly SweepTrialColumn[] = SWEEP_TRIAL_COLUMNS.filter((c) => c !== 'key');

/** `min <= column <= max`; a NULL value is outside every range. */
export interface SweepTrialRange {
  column: SweepTrialRangeColumn;
  min: number;
  max: number;
}

export interface SweepTrialFilter {
  status?: readonly TrialStatus[];
  method?: readonly string[];
  /** `null` in the list matches trials without a decomposition (the baseline). */
  decomposition?: ReadonlyArray<string | null>;
  scheme?: ReadonlyArray<string | null>;
  rankPolicy?: ReadonlyArray<string | null>;
  distortionInterval?: ReadonlyArray<number | null>;
  /** Ranges on one column are alternatives (any of them); ranges on different columns all apply. */
  ranges?: readonly SweepTrialRange[];
  sort?: SweepTrialColumn;
  order?: 'asc' | 'desc';
  /** Only the first `top` rows of the sorted list count (a top-k): `total` is at most `top`. */
  top?: number;
  /**
   * Instead of the page at `offset`: at most `limit` rows spread over the whole sorted list, its
   * first `spread` rows and then every n-th row of the rest (n as small as fits): a deterministic
   * sample that keeps the best rows and the shape of the rest (parallel coordinates of 10k trials).
   */
  spread?: number;
  offset?: number;
  /** At most MAX_SWEEP_TRIAL_PAGE; default 100. */
  limit?: number;
}

export const MAX_SWEEP_TRIAL_PAGE = 50_000;

export interface SweepTrialPage {
  columns: readonly SweepTrialColumn[];
  /** Matching trials in all pages (at most `top` when given). */
  total: number;
  rows: unknown[][];
  /** With `spread`: the rows are the first `head` of the `total`, then every `step`-th of the rest. */
  spread?: { head: number; step: number };
}

/** Where each column comes from: the trial row, or its result (NULL until it succeeded). */
const RESULT_COLUMNS: ReadonlySet<SweepTrialColumn> = new Set([
  'accuracy_final',
  'accuracy_after_decomposition',
  'params_ratio',
  'macs_ratio',
  'wall_seconds',
]);
const columnSql = (c: SweepTrialColumn) => (RESULT_COLUMNS.has(c) ? `r.${c}` : `t.${c}`);
const SELECT_COLUMNS = SWEEP_TRIAL_COLUMNS.map(columnSql).join(', ');

/** `column IN (...)` over bound values, with NULL handled as IS NULL. */
function inList(column: string, values: ReadonlyArray<unknown>, params: unknown[]): string {
  const nonNull = values.filter((v) => v !== null);
  const parts: string[] = [];
  if (nonNull.length > 0) {
    parts.push(`${column} IN (${nonNull.map(() => '?').join(', ')})`);
    params.push(...nonNull);
  }
  if (nonNull.length < values.length) parts.push(`${column} IS NULL`);
  return parts.length === 0 ? '0' : `(${parts.join(' OR ')})`;
}

function positiveInteger(field: string, v: number | undefined, min = 1): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < min))
    throw new ValidationError(field, `${field}: an integer >= ${min} is required, got ${v}`);
}

function checkFilter(filter: SweepTrialFilter): { offset: number; limit: number } {
  const offset = filter.offset ?? 0;
  const limit = filter.limit ?? 100;
  if (!Number.isInteger(offset) || offset < 0)
    throw new ValidationError('offset', `offset: a non-negative integer is required, got ${offset}`);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SWEEP_TRIAL_PAGE)
    throw new ValidationError(
      'limit',
      `limit: an integer from 1 to ${MAX_SWEEP_TRIAL_PAGE} is required, got ${limit}`,
    );
  for (const s of filter.status ?? []) checkStatus(s, 'status');
  if (filter.sort !== undefined) checkOneOf('sort', filter.sort, SWEEP_TRIAL_SORTS, 'column');
  if (filter.order !== undefined && filter.order !== 'asc' && filter.order !== 'desc')
    throw new ValidationError('order', `order: asc or desc, got ${JSON.stringify(filter.order)}`);
  for (const r of filter.ranges ?? []) {
    checkOneOf('range', r.column, SWEEP_TRIAL_RANGE_COLUMNS, 'column');
    if (!Number.isFinite(r.min) || !Number.isFinite(r.max) || r.min > r.max)
      throw new ValidationError(
        'range',
        `range: ${r.column} needs finite min <= max, got ${r.min} to ${r.max}`,
      );
  }
  positiveInteger('top', filter.top);
  positiveInteger('spread', filter.spread, 0);
  if (filter.spread !== undefined) {
    if (offset !== 0)
      throw new ValidationError('offset', 'offset: a spread sample covers the whole list; give no offset');
    if (filter.spread > limit)
      throw new ValidationError('spread', `spread: at most limit (${limit}) rows, got ${filter.spread}`);
  }
  return { offset, limit };
}

export interface SweepTrialStatements {
  /** Counts the matching trials; joins only the tables its conditions read. */
  count: { sql: string; params: unknown[] };
  /** The sorted rows: after `params`, [limit, offset] for a page, [total, head, head, step, limit] with `spread`. */
  rows: { sql: string; params: unknown[] };
}

/**
 * The SQL of sweepTrialPage (also what its query-plan test reads). Every lookup is by key: the
 * sweep's memberships by the sweep_trials primary key, each trial by id, its result by the unique
 * results(trial_id); sorting by a column sorts the matching rows once (no index spans the join),
 * the default order is the membership key's own.
 */
export function sweepTrialStatements(sweepId: number, filter: SweepTrialFilter): SweepTrialStatements {
  const params: unknown[] = [sweepId];
  const conds = ['st.sweep_id = ?', 'st.active = 1'];
  const trialFilters: Array<[string, ReadonlyArray<unknown> | undefined]> = [
    ['t.status', filter.status],
    ['t.method', filter.method],
    ['t.decomposition', filter.decomposition],
    ['t.scheme', filter.scheme],
    ['t.rank_policy', filter.rankPolicy],
    ['t.distortion_interval', filter.distortionInterval],
  ];
  let needsTrials = false;
  for (const [column, values] of trialFilters)
    if (values) {
      conds.push(inList(column, values, params));
      needsTrials = true;
    }
  const byColumn = new Map<SweepTrialRangeColumn, SweepTrialRange[]>();
  for (const r of filter.ranges ?? []) byColumn.set(r.column, [...(byColumn.get(r.column) ?? []), r]);
  for (const [column, ranges] of byColumn) {
    conds.push(`(${ranges.map(() => `${columnSql(column)} BETWEEN ? AND ?`).join(' OR ')})`);
    for (const r of ranges) params.push(r.min, r.max);
  }
  const where = conds.join(' AND ');
  const needsResults = [...byColumn.keys()].some((c) => RESULT_COLUMNS.has(c));
  if (byColumn.size > 0) needsTrials = true;
  const countFrom = `FROM sweep_trials st${needsTrials ? ' JOIN trials t ON t.id = st.trial_id' : ''}${
    needsResults ? ' LEFT JOIN results r ON r.trial_id = t.id' : ''
  }`;
  const joins = 'JOIN trials t ON t.id = st.trial_id LEFT JOIN results r ON r.trial_id = t.id';
  const from = `FROM sweep_trials st ${joins} WHERE ${where}`;
  // Sorting and sampling read only (trial id, sort value); the 18 columns are read for the rows
  // kept (a 10k-row sort of whole rows cost twice as much). The sort column is one of a closed
  // list (checked by the caller), so naming it in SQL is safe.
  const sortSql = filter.sort ? columnSql(filter.sort) : null;
  const dir = filter.order === 'desc' ? 'DESC' : 'ASC';
  const order = (key: string, id: string) => (key ? `${key} IS NULL, ${key} ${dir}, ${id}` : `${id} ${dir}`);
  const outer = `FROM picked p JOIN trials t ON t.id = p.id LEFT JOIN results r ON r.trial_id = t.id`;
  let rows: string;
  if (filter.spread !== undefined)
    rows = `WITH picked AS (SELECT st.trial_id AS id, row_number() OVER (ORDER BY ${order(sortSql ?? '', 'st.trial_id')}) AS rn ${from})
      SELECT ${SELECT_COLUMNS} ${outer}
      WHERE p.rn <= ? AND (p.rn <= ? OR (p.rn - ? - 1) % ? = 0) ORDER BY p.rn LIMIT ?`;
  else if (sortSql)
    rows = `WITH picked AS (SELECT st.trial_id AS id, ${sortSql} AS k ${from} ORDER BY ${order(sortSql, 'st.trial_id')} LIMIT ? OFFSET ?)
      SELECT ${SELECT_COLUMNS} ${outer} ORDER BY ${order('p.k', 'p.id')}`;
  // In the membership key's order: the first rows of the primary key range, no sort at all.
  else rows = `SELECT ${SELECT_COLUMNS} ${from} ORDER BY ${order('', 'st.trial_id')} LIMIT ? OFFSET ?`;
  return {
    count: { sql: `SELECT count(*) ${countFrom} WHERE ${where}`, params },
    rows: { sql: rows, params },
  };
}

/**
 * The sweep's current trials (points of its latest spec) matching the filter, one value array per
 * trial in SWEEP_TRIAL_COLUMNS order, sorted (ties and the default: trial id), paged or spread.
 */
export function sweepTrialPage(
  ctx: StoreContext,
  sweepId: number,
  filter: SweepTrialFilter = {},
): SweepTrialPage {
  const { offset, limit } = checkFilter(filter);
  const q = sweepTrialStatements(sweepId, filter);
  const matching = ctx
    .stmt(q.count.sql)
    .pluck()
    .get(...q.count.params) as number;
  const total = filter.top === undefined ? matching : Math.min(matching, filter.top);
  const rowsOf = (...extra: unknown[]) =>
    ctx
      .stmt(q.rows.sql)
      .raw()
      .all(...q.rows.params, ...extra) as unknown[][];
  if (filter.spread === undefined) {
    const take = Math.max(0, Math.min(limit, total - offset));
    return { columns: SWEEP_TRIAL_COLUMNS, total, rows: take === 0 ? [] : rowsOf(take, offset) };
  }
  // The first `head` rows, then every step-th of the remaining total - head, within `limit`.
  const head = total <= limit ? total : filter.spread;
  const step = total <= limit || limit === head ? 1 : Math.ceil((total - head) / (limit - head));
  return {
    columns: SWEEP_TRIAL_COLUMNS,
    total,
    rows: total === 0 ? [] : rowsOf(total, head, head, step, limit),
    spread: { head, step },
  };
}

/**
 * SQLite's `PRAGMA data_version` of this connection: it changes when another connection commits, so
 * a reader can keep a derived value (a sweep's report) until the database changed under it.
 */
export function dataVersion(ctx: StoreContext): number {
  return ctx.db.pragma('data_version', { simple: true }) as number;
}

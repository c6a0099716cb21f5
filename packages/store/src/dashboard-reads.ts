/**
 * Reads behind `flatrank serve` (the read-only dashboard; ResultsStore.sweepOverviews /
 * sweepTrialPage / dataVersion): every sweep's progress in one pass, and a sweep's current trials as
 * a filtered, paged list of plain value arrays (a 10k-trial sweep's parallel-coordinates data is one
 * call; arrays instead of row objects because building JS objects, not SQLite, bounds wide reads).
 * Everything a caller passes is validated here and bound as a parameter, never spliced into SQL.
 */
import { TRIAL_STATUSES, ValidationError, type TrialStatus } from '@flatrank/protocol';
import type { StoreContext } from './context.js';

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
}

/** Every sweep with its progress, in creation order: two statements whatever the sweep sizes. */
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
    .stmt('SELECT sweep_id, status, trials, timed, time_ms FROM sweep_status_counts')
    .all() as Array<{
    sweep_id: number;
    status: TrialStatus;
    trials: number;
    timed: number;
    time_ms: number;
  }>;
  const bySweep = new Map<number, SweepOverview>();
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
    };
    bySweep.set(s.id, o);
    return o;
  });
  for (const c of counts) {
    const o = bySweep.get(c.sweep_id);
    if (!o || !(TRIAL_STATUSES as readonly string[]).includes(c.status)) continue;
    o.counts[c.status] += c.trials;
    o.counts.trials += c.trials;
    if (c.status === 'succeeded' && c.timed > 0) o.succeededMeanMs = c.time_ms / c.timed;
  }
  return out;
}

function emptyCounts(): Record<TrialStatus, number> {
  return Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
}

/** Columns of a sweep trial list row, in the order of the value arrays. */
export const SWEEP_TRIAL_COLUMNS = [
  'key',
  'status',
  'method',
  'decomposition',
  'scheme',
  'rank_policy',
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
export type SweepTrialColumn = (typeof SWEEP_TRIAL_COLUMNS)[number];

/** Sortable columns of the list (all but the key). */
export const SWEEP_TRIAL_SORTS: readonly SweepTrialColumn[] = SWEEP_TRIAL_COLUMNS.filter((c) => c !== 'key');

export interface SweepTrialFilter {
  status?: readonly TrialStatus[];
  method?: readonly string[];
  /** `null` in the list matches trials without a decomposition (the baseline). */
  decomposition?: ReadonlyArray<string | null>;
  rankPolicy?: ReadonlyArray<string | null>;
  distortionInterval?: ReadonlyArray<number | null>;
  sort?: SweepTrialColumn;
  order?: 'asc' | 'desc';
  offset?: number;
  /** At most MAX_SWEEP_TRIAL_PAGE; default 100. */
  limit?: number;
}

export const MAX_SWEEP_TRIAL_PAGE = 50_000;

export interface SweepTrialPage {
  columns: readonly SweepTrialColumn[];
  /** Matching trials in all pages. */
  total: number;
  rows: unknown[][];
}

const SELECT_COLUMNS = SWEEP_TRIAL_COLUMNS.map((c) =>
  c === 'accuracy_final' ||
  c === 'accuracy_after_decomposition' ||
  c === 'wall_seconds' ||
  c === 'params_ratio' ||
  c === 'macs_ratio'
    ? `r.${c}`
    : `t.${c}`,
).join(', ');

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

function checkPage(filter: SweepTrialFilter): { offset: number; limit: number } {
  const offset = filter.offset ?? 0;
  const limit = filter.limit ?? 100;
  if (!Number.isInteger(offset) || offset < 0)
    throw new ValidationError('offset', `offset: a non-negative integer is required, got ${offset}`);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SWEEP_TRIAL_PAGE)
    throw new ValidationError(
      'limit',
      `limit: an integer from 1 to ${MAX_SWEEP_TRIAL_PAGE} is required, got ${limit}`,
    );
  for (const s of filter.status ?? [])
    if (!(TRIAL_STATUSES as readonly string[]).includes(s))
      throw new ValidationError(
        'status',
        `status: unknown value ${JSON.stringify(s)}; allowed: ${TRIAL_STATUSES.join(', ')}`,
      );
  if (filter.sort !== undefined && !SWEEP_TRIAL_SORTS.includes(filter.sort))
    throw new ValidationError(
      'sort',
      `sort: unknown column ${JSON.stringify(filter.sort)}; allowed: ${SWEEP_TRIAL_SORTS.join(', ')}`,
    );
  if (filter.order !== undefined && filter.order !== 'asc' && filter.order !== 'desc')
    throw new ValidationError('order', `order: asc or desc, got ${JSON.stringify(filter.order)}`);
  return { offset, limit };
}

/**
 * The sweep's current trials (points of its latest spec) matching the filter, one value array per
 * trial in SWEEP_TRIAL_COLUMNS order, sorted (ties and the default: trial id), paged.
 */
export function sweepTrialPage(
  ctx: StoreContext,
  sweepId: number,
  filter: SweepTrialFilter = {},
): SweepTrialPage {
  const { offset, limit } = checkPage(filter);
  const params: unknown[] = [sweepId];
  const conds = ['st.sweep_id = ?', 'st.active = 1'];
  if (filter.status) conds.push(inList('t.status', filter.status, params));
  if (filter.method) conds.push(inList('t.method', filter.method, params));
  if (filter.decomposition) conds.push(inList('t.decomposition', filter.decomposition, params));
  if (filter.rankPolicy) conds.push(inList('t.rank_policy', filter.rankPolicy, params));
  if (filter.distortionInterval)
    conds.push(inList('t.distortion_interval', filter.distortionInterval, params));
  const from = `FROM sweep_trials st JOIN trials t ON t.id = st.trial_id LEFT JOIN results r ON r.trial_id = t.id
    WHERE ${conds.join(' AND ')}`;
  const total = ctx
    .stmt(`SELECT count(*) ${from}`)
    .pluck()
    .get(...params) as number;
  // The sort column is one of a closed list (checked above), so naming it in SQL is safe.
  const sortColumn = filter.sort
    ? SELECT_COLUMNS.split(', ')[SWEEP_TRIAL_COLUMNS.indexOf(filter.sort)]!
    : 't.id';
  const dir = filter.order === 'desc' ? 'DESC' : 'ASC';
  const rows = ctx
    .stmt(
      `SELECT ${SELECT_COLUMNS} ${from} ORDER BY ${sortColumn} IS NULL, ${sortColumn} ${dir}, t.id LIMIT ? OFFSET ?`,
    )
    .raw()
    .all(...params, limit, offset) as unknown[][];
  return { columns: SWEEP_TRIAL_COLUMNS, total, rows };
}

/**
 * SQLite's `PRAGMA data_version` of this connection: it changes when another connection commits, so
 * a reader can keep a derived value (a sweep's report) until the database changed under it.
 */
export function dataVersion(ctx: StoreContext): number {
  return ctx.db.pragma('data_version', { simple: true }) as number;
}

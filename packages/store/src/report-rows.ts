/**
 * The per-trial inputs of a sweep report, read in one streamed pass (`flatrank report` / `plot`).
 *
 * A report groups trials by their config without the seed (and a start trial replaced by that
 * trial's own group) and averages a few result columns per group. Reading every trial through
 * `listTrials` built ~40-field row objects and parsed every config (100k trials: ~9 s and 140 MB
 * kept, bench `npm run bench -- report`). Here the per-seed parts of the config are already
 * stripped: the writer stores each configuration's shape (its config without seed and start trial
 * key) once in trial_groups and each trial's group and start trial key (schema 9), so the seeds of
 * one configuration share one `shape` string that the caller parses once, and SQLite computes the
 * ratios (and the per-layer params sums of the current attempt), so a row is 15 plain values; rows
 * are handed over one at a time (`iterate()`), never all at once.
 */
import type { TrialStatus } from '@flatrank/protocol';
import type { StoreContext } from './context.js';
import { membershipCondition, type Membership } from './rows.js';

/**
 * One member trial of a sweep as the report needs it (snake_case: straight from SQL). The value
 * columns are set only for a succeeded trial with a results row; ratios are computed as
 * `@flatrank/report`'s ratio() does (a / b as doubles, NULL when either is missing or b <= 0), so
 * they are the same numbers bit for bit.
 */
export interface ReportTrialRow {
  key: string;
  status: TrialStatus;
  seed: number;
  /**
   * The config's JSON without `seed` and `start.trialKey`: equal for the seeds of one configuration
   * (the same string for all the trials of one stored group).
   */
  shape: string;
  /** `start.trialKey` when the trial starts from another trial's checkpoint, else null. */
  start_key: string | null;
  /** 1 for a succeeded trial with a results row (the value columns below are NULL otherwise). */
  ok: 0 | 1;
  accuracy_original: number | null;
  accuracy_after_decomposition: number | null;
  accuracy_final: number | null;
  /** Whole-model params before / after. */
  params_ratio: number | null;
  macs_ratio: number | null;
  /** latency_before_ms / latency_after_ms. */
  latency_ratio: number | null;
  wall_seconds: number | null;
  /** Params before / after summed over the per-layer records of the current attempt (view trial_layers); NULL without any. */
  layers_ratio: number | null;
  /**
   * Mean over the layers of the comparable decomposition error (view trial_layers
   * `decomposition_error`: distort the first distortion's, else relative_error); NULL without any.
   */
  decomposition_error: number | null;
}

/** A member trial that another member starts from: what resolving its group needs. */
export interface ReportStartRow {
  key: string;
  shape: string;
  start_key: string | null;
}

/** A trial's shape and start key computed from its config (what migration 9 stores). */
const SHAPE_OF_CONFIG = `json_remove(t.config, '$.seed', '$.start.trialKey')`;
const START_KEY_OF_CONFIG = `json_extract(t.config, '$.start.trialKey')`;

/**
 * The SQL of a trial's (t) group, its shape when it has no group (`ungroupedShape`), its shape
 * either way (`shape`) and its start key: the stored ones, computed from the config for a trial
 * without a group (written by SQL outside the store) and on a schema-8 database (no trial_groups:
 * a reader does not migrate). Either way the same text, since the writer and the migration store
 * what these expressions give.
 */
function groupingSql(ctx: StoreContext): {
  groupId: string;
  ungroupedShape: string;
  shape: string;
  startKey: string;
} {
  if (!ctx.hasColumn('trials', 'group_id'))
    return {
      groupId: 'NULL',
      ungroupedShape: SHAPE_OF_CONFIG,
      shape: SHAPE_OF_CONFIG,
      startKey: START_KEY_OF_CONFIG,
    };
  const ungroupedShape = `CASE WHEN t.group_id IS NULL THEN ${SHAPE_OF_CONFIG} END`;
  return {
    groupId: 't.group_id',
    ungroupedShape,
    shape: `coalesce((SELECT g.shape FROM trial_groups g WHERE g.id = t.group_id), ${ungroupedShape})`,
    startKey: `CASE WHEN t.group_id IS NULL THEN ${START_KEY_OF_CONFIG} ELSE t.start_trial_key END`,
  };
}

/** A group's shape, read once per group and call (one string for all its trials). */
function groupShapes(ctx: StoreContext): (groupId: number) => string {
  const known = new Map<number, string>();
  return (groupId) => {
    let shape = known.get(groupId);
    if (shape === undefined) {
      shape = ctx.stmt('SELECT shape FROM trial_groups WHERE id = ?').pluck().get(groupId) as string;
      known.set(groupId, shape);
    }
    return shape;
  };
}

const RATIO = (a: string, b: string) => `CASE WHEN ${b} > 0 THEN CAST(${a} AS REAL) / ${b} END`;

/**
 * The sweep's member trials in id order, streamed (the membership key is in trial order, so no sort).
 * `membership` (default `current`): the points of the sweep's latest spec; `all` adds the retired
 * ones (linked by an earlier version of the spec, results kept), `retired` gives only those.
 * One results lookup and one per-layer index range per trial, one trial_groups lookup per group; 16
 * plain values per row, since building the JavaScript row objects is what costs (bench: `npm run
 * bench -- report`).
 */
export function iterateReportTrials(
  ctx: StoreContext,
  sweepId: number,
  opts: { membership?: Membership } = {},
): IterableIterator<ReportTrialRow> {
  const member = membershipCondition(opts.membership);
  const { groupId, ungroupedShape, startKey } = groupingSql(ctx);
  // Values of succeeded trials only (a results row of another status is not averaged).
  const ok = (expr: string) => `CASE WHEN t.status = 'succeeded' THEN ${expr} END`;
  // In the column order of ReportTrialValues.
  const rows = ctx.db
    .prepare(
      `SELECT t.key, t.status, t.seed, ${groupId} AS group_id, ${ungroupedShape} AS shape, ${startKey} AS start_key,
              t.status = 'succeeded' AND r.id IS NOT NULL AS ok,
              ${ok('r.accuracy_original')} AS accuracy_original,
              ${ok('r.accuracy_after_decomposition')} AS accuracy_after_decomposition,
              ${ok('r.accuracy_final')} AS accuracy_final,
              ${ok(RATIO('r.params_before', 'r.params_after'))} AS params_ratio,
              ${ok(RATIO('r.macs_before', 'r.macs_after'))} AS macs_ratio,
              ${ok(RATIO('r.latency_before_ms', 'r.latency_after_ms'))} AS latency_ratio,
              ${ok('r.wall_seconds')} AS wall_seconds,
              ${ok(`(SELECT ${RATIO('sum(l.params_before)', 'sum(l.params_after)')}
                     FROM layers l WHERE l.trial_id = t.id AND l.attempt = t.attempts AND r.id IS NOT NULL)`)} AS layers_ratio,
              ${ok(`(SELECT avg(CASE WHEN t.method = 'distort' THEN l.first_distortion_error ELSE l.relative_error END)
                     FROM layers l WHERE l.trial_id = t.id AND l.attempt = t.attempts AND r.id IS NOT NULL)`)} AS decomposition_error
       FROM sweep_trials st
       JOIN trials t ON t.id = st.trial_id
       LEFT JOIN results r ON r.trial_id = t.id
       WHERE st.sweep_id = ? AND ${member}
       ORDER BY st.trial_id`,
    )
    .raw()
    .iterate(sweepId) as IterableIterator<ReportTrialValues>;
  return toReportTrialRows(rows, groupShapes(ctx));
}

type Value = number | null;
/** key, status, seed, group_id, shape (without a group), start_key, ok, then the nine values. */
type ReportTrialValues = [
  string,
  TrialStatus,
  number,
  number | null,
  string | null,
  string | null,
  0 | 1,
  Value,
  Value,
  Value,
  Value,
  Value,
  Value,
  Value,
  Value,
  Value,
];

/**
 * The rows of iterateReportTrials' SELECT as objects, one at a time (stopping early stops and
 * releases the statement). They come as value arrays: better-sqlite3 builds a named row slower than
 * a literal of one fixed shape here (10k trials: ~30 ms of an ~80 ms read).
 */
function* toReportTrialRows(
  rows: Iterable<ReportTrialValues>,
  shapeOf: (groupId: number) => string,
): Generator<ReportTrialRow, void, undefined> {
  for (const v of rows)
    yield {
      key: v[0],
      status: v[1],
      seed: v[2],
      shape: v[3] === null ? v[4]! : shapeOf(v[3]),
      start_key: v[5],
      ok: v[6],
      accuracy_original: v[7],
      accuracy_after_decomposition: v[8],
      accuracy_final: v[9],
      params_ratio: v[10],
      macs_ratio: v[11],
      latency_ratio: v[12],
      wall_seconds: v[13],
      layers_ratio: v[14],
      decomposition_error: v[15],
    };
}

/**
 * Looks up a member trial by key (the trial another member starts from): its shape and own start
 * key, or undefined when the key is not a member of the sweep (of that membership, default `current`). One indexed lookup per call; the
 * caller asks once per distinct start trial (the few baselines a sweep's fine-tunes start from),
 * instead of scanning every config for start keys up front.
 */
export function reportStartLookup(
  ctx: StoreContext,
  sweepId: number,
  opts: { membership?: Membership } = {},
): (key: string) => ReportStartRow | undefined {
  const member = membershipCondition(opts.membership);
  const { shape, startKey } = groupingSql(ctx);
  const stmt = ctx.db.prepare(
    `SELECT t.key, ${shape} AS shape, ${startKey} AS start_key
     FROM trials t WHERE t.key = ?
       AND EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = ? AND st.trial_id = t.id AND ${member})`,
  );
  return (key) => stmt.get(key, sweepId) as ReportStartRow | undefined;
}

/** The results of one member trial with a results row (view trial_summary), for per-trial reads. */
export interface ReportSummaryRow {
  key: string;
  accuracy_original: number | null;
  accuracy_after_decomposition: number | null;
  accuracy_final: number | null;
  params_before: number | null;
  params_after: number | null;
  macs_before: number | null;
  macs_after: number | null;
  latency_before_ms: number | null;
  latency_after_ms: number | null;
  latency_batch: number | null;
  wall_seconds: number | null;
  steps: number | null;
  epochs: number | null;
}

/** One per-layer record of a member trial's current attempt (view trial_layers). */
export interface ReportLayerRow {
  key: string;
  layer: string;
  params_before: number;
  params_after: number;
  macs_before: number;
  macs_after: number;
  relative_error: number | null;
  first_distortion_error: number | null;
}

/** The results rows of the sweep's member trials (of that membership, default `current`). */
export function reportTrialSummaries(
  ctx: StoreContext,
  sweepId: number,
  opts: { membership?: Membership } = {},
): ReportSummaryRow[] {
  const member = membershipCondition(opts.membership);
  return ctx
    .stmt(
      `SELECT ts.key, ts.accuracy_original, ts.accuracy_after_decomposition, ts.accuracy_final, ts.params_before, ts.params_after,
              ts.macs_before, ts.macs_after, ts.latency_before_ms, ts.latency_after_ms, ts.latency_batch, ts.wall_seconds,
              ts.steps, r.epochs AS epochs
       FROM sweep_trials st JOIN trial_summary ts ON ts.trial_id = st.trial_id LEFT JOIN results r ON r.trial_id = ts.trial_id
       WHERE st.sweep_id = ? AND ${member} AND r.id IS NOT NULL`,
    )
    .all(sweepId) as ReportSummaryRow[];
}

/** The per-layer records of the sweep's member trials, ordered by trial key, then layer name. */
export function reportTrialLayers(
  ctx: StoreContext,
  sweepId: number,
  opts: { membership?: Membership } = {},
): ReportLayerRow[] {
  const member = membershipCondition(opts.membership);
  return ctx
    .stmt(
      `SELECT tl.key, tl.layer, tl.params_before, tl.params_after, tl.macs_before, tl.macs_after,
              tl.relative_error, tl.first_distortion_error
       FROM trial_layers tl JOIN sweep_trials st ON st.trial_id = tl.trial_id
       WHERE st.sweep_id = ? AND ${member} ORDER BY tl.key, tl.layer`,
    )
    .all(sweepId) as ReportLayerRow[];
}

/**
 * One per-layer record of a succeeded member trial's current attempt as the rank profile needs it
 * (`layers` rows in the order the trial reported them: model order).
 */
export interface ReportRankLayerRow {
  key: string;
  seed: number;
  layer: string;
  decomposition: string;
  /** JSON array, as in the layers table: [r] or [R_S, R_T]. */
  ranks: string;
  params_before: number;
  params_after: number;
  macs_before: number;
  macs_after: number;
}

/** The allocation record of a succeeded member trial's current attempt (table allocations). */
export interface ReportAllocationRow {
  key: string;
  seed: number;
  policy: string;
  budget_kind: 'params' | 'macs' | null;
  budget_ratio: number | null;
  achieved_params_ratio: number | null;
  achieved_macs_ratio: number | null;
  /** The whole RankAllocationRecord as JSON. */
  record: string;
}

/** Per-layer records of the sweep's succeeded member trials, in trial order, then reported order. */
export function reportRankLayers(
  ctx: StoreContext,
  sweepId: number,
  opts: { membership?: Membership } = {},
): ReportRankLayerRow[] {
  const member = membershipCondition(opts.membership);
  return ctx
    .stmt(
      `SELECT t.key, t.seed, l.name AS layer, l.decomposition, l.ranks, l.params_before, l.params_after, l.macs_before, l.macs_after
       FROM sweep_trials st
       JOIN trials t ON t.id = st.trial_id AND t.status = 'succeeded'
       JOIN layers l ON l.trial_id = t.id AND l.attempt = t.attempts
       WHERE st.sweep_id = ? AND ${member}
       ORDER BY t.id, l.id`,
    )
    .all(sweepId) as ReportRankLayerRow[];
}

/** Allocation records of the sweep's succeeded member trials (current attempt), in trial order. */
export function reportAllocations(
  ctx: StoreContext,
  sweepId: number,
  opts: { membership?: Membership } = {},
): ReportAllocationRow[] {
  const member = membershipCondition(opts.membership);
  return ctx
    .stmt(
      `SELECT t.key, t.seed, a.policy, a.budget_kind, a.budget_ratio, a.achieved_params_ratio, a.achieved_macs_ratio, a.record
       FROM sweep_trials st
       JOIN trials t ON t.id = st.trial_id AND t.status = 'succeeded'
       JOIN allocations a ON a.trial_id = t.id AND a.attempt = t.attempts
       WHERE st.sweep_id = ? AND ${member}
       ORDER BY t.id`,
    )
    .all(sweepId) as ReportAllocationRow[];
}

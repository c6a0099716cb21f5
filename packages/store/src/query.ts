// Over 500 lines on purpose: the --where grammar, runs/show/export and the guarded user query share one column table.
/**
 * Read-side helpers behind `flatrank runs / show / query / export`: --where parsing into
 * parameterised SQL on known axis columns, run listings, only-changed config keys, trial detail,
 * export rows and the user-SQL runner on a read-only connection.
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import {
  BACKENDS,
  DATASETS,
  DECOMPOSITIONS,
  METHODS,
  MODELS,
  SVD_SCHEMES,
  StoreError,
  TRIAL_STATUSES,
  ValidationError,
  type RankAllocationRecord,
} from '@flatrank/protocol';
import { databaseFault, openDatabase } from './connection.js';
import { contextOf } from './context.js';
import { checkStatus, type TrialRow } from './rows.js';
import type { ResultsStore } from './store.js';

export type Cell = string | number | boolean | null;
export type Row = Record<string, Cell>;

interface AxisDef {
  column: string;
  type: 'text' | 'number';
  /** The closed vocabulary of a text axis (a typo would otherwise silently match nothing). */
  values?: readonly string[];
}

/** The keys `--where` accepts, each mapped to an indexed column of trials (aliases included). */
export const WHERE_AXES: Readonly<Record<string, AxisDef>> = {
  model: { column: 'model', type: 'text', values: MODELS },
  dataset: { column: 'dataset', type: 'text', values: DATASETS },
  method: { column: 'method', type: 'text', values: METHODS },
  decomposition: { column: 'decomposition', type: 'text', values: DECOMPOSITIONS },
  scheme: { column: 'scheme', type: 'text', values: SVD_SCHEMES },
  rank_policy: { column: 'rank_policy', type: 'text' },
  target_ratio: { column: 'target_ratio', type: 'number' },
  ratio: { column: 'target_ratio', type: 'number' },
  distortion_interval: { column: 'distortion_interval', type: 'number' },
  s_d: { column: 'distortion_interval', type: 'number' },
  sd: { column: 'distortion_interval', type: 'number' },
  seed: { column: 'seed', type: 'number' },
  lr: { column: 'lr', type: 'number' },
  learning_rate: { column: 'lr', type: 'number' },
  epochs: { column: 'epochs', type: 'number' },
  batch_size: { column: 'batch_size', type: 'number' },
  status: { column: 'status', type: 'text', values: TRIAL_STATUSES },
  worker: { column: 'worker', type: 'text' },
  backend: { column: 'backend', type: 'text', values: BACKENDS },
};

const OPS = ['!=', '<=', '>=', '=', '<', '>'] as const;
type Op = (typeof OPS)[number];

export interface WhereClause {
  /** SQL over the `t` alias of trials, with ? placeholders only. */
  sql: string;
  params: Array<string | number>;
}

function normaliseKey(k: string): string {
  return k.trim().toLowerCase().replace(/-/g, '_');
}

/**
 * Parses `k=v,k2!=v2,k3>=1.5,seed=1|2` into parameterised conditions on known axis columns
 * (values are always bound, never spliced into SQL). `v|w` means any of; `null` matches NULL.
 */
export function parseWhere(text: string | undefined, field = '--where'): WhereClause {
  const out: WhereClause = { sql: '', params: [] };
  if (text === undefined || text.trim() === '') return out;
  const allowed = Object.keys(WHERE_AXES).join(', ');
  const parts: string[] = [];
  for (const raw of text.split(',')) {
    const term = raw.trim();
    if (term === '') continue;
    let op: Op | undefined;
    let at = -1;
    for (let i = 0; i < term.length && op === undefined; i++) {
      for (const o of OPS) {
        if (term.startsWith(o, i)) {
          op = o;
          at = i;
          break;
        }
      }
    }
    if (op === undefined)
      throw new ValidationError(
        field,
        `${field}: ${JSON.stringify(term)} is not key=value (operators: =, !=, <, <=, >, >=)`,
      );
    const key = normaliseKey(term.slice(0, at));
    const valueText = term.slice(at + op.length).trim();
    const axis = WHERE_AXES[key];
    if (!axis)
      throw new ValidationError(
        field,
        `${field}: unknown key ${JSON.stringify(term.slice(0, at).trim())}; allowed: ${allowed}`,
        { context: { allowed: Object.keys(WHERE_AXES) } },
      );
    if (valueText === '') throw new ValidationError(field, `${field}: ${key} has no value`);
    const alternatives = valueText.split('|').map((v) => v.trim());
    if (alternatives.some((v) => v.toLowerCase() === 'null')) {
      if (alternatives.length !== 1 || (op !== '=' && op !== '!='))
        throw new ValidationError(field, `${field}: ${key}: null can only be used alone with = or !=`);
      parts.push(`t.${axis.column} IS ${op === '=' ? '' : 'NOT '}NULL`);
      continue;
    }
    const values = alternatives.map((v) => {
      if (axis.type === 'text') {
        if (op !== '=' && op !== '!=')
          throw new ValidationError(field, `${field}: ${key} is text; use = or !=`);
        if (axis.values && !axis.values.includes(v)) {
          // e.g. method=cp: cp is a decomposition, not a method; say which key the value belongs to.
          const owner = Object.entries(WHERE_AXES).find(([k, a]) => k !== key && a.values?.includes(v))?.[0];
          throw new ValidationError(
            field,
            `${field}: ${key}: unknown value ${JSON.stringify(v)}; allowed: ${axis.values.join(', ')}${owner ? ` (${JSON.stringify(v)} is a ${owner}: use ${owner}=${v})` : ''}`,
          );
        }
        return v;
      }
      const n = Number(v);
      if (v === '' || !Number.isFinite(n))
        throw new ValidationError(field, `${field}: ${key} must be a number, got ${JSON.stringify(v)}`);
      return n;
    });
    if (values.length > 1) {
      if (op !== '=' && op !== '!=')
        throw new ValidationError(field, `${field}: ${key}: alternatives (a|b) need = or !=`);
      parts.push(`t.${axis.column} ${op === '=' ? 'IN' : 'NOT IN'} (${values.map(() => '?').join(', ')})`);
    } else {
      parts.push(`t.${axis.column} ${op === '=' ? '=' : op} ?`);
    }
    out.params.push(...values);
  }
  out.sql = parts.join(' AND ');
  return out;
}

export interface RunsFilter {
  sweep?: string;
  status?: string;
  where?: string;
}

/** Columns of `flatrank runs`: trial identity, axes, and summary results. */
export const RUN_COLUMNS = [
  'key',
  'sweep',
  'status',
  'attempts',
  'model',
  'dataset',
  'method',
  'decomposition',
  'scheme',
  'rank_policy',
  'target_ratio',
  'distortion_interval',
  'seed',
  'lr',
  'epochs',
  'accuracy_original',
  'accuracy_after_decomposition',
  'accuracy_final',
  'params_ratio',
  'macs_ratio',
  'latency_before_ms',
  'latency_after_ms',
  'wall_seconds',
] as const;

function sweepId(db: Database.Database, name: string): number {
  const id = db.prepare('SELECT id FROM sweeps WHERE name = ?').pluck().get(name) as number | undefined;
  if (id === undefined) {
    const names = db.prepare('SELECT name FROM sweeps ORDER BY id').pluck().all() as string[];
    throw new ValidationError(
      '--sweep',
      `--sweep: no sweep named ${JSON.stringify(name)}; sweeps in this database: ${names.length ? names.join(', ') : '(none)'}`,
    );
  }
  return id;
}

/** The SQL of a run listing (exported for the benchmark, which times exactly what `runs` runs). */
export function runsQuery(
  db: Database.Database,
  filter: RunsFilter,
  /** Extra select expressions over `t` (trials) and `ts` (trial_summary), e.g. 't.config AS __config'. */
  extraSelect: readonly string[] = [],
): { sql: string; params: Array<string | number> } {
  const where = parseWhere(filter.where);
  const status = filter.status === undefined ? undefined : checkStatus(filter.status, '--status');
  const conds: string[] = [];
  const params: Array<string | number> = [];
  if (filter.sweep !== undefined) {
    // Correlated EXISTS is a point lookup per candidate; IN (...) would materialise the whole sweep.
    // Points of the sweep's latest spec (retired memberships: `flatrank query` on sweep_trial_summary.in_spec).
    conds.push(
      'EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = ? AND st.trial_id = t.id AND st.active = 1)',
    );
    params.push(sweepId(db, filter.sweep));
  }
  if (status) {
    conds.push('t.status = ?');
    params.push(status);
  }
  if (where.sql) {
    conds.push(where.sql);
    params.push(...where.params);
  }
  // Filters apply to the trials table (indexed columns); the view supplies the joined columns.
  const cols = [...RUN_COLUMNS.map((c) => `ts.${c}`), ...extraSelect].join(', ');
  const sql = `SELECT ${cols} FROM trials t JOIN trial_summary ts ON ts.trial_id = t.id${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY t.id`;
  return { sql, params };
}

/** The rows of `flatrank runs`. */
export function listRuns(store: ResultsStore, filter: RunsFilter = {}): Row[] {
  const { db } = contextOf(store);
  const { sql, params } = runsQuery(db, filter);
  return db.prepare(sql).all(...params) as Row[];
}

/** Flattens a JSON value into dot-path keys (`training.lr`, `compression.rank.kind`, ...). */
export function flattenConfig(
  value: unknown,
  prefix = '',
  out: Record<string, Cell> = {},
): Record<string, Cell> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0 && prefix) out[prefix] = '{}';
    for (const [k, v] of entries) flattenConfig(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (Array.isArray(value)) {
    out[prefix] = JSON.stringify(value);
  } else {
    out[prefix] = (value ?? null) as Cell;
  }
  return out;
}

/** A key that is null in one config and an object in another: keep only the object's leaves. */
function dropShadowedLeaves(keys: string[]): string[] {
  const set = new Set(keys);
  const parents = new Set<string>();
  for (const k of set)
    for (let i = k.indexOf('.'); i > 0; i = k.indexOf('.', i + 1)) parents.add(k.slice(0, i));
  return keys.filter((k) => !parents.has(k));
}

/** Config keys (dot paths) whose values differ between the given configs, in first-seen order. */
export function changedConfigKeys(configs: ReadonlyArray<unknown>): string[] {
  const flats = configs.map((c) => flattenConfig(c));
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const f of flats)
    for (const k of Object.keys(f))
      if (!seen.has(k)) {
        seen.add(k);
        keys.push(k);
      }
  return dropShadowedLeaves(keys).filter((k) => {
    const first = JSON.stringify(flats[0]?.[k] ?? null);
    return flats.some((f) => JSON.stringify(f[k] ?? null) !== first);
  });
}

const RESULT_COLUMNS = [
  'accuracy_after_decomposition',
  'accuracy_final',
  'params_ratio',
  'macs_ratio',
  'wall_seconds',
] as const;

/** `runs --only-changed`: key, status, the config keys that differ between the trials, results. */
export function listRunsOnlyChanged(
  store: ResultsStore,
  filter: RunsFilter = {},
): { columns: string[]; rows: Row[] } {
  const { db } = contextOf(store);
  const { sql, params } = runsQuery(db, filter, ['t.config AS __config']);
  const raw = db.prepare(sql).all(...params) as Array<Row & { __config: string }>;
  const configs = raw.map((r) => JSON.parse(r.__config) as unknown);
  const changed = changedConfigKeys(configs);
  const flats = configs.map((c) => flattenConfig(c));
  const columns = ['key', 'status', ...changed, ...RESULT_COLUMNS];
  const rows = raw.map((r, i) => {
    const row: Row = { key: r.key ?? null, status: r.status ?? null };
    for (const k of changed) row[k] = flats[i]![k] ?? null;
    for (const k of RESULT_COLUMNS) row[k] = r[k] ?? null;
    return row;
  });
  return { columns, rows };
}

export interface TrialDetail {
  trial: TrialRow;
  sweeps: string[];
  dependsOn: Array<{ key: string; status: string | null }>;
  result: Row | null;
  layers: Row[];
  /** The latest attempt's metric history, in step order. */
  metrics: Array<{
    attempt: number;
    step: number;
    epoch: number;
    phase: string;
    name: string;
    value: number | null;
  }>;
  artifacts: Array<{ kind: string; path: string }>;
  /** How the latest attempt chose its per-layer ranks (allocations table); null when it reported none. */
  allocation: TrialAllocation | null;
}

/** The allocation record of a trial's latest attempt, as stored (see RankAllocationRecord). */
export interface TrialAllocation extends RankAllocationRecord {
  attempt: number;
}

/** Everything `flatrank show` prints about one trial (key or unique prefix). */
export function trialDetail(store: ResultsStore, keyOrPrefix: string): TrialDetail {
  const trial = store.getTrial(keyOrPrefix);
  if (!trial)
    throw new ValidationError(
      'trial',
      `trial: no trial with key or prefix ${JSON.stringify(keyOrPrefix)} in ${store.path} (list keys with: flatrank runs)`,
      { code: 'NOT_FOUND' },
    );
  const { db } = contextOf(store);
  const sweeps = db
    .prepare(
      'SELECT s.name FROM sweep_trials st JOIN sweeps s ON s.id = st.sweep_id WHERE st.trial_id = ? ORDER BY s.id',
    )
    .pluck()
    .all(trial.id) as string[];
  const dependsOn = db
    .prepare(
      'SELECT d.depends_on_key AS key, u.status FROM trial_dependencies d LEFT JOIN trials u ON u.key = d.depends_on_key WHERE d.trial_id = ? ORDER BY d.depends_on_key',
    )
    .all(trial.id) as Array<{ key: string; status: string | null }>;
  const result =
    (db.prepare('SELECT * FROM results WHERE trial_id = ?').get(trial.id) as Row | undefined) ?? null;
  const layers = db
    .prepare(
      `SELECT name AS layer, decomposition, scheme, ranks, raw_ranks, tile, kernel_shape, params_before, params_after,
         macs_before, macs_after, relative_error, lowering_order, iterations, converged, cp_init, cp_seed, cp_fit,
         first_distortion_error, final_distortion_error FROM layers WHERE trial_id = ? AND attempt = ? ORDER BY id`,
    )
    .all(trial.id, trial.attempts) as Row[];
  const metrics = db
    .prepare(
      'SELECT attempt, step, epoch, phase, name, value FROM metrics WHERE trial_id = ? AND attempt = ? ORDER BY step, seq',
    )
    .all(trial.id, trial.attempts) as TrialDetail['metrics'];
  const allocated = db
    .prepare('SELECT attempt, record FROM allocations WHERE trial_id = ? AND attempt = ?')
    .get(trial.id, trial.attempts) as { attempt: number; record: string } | undefined;
  const allocation = allocated
    ? { attempt: allocated.attempt, ...(JSON.parse(allocated.record) as RankAllocationRecord) }
    : null;
  return {
    trial,
    sweeps,
    dependsOn,
    result,
    layers,
    metrics,
    artifacts: store.artifacts(trial.key),
    allocation,
  };
}

/**
 * `flatrank export`: one row per trial of the sweep with the flattened config (config.* columns),
 * status, environment and results. Columns are the union over rows, in a stable order.
 */
export function exportRows(store: ResultsStore, sweep: string): { columns: string[]; rows: Row[] } {
  const { db } = contextOf(store);
  const id = sweepId(db, sweep);
  const raw = db
    .prepare(
      `SELECT t.key, t.status, t.attempts, t.config, t.error, t.git_commit, t.git_dirty, t.node_version, t.backend, t.backend_version,
         t.device_name, t.host, t.worker, t.device, t.started_at, t.finished_at,
         r.accuracy_original, r.accuracy_after_decomposition, r.accuracy_final, r.params_before, r.params_after, r.params_ratio,
         r.macs_before, r.macs_after, r.macs_ratio, r.latency_before_ms, r.latency_after_ms, r.latency_batch, r.wall_seconds, r.steps
       FROM sweep_trials st JOIN trials t ON t.id = st.trial_id LEFT JOIN results r ON r.trial_id = t.id
       WHERE st.sweep_id = ? AND st.active = 1 ORDER BY t.id`,
    )
    .all(id) as Array<Row & { config: string }>;
  const configKeys: string[] = [];
  const seen = new Set<string>();
  const rows = raw.map((r) => {
    const { config, ...rest } = r;
    const flat = flattenConfig(JSON.parse(config));
    const row: Row = { key: rest.key ?? null, status: rest.status ?? null, attempts: rest.attempts ?? null };
    for (const [k, v] of Object.entries(flat)) {
      const col = `config.${k}`;
      if (!seen.has(col)) {
        seen.add(col);
        configKeys.push(col);
      }
      row[col] = v;
    }
    for (const [k, v] of Object.entries(rest)) if (!(k in row)) row[k] = v;
    return row;
  });
  const restCols = raw.length
    ? Object.keys(raw[0]!).filter((k) => !['key', 'status', 'attempts', 'config'].includes(k))
    : [];
  const columns = ['key', 'status', 'attempts', ...dropShadowedLeaves(configKeys), ...restCols];
  const kept = new Set(columns);
  for (const row of rows) for (const k of Object.keys(row)) if (!kept.has(k)) delete row[k];
  for (const row of rows) for (const c of columns) if (!(c in row)) row[c] = null;
  return { columns, rows };
}

export interface QueryResult {
  columns: string[];
  rows: Row[];
}

/**
 * Runs one user SQL statement on a fresh read-only connection (opened readonly and query_only).
 * Any statement that could write (per sqlite3_stmt_readonly), ATTACH/DETACH, or a statement that
 * returns no rows is refused with StoreError 'WRITE_REFUSED' / ValidationError.
 */
export function runUserQuery(file: string, sql: string, params: ReadonlyArray<Cell> = []): QueryResult {
  const { db, path } = openDatabase(file, { readonly: true });
  try {
    const { stmt, columns } = checkedUserStatement(db, path, sql);
    let raw: unknown[];
    try {
      raw = stmt.raw(true).all(...params) as unknown[];
    } catch (e) {
      if (/readonly|read-only|query_only/i.test((e as Error).message)) throw refused(path, sql, e);
      // A damaged or unreadable file is not the user's SQL's fault.
      const fault = databaseFault(e, path);
      if (fault) throw fault;
      throw new ValidationError('sql', `sql: ${(e as Error).message}`, { code: 'SQL_INVALID', cause: e });
    }
    const rows = (raw as unknown[][]).map((vals) => {
      const row: Row = {};
      columns.forEach((c, i) => {
        const v = vals[i];
        row[c] =
          typeof v === 'bigint'
            ? Number(v)
            : Buffer.isBuffer(v)
              ? `x'${v.toString('hex')}'`
              : ((v ?? null) as Cell);
      });
      return row;
    });
    return { columns, rows };
  } finally {
    db.close();
  }
}

/** The user's statement, prepared and checked (one read-only statement that returns rows), and its column names. */
function checkedUserStatement(
  db: Database.Database,
  path: string,
  sql: string,
): { stmt: Database.Statement; columns: string[] } {
  if (typeof sql !== 'string' || sql.trim() === '')
    throw new ValidationError(
      'sql',
      'sql: give one SQL statement, e.g. "SELECT * FROM trial_summary LIMIT 5"',
    );
  let stmt: Database.Statement;
  try {
    stmt = db.prepare(sql);
  } catch (e) {
    const fault = databaseFault(e, path);
    if (fault) throw fault;
    const msg = (e as Error).message;
    if (/more than one statement/i.test(msg))
      throw new ValidationError('sql', 'sql: give exactly one SQL statement (no ";"-separated lists)', {
        cause: e,
      });
    if (/readonly|read-only/i.test(msg)) throw refused(path, sql, e);
    throw new ValidationError('sql', `sql: ${msg}`, { code: 'SQL_INVALID', cause: e });
  }
  if (!stmt.readonly || /^\s*(attach|detach)\b/i.test(sql)) throw refused(path, sql);
  if (!stmt.reader)
    throw new ValidationError(
      'sql',
      'sql: the statement returns no rows; flatrank query runs queries (SELECT, WITH ..., read-only PRAGMA)',
      { code: 'SQL_INVALID' },
    );
  // Joins often repeat a name (id, trial_id): keep every column, suffixing repeats (id, id_2).
  const seenNames = new Map<string, number>();
  const columns = stmt.columns().map((c) => {
    const n = (seenNames.get(c.name) ?? 0) + 1;
    seenNames.set(c.name, n);
    return n === 1 ? c.name : `${c.name}_${n}`;
  });
  return { stmt, columns };
}

/** `flatrank query`'s default time limit. */
export const DEFAULT_QUERY_TIMEOUT_MS = 30_000;

/** The built query child (tests run this module from src/, next to which there is no .js). */
function queryChildEntry(): string {
  const here = fileURLToPath(new URL('./query-child.js', import.meta.url));
  if (existsSync(here)) return here;
  return fileURLToPath(new URL('../dist/query-child.js', import.meta.url));
}

interface ChildReply {
  ok: boolean;
  result?: QueryResult;
  error?: { name: string; message: string; code?: string; field?: string; context?: Record<string, unknown> };
}

function revive(e: NonNullable<ChildReply['error']>): Error {
  const options = { context: e.context };
  if (e.name === 'StoreError') return new StoreError(e.code ?? 'STORE', e.message, options);
  if (e.field !== undefined)
    return new ValidationError(e.field, e.message, { ...options, code: e.code ?? 'INVALID_OPTION' });
  return Object.assign(new Error(e.message), { name: e.name });
}

/**
 * runUserQuery with a time limit: the statement runs in a child process that is killed when
 * `timeoutMs` passes (StoreError 'QUERY_TIMEOUT'); timeoutMs 0 runs it here without a limit.
 */
export async function runUserQueryWithTimeout(
  file: string,
  sql: string,
  options: { timeoutMs?: number; params?: ReadonlyArray<Cell> } = {},
): Promise<QueryResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
  if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0))
    throw new ValidationError('--timeout', `--timeout: must be a number of seconds >= 0, got ${timeoutMs}`);
  const params = [...(options.params ?? [])];
  if (timeoutMs === 0) return runUserQuery(file, sql, params);
  // Open the database and check the statement here first: refusals and errors need no child.
  const { db, path } = openDatabase(file, { readonly: true });
  try {
    checkedUserStatement(db, path, sql);
  } finally {
    db.close();
  }
  const child = fork(queryChildEntry(), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  return new Promise<QueryResult>((resolvePromise, reject) => {
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(() =>
        reject(
          new StoreError(
            'QUERY_TIMEOUT',
            `query stopped after ${timeoutMs / 1000} s (--timeout ${timeoutMs / 1000}); nothing was changed. Narrow it (LIMIT, a WHERE on indexed columns such as sweep, method, seed; a recursive CTE needs a stop condition), or allow more time with --timeout SECONDS (0 = no limit).`,
            { context: { path: file, timeoutMs, sql } },
          ),
        ),
      );
    }, timeoutMs);
    child.once('message', (reply: ChildReply) =>
      settle(() => (reply.ok ? resolvePromise(reply.result!) : reject(revive(reply.error!)))),
    );
    child.once('error', (e) => settle(() => reject(e)));
    child.once('exit', (code, signal) =>
      settle(() =>
        reject(
          new StoreError(
            'QUERY_FAILED',
            `the query process ended without an answer (${signal ?? `exit code ${code}`}) on ${file}`,
            { context: { path: file, code, signal } },
          ),
        ),
      ),
    );
    child.send({ file, sql, params });
  });
}

function refused(path: string, sql: string, cause?: unknown): StoreError {
  return new StoreError(
    'WRITE_REFUSED',
    `query refused: flatrank query is read-only and this statement would modify ${path} (${sql.trim().split(/\s+/).slice(0, 3).join(' ')} ...). Use SELECT / WITH queries; the database is written only by the sweep coordinator.`,
    { context: { path, sql }, cause },
  );
}

// Over 500 lines on purpose: migrations are appended, never edited, and each restates the SQL it replaces.
/**
 * The versioned schema of a flatrank database. Each migration runs once, in its own BEGIN IMMEDIATE
 * transaction, by the process that owns the database (the coordinator). PRAGMA user_version holds
 * the applied version; the schema_migrations table records when each step ran; PRAGMA
 * application_id marks the file as a flatrank database so that a foreign SQLite file is refused.
 *
 * The tables and views are a public SQL surface (packages/store/README.md): change them only by
 * appending a migration, never by editing an applied one.
 */
import type Database from 'better-sqlite3';

/** 'FLRK' as a big-endian 32-bit integer: the SQLite header's application_id of flatrank files. */
export const FLATRANK_APPLICATION_ID = 0x464c524b;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const V1_BASE_TABLES = `
CREATE TABLE schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at INTEGER NOT NULL
);

CREATE TABLE sweeps (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  spec_text     TEXT NOT NULL,
  spec_resolved TEXT NOT NULL,
  spec_hash     TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  finished_at   INTEGER
);

CREATE TABLE trials (
  id                   INTEGER PRIMARY KEY,
  sweep_id             INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  key                  TEXT NOT NULL UNIQUE,
  config               TEXT NOT NULL,
  model                TEXT NOT NULL,
  dataset              TEXT NOT NULL,
  method               TEXT NOT NULL,
  decomposition        TEXT,
  scheme               TEXT,
  rank_policy          TEXT,
  target_ratio         REAL,
  distortion_interval  INTEGER,
  seed                 INTEGER NOT NULL,
  lr                   REAL NOT NULL,
  epochs               INTEGER NOT NULL,
  batch_size           INTEGER NOT NULL,
  status               TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending','running','succeeded','failed','diverged','cancelled')),
  attempts             INTEGER NOT NULL DEFAULT 0,
  retryable            INTEGER NOT NULL DEFAULT 1,
  worker               TEXT,
  device               TEXT,
  lease_expires_at     INTEGER,
  heartbeat_at         INTEGER,
  last_step            INTEGER,
  last_epoch           INTEGER,
  created_at           INTEGER NOT NULL,
  started_at           INTEGER,
  finished_at          INTEGER,
  error                TEXT,
  error_code           TEXT,
  git_commit           TEXT,
  git_dirty            INTEGER,
  package_versions     TEXT,
  node_version         TEXT,
  backend              TEXT,
  backend_version      TEXT,
  device_name          TEXT,
  host                 TEXT,
  cuda_visible_devices TEXT,
  pid                  INTEGER
);
CREATE INDEX trials_status ON trials(status);

-- A trial may belong to several sweeps (the same config in two sweeps is one trial row).
CREATE TABLE sweep_trials (
  sweep_id INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  PRIMARY KEY (sweep_id, trial_id)
) WITHOUT ROWID;

CREATE TABLE trial_dependencies (
  trial_id       INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  depends_on_key TEXT NOT NULL,
  PRIMARY KEY (trial_id, depends_on_key)
) WITHOUT ROWID;

CREATE TABLE metrics (
  id       INTEGER PRIMARY KEY,
  trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt  INTEGER NOT NULL,
  seq      INTEGER NOT NULL,
  step     INTEGER NOT NULL,
  epoch    INTEGER NOT NULL,
  phase    TEXT NOT NULL CHECK (phase IN ('train','eval','after-decomposition','final')),
  name     TEXT NOT NULL,
  value    REAL,
  UNIQUE (trial_id, attempt, seq)
);

CREATE TABLE layers (
  id              INTEGER PRIMARY KEY,
  trial_id        INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt         INTEGER NOT NULL,
  name            TEXT NOT NULL,
  decomposition   TEXT NOT NULL,
  scheme          TEXT,
  ranks           TEXT NOT NULL,
  raw_ranks       TEXT,
  tile            TEXT,
  kernel_shape    TEXT NOT NULL,
  params_before   INTEGER NOT NULL,
  params_after    INTEGER NOT NULL,
  macs_before     INTEGER NOT NULL,
  macs_after      INTEGER NOT NULL,
  relative_error  REAL,
  UNIQUE (trial_id, attempt, name)
);

CREATE TABLE results (
  id                           INTEGER PRIMARY KEY,
  trial_id                     INTEGER NOT NULL UNIQUE REFERENCES trials(id) ON DELETE CASCADE,
  attempt                      INTEGER NOT NULL,
  accuracy_original            REAL,
  accuracy_after_decomposition REAL,
  accuracy_final               REAL,
  params_before                INTEGER NOT NULL,
  params_after                 INTEGER NOT NULL,
  macs_before                  INTEGER NOT NULL,
  macs_after                   INTEGER NOT NULL,
  params_ratio                 REAL,
  macs_ratio                   REAL,
  latency_before_ms            REAL,
  latency_after_ms             REAL,
  latency_batch                INTEGER,
  wall_seconds                 REAL NOT NULL,
  steps                        INTEGER NOT NULL,
  epochs                       INTEGER NOT NULL,
  created_at                   INTEGER NOT NULL
);

CREATE TABLE artifacts (
  id         INTEGER PRIMARY KEY,
  trial_id   INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt    INTEGER NOT NULL,
  kind       TEXT NOT NULL,
  path       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (trial_id, kind, path)
);
`;

const V2_VIEWS_AND_INDEXES = `
-- Indexes for the axes people filter on (runs --where, report) and the claim query.
CREATE INDEX trials_sweep_status ON trials(sweep_id, status);
CREATE INDEX trials_axes ON trials(method, decomposition, model, dataset);
CREATE INDEX trials_model ON trials(model, dataset);
CREATE INDEX trials_seed ON trials(seed);
CREATE INDEX trials_target_ratio ON trials(target_ratio);
CREATE INDEX trials_distortion_interval ON trials(distortion_interval);
CREATE INDEX sweep_trials_trial ON sweep_trials(trial_id);
CREATE INDEX metrics_trial_name ON metrics(trial_id, name, phase, step);
CREATE INDEX artifacts_trial ON artifacts(trial_id);

-- One row per trial: its sweep, config axes, status, environment and summary result.
CREATE VIEW trial_summary AS
SELECT
  t.id AS trial_id, t.key, s.name AS sweep, t.status, t.attempts,
  t.model, t.dataset, t.method, t.decomposition, t.scheme, t.rank_policy, t.target_ratio,
  t.distortion_interval, t.seed, t.lr, t.epochs, t.batch_size,
  r.accuracy_original, r.accuracy_after_decomposition, r.accuracy_final,
  r.params_before, r.params_after, r.params_ratio, r.macs_before, r.macs_after, r.macs_ratio,
  r.latency_before_ms, r.latency_after_ms, r.latency_batch, r.wall_seconds, r.steps,
  t.worker, t.device, t.backend, t.device_name, t.host, t.git_commit, t.git_dirty,
  t.started_at, t.finished_at, t.error
FROM trials t
JOIN sweeps s ON s.id = t.sweep_id
LEFT JOIN results r ON r.trial_id = t.id;

-- The same, once per (sweep, trial) membership: filter by sweep name when a config is shared.
CREATE VIEW sweep_trial_summary AS
SELECT s.name AS member_sweep, ts.*
FROM sweep_trials st
JOIN sweeps s ON s.id = st.sweep_id
JOIN trial_summary ts ON ts.trial_id = st.trial_id;

-- Per-layer records of each trial's latest attempt, with the trial's axes.
CREATE VIEW trial_layers AS
SELECT
  t.id AS trial_id, t.key, t.model, t.method, t.decomposition AS trial_decomposition, t.seed,
  l.name AS layer, l.decomposition, l.scheme, l.ranks, l.raw_ranks, l.tile, l.kernel_shape,
  l.params_before, l.params_after, l.macs_before, l.macs_after,
  CAST(l.params_before AS REAL) / NULLIF(l.params_after, 0) AS params_ratio,
  CAST(l.macs_before AS REAL) / NULLIF(l.macs_after, 0) AS macs_ratio,
  l.relative_error
FROM layers l
JOIN trials t ON t.id = l.trial_id AND l.attempt = t.attempts;

-- The last value (highest step) of every metric of each trial's latest attempt.
CREATE VIEW latest_metrics AS
SELECT t.id AS trial_id, t.key, m.phase, m.name, m.step, m.epoch, m.value
FROM metrics m
JOIN trials t ON t.id = m.trial_id AND m.attempt = t.attempts
WHERE m.id = (
  SELECT m2.id FROM metrics m2
  WHERE m2.trial_id = m.trial_id AND m2.attempt = m.attempt AND m2.name = m.name AND m2.phase = m.phase
  ORDER BY m2.step DESC, m2.seq DESC LIMIT 1
);

-- Progress of every sweep: trial counts by status.
CREATE VIEW sweep_progress AS
SELECT
  s.id AS sweep_id, s.name AS sweep, COUNT(t.id) AS trials,
  SUM(t.status = 'pending') AS pending, SUM(t.status = 'running') AS running,
  SUM(t.status = 'succeeded') AS succeeded, SUM(t.status = 'failed') AS failed,
  SUM(t.status = 'diverged') AS diverged, SUM(t.status = 'cancelled') AS cancelled,
  s.created_at, s.finished_at
FROM sweeps s
LEFT JOIN sweep_trials st ON st.sweep_id = s.id
LEFT JOIN trials t ON t.id = st.trial_id
GROUP BY s.id;
`;

// Summaries over ~100k trials: a covering index holds every axis a grouped summary needs, so the
// wide trial rows (config JSON) are not read (bench: 760 ms -> ~60 ms for a grouped mean).
const V3_SUMMARY_COVERING_INDEX = `
CREATE INDEX trials_summary_cover ON trials(status, method, decomposition, target_ratio, model, dataset, seed, distortion_interval, sweep_id);
`;

// Progress of a 100k-trial sweep: counting by status walked every membership of the sweep (~30 ms
// per count, once per finished trial: quadratic over a sweep). sweep_status_counts holds the counts
// (and the summed duration of timed trials) per (sweep, status), kept exact by triggers in the same
// transaction as every write that changes them, so reading progress costs six rows whatever the size.
// A trial's duration is finished_at - started_at when both are set (its latest attempt).
const V4_STATUS_COUNTS = `
CREATE TABLE sweep_status_counts (
  sweep_id INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  status   TEXT NOT NULL,
  trials   INTEGER NOT NULL DEFAULT 0,
  timed    INTEGER NOT NULL DEFAULT 0,
  time_ms  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (sweep_id, status)
) WITHOUT ROWID;

INSERT INTO sweep_status_counts (sweep_id, status, trials, timed, time_ms)
SELECT st.sweep_id, t.status, count(*),
  count(t.finished_at - t.started_at), coalesce(sum(t.finished_at - t.started_at), 0)
FROM sweep_trials st JOIN trials t ON t.id = st.trial_id
GROUP BY st.sweep_id, t.status;

-- A trial joins a sweep: count it under its current status.
CREATE TRIGGER sweep_status_counts_link AFTER INSERT ON sweep_trials
BEGIN
  INSERT INTO sweep_status_counts (sweep_id, status, trials, timed, time_ms)
  SELECT new.sweep_id, t.status, 1, t.finished_at - t.started_at IS NOT NULL, coalesce(t.finished_at - t.started_at, 0)
  FROM trials t WHERE t.id = new.trial_id
  ON CONFLICT (sweep_id, status) DO UPDATE SET
    trials = trials + 1, timed = timed + excluded.timed, time_ms = time_ms + excluded.time_ms;
END;

-- A trial leaves a sweep (when the trial row itself is deleted, trials_status_counts_delete did it).
CREATE TRIGGER sweep_status_counts_unlink AFTER DELETE ON sweep_trials
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (SELECT t.finished_at - t.started_at IS NOT NULL FROM trials t WHERE t.id = old.trial_id),
    time_ms = time_ms - (SELECT coalesce(t.finished_at - t.started_at, 0) FROM trials t WHERE t.id = old.trial_id)
  WHERE sweep_id = old.sweep_id AND status = (SELECT t.status FROM trials t WHERE t.id = old.trial_id);
END;

-- Status or timing of a trial changes: move it between the counts of every sweep it belongs to.
CREATE TRIGGER trials_status_counts_update AFTER UPDATE OF status, started_at, finished_at ON trials
WHEN old.status IS NOT new.status OR old.started_at IS NOT new.started_at OR old.finished_at IS NOT new.finished_at
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (old.finished_at - old.started_at IS NOT NULL),
    time_ms = time_ms - coalesce(old.finished_at - old.started_at, 0)
  WHERE status = old.status AND sweep_id IN (SELECT st.sweep_id FROM sweep_trials st WHERE st.trial_id = old.id);
  INSERT INTO sweep_status_counts (sweep_id, status, trials, timed, time_ms)
  SELECT st.sweep_id, new.status, 1, new.finished_at - new.started_at IS NOT NULL, coalesce(new.finished_at - new.started_at, 0)
  FROM sweep_trials st WHERE st.trial_id = new.id
  ON CONFLICT (sweep_id, status) DO UPDATE SET
    trials = trials + 1, timed = timed + excluded.timed, time_ms = time_ms + excluded.time_ms;
END;

-- A trial row is deleted: its memberships go by cascade, after the row is gone, so count it out here.
CREATE TRIGGER trials_status_counts_delete BEFORE DELETE ON trials
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (old.finished_at - old.started_at IS NOT NULL),
    time_ms = time_ms - coalesce(old.finished_at - old.started_at, 0)
  WHERE status = old.status AND sweep_id IN (SELECT st.sweep_id FROM sweep_trials st WHERE st.trial_id = old.id);
END;
`;

// Membership in the sweep's latest spec. A sweep keeps every trial ever linked to it (results are
// never deleted), but a re-run of an edited spec must run, count and report only the points of the
// current expansion: `active` = 1 for those, 0 for points the latest spec no longer has ("retired",
// set by syncSweepTrials at every run). sweep_status_counts (hence trialCounts, progress, ETA) counts
// active memberships only: the triggers of migration 4 are replaced by ones that skip retired rows,
// and two more move a trial in / out of the counts when its membership flag flips. Every existing
// membership is active, so the counts migration 4 built stay exact as they are.
// sweep_progress is rebuilt on sweep_status_counts (same columns; it walked every membership of every
// sweep), and sweep_trial_summary gains `in_spec` (the flag) as its last column.
const V5_SPEC_MEMBERSHIP = `
ALTER TABLE sweep_trials ADD COLUMN active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1));

DROP TRIGGER sweep_status_counts_link;
DROP TRIGGER sweep_status_counts_unlink;
DROP TRIGGER trials_status_counts_update;
DROP TRIGGER trials_status_counts_delete;

CREATE TRIGGER sweep_status_counts_link AFTER INSERT ON sweep_trials WHEN new.active = 1
BEGIN
  INSERT INTO sweep_status_counts (sweep_id, status, trials, timed, time_ms)
  SELECT new.sweep_id, t.status, 1, t.finished_at - t.started_at IS NOT NULL, coalesce(t.finished_at - t.started_at, 0)
  FROM trials t WHERE t.id = new.trial_id
  ON CONFLICT (sweep_id, status) DO UPDATE SET
    trials = trials + 1, timed = timed + excluded.timed, time_ms = time_ms + excluded.time_ms;
END;

CREATE TRIGGER sweep_status_counts_unlink AFTER DELETE ON sweep_trials WHEN old.active = 1
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (SELECT t.finished_at - t.started_at IS NOT NULL FROM trials t WHERE t.id = old.trial_id),
    time_ms = time_ms - (SELECT coalesce(t.finished_at - t.started_at, 0) FROM trials t WHERE t.id = old.trial_id)
  WHERE sweep_id = old.sweep_id AND status = (SELECT t.status FROM trials t WHERE t.id = old.trial_id);
END;

-- A membership comes back into the latest spec: count it under the trial's current status.
CREATE TRIGGER sweep_status_counts_activate AFTER UPDATE OF active ON sweep_trials
WHEN old.active = 0 AND new.active = 1
BEGIN
  INSERT INTO sweep_status_counts (sweep_id, status, trials, timed, time_ms)
  SELECT new.sweep_id, t.status, 1, t.finished_at - t.started_at IS NOT NULL, coalesce(t.finished_at - t.started_at, 0)
  FROM trials t WHERE t.id = new.trial_id
  ON CONFLICT (sweep_id, status) DO UPDATE SET
    trials = trials + 1, timed = timed + excluded.timed, time_ms = time_ms + excluded.time_ms;
END;

-- A membership leaves the latest spec (kept, retired): count it out.
CREATE TRIGGER sweep_status_counts_retire AFTER UPDATE OF active ON sweep_trials
WHEN old.active = 1 AND new.active = 0
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (SELECT t.finished_at - t.started_at IS NOT NULL FROM trials t WHERE t.id = old.trial_id),
    time_ms = time_ms - (SELECT coalesce(t.finished_at - t.started_at, 0) FROM trials t WHERE t.id = old.trial_id)
  WHERE sweep_id = old.sweep_id AND status = (SELECT t.status FROM trials t WHERE t.id = old.trial_id);
END;

CREATE TRIGGER trials_status_counts_update AFTER UPDATE OF status, started_at, finished_at ON trials
WHEN old.status IS NOT new.status OR old.started_at IS NOT new.started_at OR old.finished_at IS NOT new.finished_at
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (old.finished_at - old.started_at IS NOT NULL),
    time_ms = time_ms - coalesce(old.finished_at - old.started_at, 0)
  WHERE status = old.status
    AND sweep_id IN (SELECT st.sweep_id FROM sweep_trials st WHERE st.trial_id = old.id AND st.active = 1);
  INSERT INTO sweep_status_counts (sweep_id, status, trials, timed, time_ms)
  SELECT st.sweep_id, new.status, 1, new.finished_at - new.started_at IS NOT NULL, coalesce(new.finished_at - new.started_at, 0)
  FROM sweep_trials st WHERE st.trial_id = new.id AND st.active = 1
  ON CONFLICT (sweep_id, status) DO UPDATE SET
    trials = trials + 1, timed = timed + excluded.timed, time_ms = time_ms + excluded.time_ms;
END;

CREATE TRIGGER trials_status_counts_delete BEFORE DELETE ON trials
BEGIN
  UPDATE sweep_status_counts SET
    trials = trials - 1,
    timed = timed - (old.finished_at - old.started_at IS NOT NULL),
    time_ms = time_ms - coalesce(old.finished_at - old.started_at, 0)
  WHERE status = old.status
    AND sweep_id IN (SELECT st.sweep_id FROM sweep_trials st WHERE st.trial_id = old.id AND st.active = 1);
END;

-- Same columns as migration 2's view, from the maintained counts (a few rows per sweep instead of a
-- join over every membership). As before, a sweep without (current) trials has trials = 0 and NULL
-- per-status columns; otherwise a status without trials is 0.
DROP VIEW sweep_progress;
CREATE VIEW sweep_progress AS
SELECT
  s.id AS sweep_id, s.name AS sweep, coalesce(sum(c.trials), 0) AS trials,
  CASE WHEN sum(c.trials) > 0 THEN sum(CASE WHEN c.status = 'pending' THEN c.trials ELSE 0 END) END AS pending,
  CASE WHEN sum(c.trials) > 0 THEN sum(CASE WHEN c.status = 'running' THEN c.trials ELSE 0 END) END AS running,
  CASE WHEN sum(c.trials) > 0 THEN sum(CASE WHEN c.status = 'succeeded' THEN c.trials ELSE 0 END) END AS succeeded,
  CASE WHEN sum(c.trials) > 0 THEN sum(CASE WHEN c.status = 'failed' THEN c.trials ELSE 0 END) END AS failed,
  CASE WHEN sum(c.trials) > 0 THEN sum(CASE WHEN c.status = 'diverged' THEN c.trials ELSE 0 END) END AS diverged,
  CASE WHEN sum(c.trials) > 0 THEN sum(CASE WHEN c.status = 'cancelled' THEN c.trials ELSE 0 END) END AS cancelled,
  s.created_at, s.finished_at
FROM sweeps s
LEFT JOIN sweep_status_counts c ON c.sweep_id = s.id
GROUP BY s.id;

DROP VIEW sweep_trial_summary;
CREATE VIEW sweep_trial_summary AS
SELECT s.name AS member_sweep, ts.*, st.active AS in_spec
FROM sweep_trials st
JOIN sweeps s ON s.id = st.sweep_id
JOIN trial_summary ts ON ts.trial_id = st.trial_id;
`;

/**
 * Per-layer records that make decompositions comparable and reproducible: the lowering order of
 * svd / tiled-svd, the iterative fit (HOOI / CP-ALS sweeps, convergence), CP's init, seed and
 * final fit (1 - relative error), and for distortion training the error of the first and of the
 * final distortion. relative_error keeps its meaning (the recorded decomposition's error: for
 * distort the final projection's, ~1e-6), so the first distortion's error is what compares with a
 * fine-tuned trial's relative_error. Older rows have NULL in the new columns.
 */
const V6_LAYER_FIT_RECORDS = `
ALTER TABLE layers ADD COLUMN lowering_order TEXT CHECK (lowering_order IN ('hwc','chw'));
ALTER TABLE layers ADD COLUMN iterations INTEGER;
ALTER TABLE layers ADD COLUMN converged INTEGER;
ALTER TABLE layers ADD COLUMN cp_init TEXT;
ALTER TABLE layers ADD COLUMN cp_seed INTEGER;
ALTER TABLE layers ADD COLUMN cp_fit REAL;
ALTER TABLE layers ADD COLUMN first_distortion_error REAL;
ALTER TABLE layers ADD COLUMN final_distortion_error REAL;

DROP VIEW trial_layers;
CREATE VIEW trial_layers AS
SELECT
  t.id AS trial_id, t.key, t.model, t.method, t.decomposition AS trial_decomposition, t.seed,
  l.name AS layer, l.decomposition, l.scheme, l.ranks, l.raw_ranks, l.tile, l.kernel_shape,
  l.params_before, l.params_after, l.macs_before, l.macs_after,
  CAST(l.params_before AS REAL) / NULLIF(l.params_after, 0) AS params_ratio,
  CAST(l.macs_before AS REAL) / NULLIF(l.macs_after, 0) AS macs_ratio,
  l.relative_error,
  l.lowering_order, l.iterations, l.converged, l.cp_init, l.cp_seed, l.cp_fit,
  l.first_distortion_error, l.final_distortion_error,
  CASE WHEN t.method = 'distort' THEN l.first_distortion_error ELSE l.relative_error END AS decomposition_error
FROM layers l
JOIN trials t ON t.id = l.trial_id AND l.attempt = t.attempts;
`;

// Attempts that count toward maxAttempts. An attempt ended by the coordinator's own interruption
// (Ctrl-C, a coordinator that died, an expired lease, a Redis loss) does not count
// (interrupted_attempts says how many there were), and `flatrank run --retry-failed` starts the
// count again; trials.attempts stays the attempt number, so every attempt keeps its own rows.
// Existing trials count every attempt they made, as the claim did until now.
const V7_ATTEMPT_BUDGET = `
ALTER TABLE trials ADD COLUMN counted_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN interrupted_attempts INTEGER NOT NULL DEFAULT 0;
UPDATE trials SET counted_attempts = attempts;
`;

// How each trial chose its per-layer ranks (a budgeted allocation, EVBMF scaled to a budget, the
// ranks Trained Rank Pruning ended with): one record per attempt, as the layers rows are, so that
// only the latest (for a finished trial: the succeeding) attempt's record is read through the views.
// `record` is the whole RankAllocationRecord as JSON; the budget and the achieved whole-model
// ratios are columns as well, to filter and sort on. allocation_layers unpacks record.layers into
// one row per layer (layer_index = model order) for `flatrank query`.
const V8_RANK_ALLOCATIONS = `
CREATE TABLE allocations (
  id                    INTEGER PRIMARY KEY,
  trial_id              INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt               INTEGER NOT NULL,
  policy                TEXT NOT NULL,
  budget_kind           TEXT CHECK (budget_kind IN ('params','macs')),
  budget_ratio          REAL,
  achieved_params_ratio REAL,
  achieved_macs_ratio   REAL,
  record                TEXT NOT NULL CHECK (json_valid(record)),
  UNIQUE (trial_id, attempt)
);

CREATE VIEW trial_allocations AS
SELECT
  t.id AS trial_id, t.key, t.model, t.method, t.decomposition, t.rank_policy, t.target_ratio,
  t.distortion_interval, t.seed,
  a.attempt, a.policy, a.budget_kind, a.budget_ratio, a.achieved_params_ratio, a.achieved_macs_ratio,
  json_array_length(a.record, '$.layers') AS layers,
  json_extract(a.record, '$.measured') AS measured,
  a.record
FROM allocations a
JOIN trials t ON t.id = a.trial_id AND a.attempt = t.attempts;

CREATE VIEW allocation_layers AS
SELECT
  t.id AS trial_id, t.key, t.model, t.method, t.decomposition, t.rank_policy, t.seed,
  a.policy, CAST(l.key AS INTEGER) AS layer_index,
  json_extract(l.value, '$.name') AS layer,
  json_extract(l.value, '$.ranks') AS ranks,
  json_extract(l.value, '$.error') AS error,
  json_extract(l.value, '$.measured') AS measured
FROM allocations a
JOIN trials t ON t.id = a.trial_id AND a.attempt = t.attempts,
  json_each(a.record, '$.layers') l;
`;

// A report groups the seeds of one configuration by the config without its seed and start trial
// key (its shape), and resolves a start trial by that key. Both were computed from the config JSON
// at every read (json_remove / json_extract: a JSON parse of every trial, the largest part of
// reading a 10k-trial sweep's report). The writer now stores them once: each distinct shape is a
// row of trial_groups (the config's JSON text without $.seed and $.start.trialKey, as json_remove
// gives it), each trial names its group (group_id) and keeps its start trial key (start_trial_key,
// NULL without one). A shape per group rather than per trial keeps the trial rows as narrow as they
// were (10k trials of 86 configurations: 36 MB instead of 46 MB) and lets a reader hand over one
// string per group. The existing trials get both here, from the same expressions, so a report reads
// the same text either way; a config that is not valid JSON is left NULL (the reader computes it,
// and fails, as before). trial_groups.shape is unique (the writer finds a shape's group by it);
// nothing looks trials up by group, so trials.group_id has no index. Readers of a schema-8
// database compute both at read time (OLDEST_READABLE_VERSION).
const V9_TRIAL_GROUPS = `
CREATE TABLE trial_groups (
  id    INTEGER PRIMARY KEY,
  shape TEXT NOT NULL UNIQUE
);
ALTER TABLE trials ADD COLUMN group_id INTEGER REFERENCES trial_groups(id);
ALTER TABLE trials ADD COLUMN start_trial_key TEXT;

INSERT INTO trial_groups (shape)
SELECT json_remove(config, '$.seed', '$.start.trialKey') FROM trials WHERE json_valid(config)
GROUP BY 1 ORDER BY min(id);

UPDATE trials SET
  group_id = (SELECT g.id FROM trial_groups g WHERE g.shape = json_remove(trials.config, '$.seed', '$.start.trialKey')),
  start_trial_key = json_extract(config, '$.start.trialKey')
WHERE json_valid(config);
`;

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'base tables', sql: V1_BASE_TABLES },
  { version: 2, name: 'filter indexes and views', sql: V2_VIEWS_AND_INDEXES },
  { version: 3, name: 'covering index for summaries', sql: V3_SUMMARY_COVERING_INDEX },
  { version: 4, name: 'status counts per sweep, kept by triggers', sql: V4_STATUS_COUNTS },
  { version: 5, name: 'sweep membership in the latest spec (sweep_trials.active)', sql: V5_SPEC_MEMBERSHIP },
  {
    version: 6,
    name: 'layer fit records: lowering order, CP fit, first / final distortion errors',
    sql: V6_LAYER_FIT_RECORDS,
  },
  {
    version: 7,
    name: 'attempts that count toward maxAttempts (trials.counted_attempts, interrupted_attempts)',
    sql: V7_ATTEMPT_BUDGET,
  },
  {
    version: 8,
    name: 'rank allocation records per attempt (allocations, trial_allocations, allocation_layers)',
    sql: V8_RANK_ALLOCATIONS,
  },
  {
    version: 9,
    name: 'report grouping stored at write time (trial_groups, trials.group_id, start_trial_key)',
    sql: V9_TRIAL_GROUPS,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * The oldest schema a read-only connection opens as it is (readers never migrate): every later
 * migration only adds what the reads can do without (9: trial_groups and trials.group_id /
 * start_trial_key, which the report reads compute from the config when absent), so committed or shared
 * databases of that version stay readable until a writer upgrades them.
 */
export const OLDEST_READABLE_VERSION = 8;

/**
 * Applies every migration above the database's user_version up to `target`. Each step runs in its
 * own BEGIN IMMEDIATE transaction and re-reads user_version inside it, so two processes that open a
 * fresh file at once apply each step exactly once. Returns the versions applied.
 */
export function migrate(
  db: Database.Database,
  target: number = SCHEMA_VERSION,
  now: number = Date.now(),
): number[] {
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (m.version > target) break;
    const step = db.transaction(() => {
      const current = db.pragma('user_version', { simple: true }) as number;
      if (current >= m.version) return false;
      if (current !== m.version - 1)
        throw new Error(`schema version ${current} cannot be migrated by step ${m.version}`);
      if (m.version === 1) db.pragma(`application_id = ${FLATRANK_APPLICATION_ID}`);
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        now,
      );
      db.pragma(`user_version = ${m.version}`);
      return true;
    });
    if (step.immediate()) applied.push(m.version);
  }
  return applied;
}

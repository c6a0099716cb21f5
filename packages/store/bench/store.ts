/**
 * `npm run bench -- store`: metric-insert throughput through applyEvents, batched (one transaction
 * per 1000 events) vs unbatched (one transaction per event) side by side, and the latency of the
 * summary view and of `flatrank runs --where` over a database of 100k trials, and the progress
 * queries of a running sweep side by side: before migration 4 (a status walk of the whole sweep per
 * count, every trial read for `flatrank status`) and now (sweep_status_counts).
 * Options: --trials=N (default 100000), --metrics=N (batched rows, default 200000), --keep=DIR
 * (write the database into DIR and keep it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  MODELS,
  resolveTrialConfig,
  trialKey,
  type TrialConfig,
  type TrialEnvelope,
} from '@flatrank/protocol';
import { ResultsStore, listRuns } from '@flatrank/store';
import { connectionOf, runsQuery } from '@flatrank/store/internal';

type BenchRow = Record<string, string | number | boolean | null>;

/** `--name=value` (what `npm run bench -- --name=value` passes through) or `--name value`. */
function optionText(args: string[], name: string): string | undefined {
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function option(args: string[], name: string, def: number): number {
  const v = Number(optionText(args, name) ?? def);
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : def;
}

function metricEnvelopes(key: string, attempt: number, from: number, n: number): TrialEnvelope[] {
  const out: TrialEnvelope[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const s = from + i;
    out[i] = {
      trialKey: key,
      attempt,
      seq: s,
      event: {
        type: 'metric',
        step: s >> 1,
        epoch: 0,
        phase: 'train',
        name: s & 1 ? 'loss' : 'lr',
        value: 1 / (s + 1),
      },
    };
  }
  return out;
}

function timeIt(reps: number, fn: () => number): { medianMs: number; p95Ms: number; rows: number } {
  const times: number[] = [];
  let rows = 0;
  fn(); // warm the page cache and statement cache
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    rows = fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return {
    medianMs: times[Math.floor(times.length / 2)]!,
    p95Ms: times[Math.min(times.length - 1, Math.floor(times.length * 0.95))]!,
    rows,
  };
}

const METHODS = ['finetune', 'distort', 'posttrain'] as const;
const DECOMPS = ['svd', 'tucker2', 'cp'] as const;
const RATIOS = [2, 3, 4, 6, 8] as const;

/** N distinct valid configs: every (model, method, decomposition, ratio) combination, then more seeds. */
function grid(n: number): TrialConfig[] {
  const base = resolveTrialConfig({
    model: 'resnet20',
    dataset: { name: 'cifar10' },
    training: { epochs: 2, lr: 0.01 },
    method: 'finetune',
    compression: { decomposition: 'tucker2', rank: { kind: 'ratio', ratio: 2 } },
  });
  const combos = MODELS.length * METHODS.length * DECOMPS.length * RATIOS.length;
  const out: TrialConfig[] = [];
  for (let i = 0; i < n; i++) {
    let c = i % combos;
    const model = MODELS[c % MODELS.length]!;
    c = Math.floor(c / MODELS.length);
    const method = METHODS[c % METHODS.length]!;
    c = Math.floor(c / METHODS.length);
    const decomposition = DECOMPS[c % DECOMPS.length]!;
    c = Math.floor(c / DECOMPS.length);
    const ratio = RATIOS[c % RATIOS.length]!;
    const cfg = structuredClone(base);
    cfg.model = model;
    cfg.method = method;
    cfg.training.epochs = method === 'posttrain' ? 0 : 2;
    cfg.compression!.decomposition = decomposition;
    cfg.compression!.scheme = decomposition === 'svd' ? 'lowered' : null;
    cfg.compression!.rank = { kind: 'ratio', ratio };
    cfg.distortion =
      method === 'distort' ? { interval: 200, resetMomentum: false, reestimateBatchNorm: false } : null;
    cfg.seed = Math.floor(i / combos);
    out.push(cfg);
  }
  return out;
}

/** trialCounts before migration 4: a covering walk of the status index probing every membership. */
const LEGACY_COUNTS_SQL = `SELECT t.status, count(*) AS n FROM trials AS t INDEXED BY trials_status
  WHERE EXISTS (SELECT 1 FROM sweep_trials st WHERE st.sweep_id = ? AND st.trial_id = t.id) GROUP BY t.status`;

/** The view sweep_progress before migration 5 (a join over every membership), on current points. */
const LEGACY_SWEEP_PROGRESS_SQL = `SELECT
  s.id AS sweep_id, s.name AS sweep, COUNT(t.id) AS trials,
  SUM(t.status = 'pending') AS pending, SUM(t.status = 'running') AS running,
  SUM(t.status = 'succeeded') AS succeeded, SUM(t.status = 'failed') AS failed,
  SUM(t.status = 'diverged') AS diverged, SUM(t.status = 'cancelled') AS cancelled,
  s.created_at, s.finished_at
FROM sweeps s
LEFT JOIN sweep_trials st ON st.sweep_id = s.id AND st.active = 1
LEFT JOIN trials t ON t.id = st.trial_id
GROUP BY s.id`;

/**
 * The progress queries, old and new, on the same database in the same run. A coordinator reads the
 * counts once per started / finished trial and once a second; `flatrank status` builds a snapshot
 * (counts, running trials, mean duration of the succeeded ones) per sweep.
 */
function progressRows(store: ResultsStore, sweepId: number, nTrials: number): BenchRow[] {
  const legacy = connectionOf(store).prepare(LEGACY_COUNTS_SQL);
  const oldCounts = timeIt(10, () => legacy.all(sweepId).length);
  const newCounts = timeIt(200, () => Object.keys(store.trialCounts(sweepId)).length);
  const same =
    JSON.stringify(
      Object.fromEntries(
        (legacy.all(sweepId) as Array<{ status: string; n: number }>).map((r) => [r.status, r.n]),
      ),
    ) ===
    JSON.stringify(Object.fromEntries(Object.entries(store.trialCounts(sweepId)).filter(([, n]) => n > 0)));
  // Old status snapshot: every trial of the sweep read and parsed, filtered in JavaScript.
  const oldSnap = timeIt(3, () => {
    legacy.all(sweepId);
    const all = store.listTrials({ sweepId });
    const running = all.filter((t) => t.status === 'running');
    const d = all
      .filter((t) => t.status === 'succeeded' && t.startedAt !== null && t.finishedAt !== null)
      .map((t) => t.finishedAt! - t.startedAt!);
    return running.length + d.length;
  });
  const newSnap = timeIt(50, () => {
    store.trialCounts(sweepId);
    const running = store.listTrials({ sweepId, status: 'running' });
    return running.length + store.succeededTiming(sweepId).trials;
  });
  const row = (c: string, t: { medianMs: number; p95Ms: number; rows: number }, note: string | null) => ({
    case: c,
    rows: t.rows,
    medianMs: +t.medianMs.toFixed(3),
    p95Ms: +t.p95Ms.toFixed(3),
    target: note,
    meetsTarget: null,
  });
  const legacyView = connectionOf(store).prepare(LEGACY_SWEEP_PROGRESS_SQL);
  const view = connectionOf(store).prepare('SELECT * FROM sweep_progress');
  const oldView = timeIt(5, () => legacyView.all().length);
  const newView = timeIt(200, () => view.all().length);
  const sameView = JSON.stringify(legacyView.all()) === JSON.stringify(view.all());
  // A coordinator reads the counts at least twice per trial (start, end): the sweep's total.
  const perSweep = (ms: number) =>
    `x ${2 * nTrials} reads = ${((ms * 2 * nTrials) / 1000).toFixed(1)} s per sweep`;
  return [
    row(
      `progress counts of a sweep of ${nTrials}, OLD (status walk)`,
      oldCounts,
      perSweep(oldCounts.medianMs),
    ),
    row(
      `progress counts of a sweep of ${nTrials}, NEW (sweep_status_counts)`,
      newCounts,
      `${perSweep(newCounts.medianMs)}; same counts as OLD: ${same}`,
    ),
    row(`status snapshot of a sweep of ${nTrials}, OLD (listTrials of the sweep)`, oldSnap, null),
    row(
      `status snapshot of a sweep of ${nTrials}, NEW (counts + running trials + timing)`,
      newSnap,
      `${(oldSnap.medianMs / newSnap.medianMs).toFixed(0)}x faster`,
    ),
    row(`SELECT * FROM sweep_progress, OLD (join over every membership)`, oldView, null),
    row(
      `SELECT * FROM sweep_progress, NEW (sweep_status_counts, migration 5)`,
      newView,
      `${(oldView.medianMs / newView.medianMs).toFixed(0)}x faster; same rows as OLD: ${sameView}`,
    ),
    row(
      `listTrials running of a sweep of ${nTrials}`,
      timeIt(50, () => store.listTrials({ sweepId, status: 'running' }).length),
      null,
    ),
    row(
      `listTrials pending of a sweep of ${nTrials} (10% pending)`,
      timeIt(10, () => store.listTrials({ sweepId, status: 'pending' }).length),
      null,
    ),
    row(
      `trialKeys pending of a sweep of ${nTrials} (keys only)`,
      timeIt(10, () => store.trialKeys({ sweepId, status: 'pending' }).length),
      null,
    ),
  ];
}

export default {
  name: 'store',
  description:
    'SQLite results store: metric inserts batched vs unbatched; summary view and runs --where latency over 100k trials',
  async run(args: string[]): Promise<BenchRow[]> {
    const nTrials = option(args, 'trials', 100_000);
    const nMetrics = option(args, 'metrics', 200_000);
    const keep = optionText(args, 'keep');
    const dir = keep ?? mkdtempSync(join(tmpdir(), 'flatrank-bench-store-'));
    const rows: BenchRow[] = [];
    try {
      const store = ResultsStore.open(join(dir, 'bench.sqlite'), { create: true });
      const { id: sweepId } = store.upsertSweep({
        name: 'bench',
        specText: '',
        specResolved: null,
        specHash: '',
      });

      // --- metric inserts: batched vs unbatched, on one running trial each
      const metricTrials = grid(2).map((config) => ({ key: trialKey(config), config }));
      const { id: mSweep } = store.upsertSweep({
        name: 'metrics',
        specText: '',
        specResolved: null,
        specHash: '',
      });
      store.insertTrials(mSweep, metricTrials);
      const a = store.claimTrial({ sweepId: mSweep, worker: 'bench', leaseMs: 3_600_000, maxAttempts: 1 })!;
      const b = store.claimTrial({ sweepId: mSweep, worker: 'bench', leaseMs: 3_600_000, maxAttempts: 1 })!;
      const batch = 1000;
      let t0 = performance.now();
      for (let from = 0; from < nMetrics; from += batch)
        store.applyEvents(metricEnvelopes(a.key, a.attempt, from, Math.min(batch, nMetrics - from)));
      const batchedS = (performance.now() - t0) / 1000;
      const nSingle = Math.max(1000, Math.floor(nMetrics / 10));
      const singles = metricEnvelopes(b.key, b.attempt, 0, nSingle);
      t0 = performance.now();
      for (const e of singles) store.applyEvents([e]);
      const singleS = (performance.now() - t0) / 1000;
      const batchedRate = nMetrics / batchedS;
      rows.push({
        case: 'metric insert, batched (1000 events / transaction)',
        rows: nMetrics,
        seconds: +batchedS.toFixed(3),
        rowsPerSecond: Math.round(batchedRate),
        target: '>= 100000 rows/s',
        meetsTarget: batchedRate >= 100_000,
      });
      rows.push({
        case: 'metric insert, unbatched (1 event / transaction)',
        rows: nSingle,
        seconds: +singleS.toFixed(3),
        rowsPerSecond: Math.round(nSingle / singleS),
        target: 'peer of batched',
        meetsTarget: null,
      });

      // --- 100k trials with results
      t0 = performance.now();
      const configs = grid(nTrials);
      const inserts = configs.map((config) => ({ key: trialKey(config), config }));
      const prepS = (performance.now() - t0) / 1000;
      t0 = performance.now();
      for (let i = 0; i < inserts.length; i += 10_000)
        store.insertTrials(sweepId, inserts.slice(i, i + 10_000));
      const insertS = (performance.now() - t0) / 1000;
      rows.push({
        case: `insertTrials (grid of ${nTrials}; key hashing ${prepS.toFixed(1)} s not included)`,
        rows: nTrials,
        seconds: +insertS.toFixed(3),
        rowsPerSecond: Math.round(nTrials / insertS),
        target: null,
        meetsTarget: null,
      });
      // Results for 90% of them (bulk SQL: the setup is not what is measured here).
      connectionOf(store).exec(`
        UPDATE trials SET status = 'succeeded', attempts = 1, started_at = 0, finished_at = 60000 + id % 1000 WHERE sweep_id = ${sweepId} AND id % 10 != 0;
        INSERT INTO results (trial_id, attempt, accuracy_original, accuracy_after_decomposition, accuracy_final, params_before, params_after,
          macs_before, macs_after, params_ratio, macs_ratio, wall_seconds, steps, epochs, created_at)
        SELECT id, 1, 0.92, 0.3 + (id % 50) / 100.0, 0.8 + (id % 17) / 100.0, 270000, CAST(270000 / target_ratio AS INTEGER),
          40000000, CAST(40000000 / target_ratio AS INTEGER), target_ratio, target_ratio, 60.0, 1000, 2, 0
        FROM trials WHERE sweep_id = ${sweepId} AND status = 'succeeded';
        ANALYZE;`);
      // Claims and counts at this size: what the coordinator does per trial / per progress tick.
      const c = timeIt(50, () =>
        store.claimTrial({ sweepId, worker: 'bench', leaseMs: 3_600_000, maxAttempts: 3 }) ? 1 : 0,
      );
      rows.push({
        case: `claimTrial in a sweep of ${nTrials} (10% pending)`,
        rows: c.rows,
        medianMs: +c.medianMs.toFixed(2),
        p95Ms: +c.p95Ms.toFixed(2),
        target: null,
        meetsTarget: null,
      });
      rows.push(...progressRows(store, sweepId, nTrials));
      store.close();

      // --- read latency on a read-only connection, as `flatrank runs` / `query` use it
      const ro = ResultsStore.open(join(dir, 'bench.sqlite'), { readonly: true });
      const summarySql = `SELECT method, decomposition, target_ratio, count(*) AS n, avg(accuracy_final) AS acc, avg(params_ratio) AS ratio
        FROM trial_summary WHERE status = 'succeeded' GROUP BY method, decomposition, target_ratio`;
      const summaryStmt = connectionOf(ro).prepare(summarySql);
      const s = timeIt(10, () => summaryStmt.all().length);
      rows.push({
        case: `summary view: grouped mean over ${nTrials} trials`,
        rows: s.rows,
        medianMs: +s.medianMs.toFixed(2),
        p95Ms: +s.p95Ms.toFixed(2),
        target: '< 100 ms',
        meetsTarget: s.medianMs < 100,
      });
      const oneSweep = connectionOf(ro).prepare(
        "SELECT * FROM trial_summary WHERE sweep = 'bench' AND model = 'resnet20' AND method = 'distort'",
      );
      const s2 = timeIt(10, () => oneSweep.all().length);
      rows.push({
        case: 'summary view: all columns, model + method filter',
        rows: s2.rows,
        medianMs: +s2.medianMs.toFixed(2),
        p95Ms: +s2.p95Ms.toFixed(2),
        target: '< 100 ms',
        meetsTarget: s2.medianMs < 100,
      });
      for (const where of [
        'method=distort,decomposition=cp,seed=7',
        'decomposition=cp,seed=1',
        'model=resnet20,method=distort,target_ratio>=4',
        'seed=1|2|3',
      ]) {
        const r = timeIt(10, () => listRuns(ro, { sweep: 'bench', where }).length);
        rows.push({
          case: `runs --sweep bench --where "${where}"`,
          rows: r.rows,
          medianMs: +r.medianMs.toFixed(2),
          p95Ms: +r.p95Ms.toFixed(2),
          target: '< 100 ms',
          meetsTarget: r.medianMs < 100,
        });
      }
      // The plan SQLite chose for the most selective listing, for the record.
      const q = runsQuery(connectionOf(ro), { where: 'method=distort,decomposition=cp,seed=7' });
      const plan = (
        connectionOf(ro)
          .prepare(`EXPLAIN QUERY PLAN ${q.sql}`)
          .all(...q.params) as Array<{ detail: string }>
      )
        .map((p) => p.detail)
        .join('; ');
      rows.push({ case: 'plan of runs --where "method=distort,decomposition=cp,seed=7"', plan });
      ro.close();
    } finally {
      if (keep === undefined) rmSync(dir, { recursive: true, force: true });
    }
    // The machine is shared: record the 1-minute load average next to every timing.
    const load = +loadavg()[0]!.toFixed(1);
    return rows.map((r) => ({ ...r, load1: load }));
  },
};

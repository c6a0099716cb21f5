/**
 * Reading one sweep from a flatrank database through a read-only store connection: the trials
 * (ResultsStore.listTrials), their results (view sweep_trial_summary) and per-layer records of the
 * latest attempt (view trial_layers), as ReportTrials.
 */
import { ResultsStore } from '@flatrank/store';
import { UnknownNameError, type TrialSummary } from '@flatrank/protocol';
import type { ReportTrial } from './aggregate.js';
import { isPaperReference, type PaperReference } from './paper.js';

export interface LoadedSweep {
  sweep: string;
  /** The spec's `reproduces` field when it names a published figure / table, else null. */
  reproduces: PaperReference | null;
  specHash: string;
  trials: ReportTrial[];
}

interface SummaryRow {
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

interface LayerRow {
  key: string;
  layer: string;
  params_before: number;
  params_after: number;
  macs_before: number;
  macs_after: number;
}

/** Reads a sweep from an open store. Unknown sweep -> UnknownNameError listing the sweeps there are. */
export function loadSweepFrom(store: ResultsStore, sweepName: string): LoadedSweep {
  const sweep = store.getSweep(sweepName);
  if (!sweep) {
    const names = store.listSweeps().map((s) => s.name);
    throw new UnknownNameError(
      'sweep',
      sweepName,
      names.length > 0 ? names : ['(no sweeps in this database)'],
      { context: { db: store.path } },
    );
  }
  const trials = store.listTrials({ sweepId: sweep.id });
  const summaries = new Map<string, SummaryRow>();
  for (const r of store.db
    .prepare(
      `SELECT ts.key, ts.accuracy_original, ts.accuracy_after_decomposition, ts.accuracy_final, ts.params_before, ts.params_after,
              ts.macs_before, ts.macs_after, ts.latency_before_ms, ts.latency_after_ms, ts.latency_batch, ts.wall_seconds,
              ts.steps, r.epochs AS epochs
       FROM sweep_trial_summary ts LEFT JOIN results r ON r.trial_id = ts.trial_id
       WHERE ts.member_sweep = ? AND r.id IS NOT NULL`,
    )
    .all(sweep.name) as SummaryRow[])
    summaries.set(r.key, r);
  const layers = new Map<string, LayerRow[]>();
  for (const l of store.db
    .prepare(
      `SELECT tl.key, tl.layer, tl.params_before, tl.params_after, tl.macs_before, tl.macs_after
       FROM trial_layers tl JOIN sweep_trials st ON st.trial_id = tl.trial_id
       WHERE st.sweep_id = ? ORDER BY tl.key, tl.layer`,
    )
    .all(sweep.id) as LayerRow[])
    layers.set(l.key, [...(layers.get(l.key) ?? []), l]);

  const reproduces = (sweep.specResolved as { reproduces?: unknown } | null)?.reproduces;
  return {
    sweep: sweep.name,
    reproduces: isPaperReference(reproduces) ? reproduces : null,
    specHash: sweep.specHash,
    trials: trials.map((t) => {
      const s = summaries.get(t.key);
      return {
        key: t.key,
        status: t.status,
        config: t.config,
        error: t.error,
        summary: t.status === 'succeeded' && s ? toSummary(s) : null,
        layers: (layers.get(t.key) ?? []).map((l) => ({
          name: l.layer,
          paramsBefore: l.params_before,
          paramsAfter: l.params_after,
          macsBefore: l.macs_before,
          macsAfter: l.macs_after,
        })),
      };
    }),
  };
}

function toSummary(s: SummaryRow): TrialSummary {
  return {
    accuracyOriginal: s.accuracy_original,
    accuracyAfterDecomposition: s.accuracy_after_decomposition,
    // A missing final accuracy is left out of the statistics (NaN is skipped by describe()).
    accuracyFinal: s.accuracy_final ?? Number.NaN,
    paramsBefore: s.params_before ?? Number.NaN,
    paramsAfter: s.params_after ?? Number.NaN,
    macsBefore: s.macs_before ?? Number.NaN,
    macsAfter: s.macs_after ?? Number.NaN,
    latencyBeforeMs: s.latency_before_ms,
    latencyAfterMs: s.latency_after_ms,
    latencyBatch: s.latency_batch,
    wallSeconds: s.wall_seconds ?? Number.NaN,
    steps: s.steps ?? 0,
    epochs: s.epochs ?? 0,
  };
}

/** Opens `dbFile` read-only (StoreError DB_MISSING / DB_NOT_FLATRANK from the store) and reads the sweep. */
export function loadSweep(dbFile: string, sweepName: string): LoadedSweep {
  const store = ResultsStore.open(dbFile, { readonly: true });
  try {
    return loadSweepFrom(store, sweepName);
  } finally {
    store.close();
  }
}

/**
 * Reading one sweep from a flatrank database through a read-only store connection.
 *
 * loadSweep streams the sweep's trials (store iterateReportTrials: one row at a time, config
 * shapes without the seed, layer sums done in SQL) and folds them into report groups as they
 * arrive, so time and memory grow with the number of groups, not with full trial objects.
 * loadSweepTrials reads every trial as a ReportTrial (listTrials, reportTrialSummaries,
 * reportTrialLayers) for callers that need each trial; both give the same report.
 */
import { ResultsStore, type ReportLayerRow, type ReportSummaryRow, type SweepRow } from '@flatrank/store';
import {
  UnknownNameError,
  canonicalJson,
  sha256Hex,
  type TrialConfig,
  type TrialSummary,
} from '@flatrank/protocol';
import { TrialGroup, emptyTotals, type GroupedTrials, type ReportTrial } from './aggregate.js';
import { isPaperReference, type PaperReference } from './paper.js';
import type { AllocationInput, SweepRanks } from './rank-profile.js';

interface SweepInfo {
  sweep: string;
  /** The spec's `reproduces` field when it names a published figure / table, else null. */
  reproduces: PaperReference | null;
  specHash: string;
}

export interface LoadedSweep extends SweepInfo {
  /** The trials folded into report groups: pass to buildReport / aggregate. */
  trials: GroupedTrials;
}

export interface LoadedSweepTrials extends SweepInfo {
  trials: ReportTrial[];
}

/** The sweep row. Unknown sweep -> UnknownNameError listing the sweeps there are. */
function sweepOf(store: ResultsStore, sweepName: string): SweepRow {
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
  return sweep;
}

function infoOf(sweep: SweepRow): SweepInfo {
  const reproduces = (sweep.specResolved as { reproduces?: unknown } | null)?.reproduces;
  return {
    sweep: sweep.name,
    reproduces: isPaperReference(reproduces) ? reproduces : null,
    specHash: sweep.specHash,
  };
}

/**
 * Streams a sweep from an open store into report groups. A trial's group is the hash of its config
 * without the seed, a start trial replaced by that trial's group (as groupKeys, with the start
 * trial looked up by key the first time a member names it); every member is read once, in id order.
 */
export function loadSweepFrom(store: ResultsStore, sweepName: string): LoadedSweep {
  const sweep = sweepOf(store, sweepName);
  // Parsed once per distinct shape (config minus seed and start key), not once per trial; the
  // group keys are memoised on the parsed object, so each row costs one lookup by its shape text.
  type Shape = Omit<TrialConfig, 'seed'>;
  const shapes = new Map<string, Shape>();
  const parse = (shape: string) => {
    let c = shapes.get(shape);
    if (!c) shapes.set(shape, (c = JSON.parse(shape) as Shape));
    return c;
  };
  const lookup = store.reportStartLookup(sweep.id);
  const plain = new Map<Shape, string>();
  const started = new Map<Shape, Map<string, string>>();
  const startGroups = new Map<string, string>();
  const visiting = new Set<string>();
  const groupOf = (shape: string, startKey: string | null): string => {
    const c = parse(shape);
    if (c.start.kind !== 'trial' || startKey === null) {
      let g = plain.get(c);
      if (g === undefined) plain.set(c, (g = sha256Hex(canonicalJson(c))));
      return g;
    }
    const parentGroup = startGroupOf(startKey);
    let byParent = started.get(c);
    if (!byParent) started.set(c, (byParent = new Map()));
    let g = byParent.get(parentGroup);
    if (g === undefined)
      byParent.set(
        parentGroup,
        (g = sha256Hex(canonicalJson({ ...c, start: { kind: 'trial', group: parentGroup } }))),
      );
    return g;
  };
  // The group of the trial `key` starts from: looked up once per distinct start trial.
  const startGroupOf = (key: string): string => {
    const hit = startGroups.get(key);
    if (hit !== undefined) return hit;
    if (visiting.has(key)) return 'cycle';
    const parent = lookup(key);
    visiting.add(key);
    const g = parent ? groupOf(parent.shape, parent.start_key) : 'outside-sweep';
    visiting.delete(key);
    startGroups.set(key, g);
    return g;
  };

  const groups = new Map<string, TrialGroup>();
  const totals = emptyTotals();
  for (const r of store.iterateReportTrials(sweep.id)) {
    const g = groupOf(r.shape, r.start_key);
    let group = groups.get(g);
    if (!group) {
      // The first trial's config, whole again (the row's columns are read from it).
      const c = parse(r.shape);
      const config = {
        ...c,
        start: r.start_key === null ? c.start : { ...c.start, trialKey: r.start_key },
        seed: r.seed,
      } as TrialConfig;
      groups.set(g, (group = new TrialGroup(g, config)));
    }
    group.add({
      key: r.key,
      status: r.status,
      seed: r.seed,
      values: r.ok
        ? {
            accuracyFinal: r.accuracy_final,
            accuracyAfterDecomposition: r.accuracy_after_decomposition,
            accuracyOriginal: r.accuracy_original,
            paramsRatio: r.params_ratio,
            macsRatio: r.macs_ratio,
            latencyRatio: r.latency_ratio,
            layersRatio: r.layers_ratio,
            decompositionError: r.decomposition_error,
            wallSeconds: r.wall_seconds,
          }
        : null,
    });
    totals.trials++;
    totals[r.status]++;
  }
  return { ...infoOf(sweep), trials: { groups, totals } };
}

/** Reads every trial of a sweep from an open store as a ReportTrial (memory grows with the trials). */
export function loadSweepTrialsFrom(store: ResultsStore, sweepName: string): LoadedSweepTrials {
  const sweep = sweepOf(store, sweepName);
  const trials = store.listTrials({ sweepId: sweep.id });
  const summaries = new Map<string, ReportSummaryRow>();
  for (const r of store.reportTrialSummaries(sweep.id)) summaries.set(r.key, r);
  const layers = new Map<string, ReportLayerRow[]>();
  for (const l of store.reportTrialLayers(sweep.id)) layers.set(l.key, [...(layers.get(l.key) ?? []), l]);

  return {
    ...infoOf(sweep),
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
          relativeError: l.relative_error,
          firstDistortionError: l.first_distortion_error,
        })),
      };
    }),
  };
}

/**
 * The per-layer ranks and the allocation records of a sweep's succeeded trials (current attempts),
 * the input of buildRankProfile.
 */
export function loadSweepRanksFrom(store: ResultsStore, sweepName: string): SweepRanks {
  const sweep = sweepOf(store, sweepName);
  return {
    layers: store.reportRankLayers(sweep.id).map((l) => ({
      key: l.key,
      seed: l.seed,
      layer: l.layer,
      decomposition: l.decomposition,
      ranks: JSON.parse(l.ranks) as number[],
      paramsBefore: l.params_before,
      paramsAfter: l.params_after,
    })),
    allocations: store.reportAllocations(sweep.id).map((a) => {
      const record = JSON.parse(a.record) as { layers?: AllocationInput['layers'] };
      return {
        key: a.key,
        seed: a.seed,
        policy: a.policy,
        budget:
          a.budget_kind === null || a.budget_ratio === null
            ? null
            : { kind: a.budget_kind, ratio: a.budget_ratio },
        achieved: { params: a.achieved_params_ratio, macs: a.achieved_macs_ratio },
        layers: (record.layers ?? []).map((l) => ({ name: l.name, ranks: l.ranks })),
      };
    }),
  };
}

function toSummary(s: ReportSummaryRow): TrialSummary {
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

/** loadSweep with every trial as a ReportTrial (see loadSweepTrialsFrom). */
export function loadSweepTrials(dbFile: string, sweepName: string): LoadedSweepTrials {
  const store = ResultsStore.open(dbFile, { readonly: true });
  try {
    return loadSweepTrialsFrom(store, sweepName);
  } finally {
    store.close();
  }
}

/** loadSweepRanksFrom on a read-only connection to `dbFile`. */
export function loadSweepRanks(dbFile: string, sweepName: string): SweepRanks {
  const store = ResultsStore.open(dbFile, { readonly: true });
  try {
    return loadSweepRanksFrom(store, sweepName);
  } finally {
    store.close();
  }
}

import { afterEach, describe, expect, it } from 'vitest';
import { trialKey } from '@flatrank/protocol';
import {
  createTempDb,
  populateTempDb,
  tempDbTrialConfig,
  tempDbTrialEvents,
  type TempDb,
} from '@flatrank/testing';
import { trialDetail, type ReportTrialRow } from '../src/index.js';
import { connectionOf } from '../src/internal.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

describe('report rows', () => {
  it('streams the members in id order: shapes without seed / start key, ratios as report computes them', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { sweepId, keys, configs } = populateTempDb(store, { seeds: 2, succeeded: 2 });
    // A trial that starts from the first one, and a member of another sweep that must not show.
    const child = tempDbTrialConfig({ seed: 5, start: { kind: 'trial', trialKey: keys[0]! } });
    store.insertTrials(sweepId, [{ key: trialKey(child), config: child }]);
    const { id: other } = store.upsertSweep({
      name: 'other',
      specText: '',
      specResolved: null,
      specHash: '',
    });
    const alien = tempDbTrialConfig({ seed: 99 });
    store.insertTrials(other, [{ key: trialKey(alien), config: alien }]);

    const rows: ReportTrialRow[] = [...store.iterateReportTrials(sweepId)];
    expect(rows.map((r) => r.key)).toEqual([...keys, trialKey(child)]);
    const [a, b] = rows;
    expect(a!.seed).toBe(0);
    expect(b!.seed).toBe(1);
    // Seeds 0 and 1 of one configuration share a shape, which has neither seed nor start key.
    expect(a!.shape).toBe(b!.shape);
    const shape = JSON.parse(a!.shape) as Record<string, unknown>;
    expect(shape).not.toHaveProperty('seed');
    expect(shape).toMatchObject({ method: configs[0]!.method, start: { kind: 'scratch' } });
    expect(a).toMatchObject({
      status: 'succeeded',
      ok: 1,
      start_key: null,
      accuracy_original: 0.95,
      accuracy_after_decomposition: 0.5,
      accuracy_final: 0.8,
      params_ratio: 2, // 60000 / 30000
      macs_ratio: 400000 / 250000,
      latency_ratio: 2 / 1.5,
      layers_ratio: 2, // one layer record: 2400 / 1200
      decomposition_error: 0.25, // finetune: the layer's relative error
      wall_seconds: 3.5,
    });
    // Every field of the row, no other.
    expect(Object.keys(a!).sort()).toEqual(
      [
        'key',
        'status',
        'seed',
        'shape',
        'start_key',
        'ok',
        'accuracy_original',
        'accuracy_after_decomposition',
        'accuracy_final',
        'params_ratio',
        'macs_ratio',
        'latency_ratio',
        'wall_seconds',
        'layers_ratio',
        'decomposition_error',
      ].sort(),
    );
    const last = rows.at(-1)!;
    expect(last.start_key).toBe(keys[0]);
    expect(JSON.parse(last.shape)).toMatchObject({ start: { kind: 'trial' } });
    expect(JSON.parse(last.shape).start).not.toHaveProperty('trialKey');
    // Pending trials carry no values.
    expect(last).toMatchObject({ status: 'pending', ok: 0, accuracy_final: null, layers_ratio: null });

    // A zero denominator is no ratio (as report's ratio()); a result of a non-succeeded trial is not a value.
    connectionOf(store)
      .prepare('UPDATE results SET params_after = 0 WHERE trial_id = (SELECT id FROM trials WHERE key = ?)')
      .run(keys[0]);
    connectionOf(store).prepare("UPDATE trials SET status = 'failed' WHERE key = ?").run(keys[1]);
    const again = [...store.iterateReportTrials(sweepId)];
    expect(again[0]).toMatchObject({ ok: 1, params_ratio: null, macs_ratio: 1.6 });
    expect(again[1]).toMatchObject({ status: 'failed', ok: 0, accuracy_final: null, params_ratio: null });

    const lookup = store.reportStartLookup(sweepId);
    expect(lookup(keys[0]!)).toEqual({ key: keys[0], shape: a!.shape, start_key: null });
    expect(lookup(trialKey(child))).toMatchObject({ start_key: keys[0] });
    // Not a member of this sweep (it is of 'other'), or not a trial at all.
    expect(lookup(trialKey(alien))).toBeUndefined();
    expect(lookup('0'.repeat(64))).toBeUndefined();
  });

  it('default to the points of the latest spec; retired members on request, results kept', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { sweepId, keys, configs } = populateTempDb(store, { seeds: 2, succeeded: 2 });
    // The latest spec keeps the second trial only.
    store.syncSweepTrials(sweepId, [{ key: keys[1]!, config: configs[1]! }]);
    expect([...store.iterateReportTrials(sweepId)].map((r) => r.key)).toEqual([keys[1]]);
    const retired = [...store.iterateReportTrials(sweepId, { membership: 'retired' })];
    expect(retired.map((r) => r.key)).toEqual(keys.filter((k) => k !== keys[1]));
    expect(retired[0]).toMatchObject({ status: 'succeeded', ok: 1, accuracy_final: 0.8 });
    expect([...store.iterateReportTrials(sweepId, { membership: 'all' })]).toHaveLength(keys.length);
    expect(store.reportStartLookup(sweepId)(keys[0]!)).toBeUndefined();
    expect(store.reportStartLookup(sweepId, { membership: 'all' })(keys[0]!)).toMatchObject({
      key: keys[0],
    });
    expect(() => store.iterateReportTrials(sweepId, { membership: 'every' as never })).toThrow(
      /membership: unknown value "every"; allowed: current, retired, all/,
    );
  });

  it('layer records keep the lowering order, the fit record and the first / final distortion errors', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { sweepId } = populateTempDb(store, { seeds: 1, succeeded: 0 });
    const c = store.claimTrial({ sweepId, worker: 'w', leaseMs: 60_000, maxAttempts: 1 })!;
    store.applyEvents(
      tempDbTrialEvents(c.key, 1).map((e) =>
        e.event.type === 'layer'
          ? {
              ...e,
              event: {
                ...e.event,
                layer: {
                  ...e.event.layer,
                  decomposition: 'cp' as const,
                  order: null,
                  iterations: 37,
                  converged: true,
                  cp: { init: 'svd' as const, seed: 1003, fit: 0.75 },
                  firstDistortionError: 0.5,
                  finalDistortionError: 1e-6,
                },
              },
            }
          : e,
      ),
    );
    const detail = trialDetail(store, c.key);
    expect(detail.layers[0]).toMatchObject({
      decomposition: 'cp',
      lowering_order: null,
      iterations: 37,
      converged: 1,
      cp_init: 'svd',
      cp_seed: 1003,
      cp_fit: 0.75,
      relative_error: 0.25,
      first_distortion_error: 0.5,
      final_distortion_error: 1e-6,
    });
    // populateTempDb's trials are finetune: their comparable error is relative_error
    expect([...store.iterateReportTrials(sweepId)][0]!.decomposition_error).toBe(0.25);
  });

  it('layer sums follow the current attempt only', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { sweepId } = populateTempDb(store, { seeds: 1, succeeded: 0 });
    const c1 = store.claimTrial({ sweepId, worker: 'w', leaseMs: 60_000, maxAttempts: 3 })!;
    // Attempt 1 reports a layer, then fails retryably; attempt 2 reports a different layer and finishes.
    const first = tempDbTrialEvents(c1.key, 1).filter(
      (e) => e.event.type === 'started' || e.event.type === 'layer',
    );
    store.applyEvents([
      ...first,
      {
        trialKey: c1.key,
        attempt: 1,
        seq: 100,
        event: { type: 'failed', error: { name: 'Error', code: 'X', message: 'x' }, retryable: true },
      },
    ]);
    const c2 = store.claimTrial({ sweepId, worker: 'w', leaseMs: 60_000, maxAttempts: 3 })!;
    expect(c2).toMatchObject({ key: c1.key, attempt: 2 });
    const events = tempDbTrialEvents(c2.key, 2).map((e) =>
      e.event.type === 'layer'
        ? { ...e, event: { ...e.event, layer: { ...e.event.layer, paramsAfter: 600 } } }
        : e,
    );
    store.applyEvents(events);
    const row = [...store.iterateReportTrials(sweepId)].find((r) => r.key === c1.key)!;
    expect(row.layers_ratio).toBe(4); // 2400 / 600 from attempt 2, not (2400 + 2400) / (1200 + 600)
  });
  it('per-trial results and layer rows: members with a results row, current attempt, by key and layer', () => {
    tmp = createTempDb();
    const store = tmp.store!;
    const { sweepId, keys, configs } = populateTempDb(store, { seeds: 3, succeeded: 2 });
    const summaries = store.reportTrialSummaries(sweepId);
    expect(summaries.map((s) => s.key).sort()).toEqual(keys.slice(0, 2).sort());
    expect(summaries[0]).toMatchObject({
      accuracy_final: 0.8,
      params_before: 60000,
      params_after: 30000,
      wall_seconds: 3.5,
      epochs: expect.any(Number),
    });
    const layers = store.reportTrialLayers(sweepId);
    expect(layers.map((l) => l.key)).toEqual([...keys.slice(0, 2)].sort());
    expect(layers[0]).toMatchObject({ params_before: 2400, params_after: 1200 });
    // Retired members only on request.
    store.syncSweepTrials(sweepId, [{ key: keys[1]!, config: configs[1]! }]);
    expect(store.reportTrialSummaries(sweepId).map((s) => s.key)).toEqual([keys[1]]);
    expect(store.reportTrialLayers(sweepId, { membership: 'retired' }).map((l) => l.key)).toEqual([keys[0]]);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { trialKey } from '@flatrank/protocol';
import { createTempDb, type TempDb } from '@flatrank/testing';
import { ResultsStore, runUserQuery } from '@flatrank/store';
import { UnknownNameError, StoreError } from '@flatrank/protocol';
import {
  aggregate,
  buildReport,
  formatReport,
  loadSweep,
  loadSweepTrials,
  plotData,
  renderPlotSvg,
  type ReportRow,
} from '../src/index.js';
import { cfg, writeSweep, type HandTrial } from './helpers.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

const tucker = (ratio: number) => ({
  decomposition: 'tucker2' as const,
  rank: { kind: 'ratio' as const, ratio },
});

/** baseline x2 seeds, finetune x3, distort S_D=200 x3 (one diverged), distort S_D=50, cp with a fixed rank, posttrain svd 4x (+1 pending). */
function handSweep(): HandTrial[] {
  const base = [0, 1].map((seed) => cfg({ method: 'baseline', seed }));
  const fromBase = (seed: number) => ({ kind: 'trial' as const, trialKey: trialKey(base[seed % 2]!) });
  const t: HandTrial[] = [
    { config: base[0]!, outcome: 'succeeded', summary: { accuracyFinal: 0.95, wallSeconds: 10 } },
    { config: base[1]!, outcome: 'succeeded', summary: { accuracyFinal: 0.97, wallSeconds: 12 } },
  ];
  [0.9, 0.92, 0.94].forEach((acc, seed) =>
    t.push({
      config: cfg({ method: 'finetune', seed, start: fromBase(seed), compression: tucker(2) }),
      outcome: 'succeeded',
      summary: {
        accuracyFinal: acc,
        accuracyAfterDecomposition: 0.5 + seed / 10,
        paramsAfter: 30000,
        macsAfter: 200000,
        latencyAfterMs: 1,
      },
      layers: [
        { name: 'conv2', paramsBefore: 2400, paramsAfter: 800 },
        { name: 'conv3', paramsBefore: 1600, paramsAfter: 1200 },
      ],
    }),
  );
  [0.93, 0.95].forEach((acc, seed) =>
    t.push({
      config: cfg({ method: 'distort', seed, compression: tucker(2) }),
      outcome: 'succeeded',
      summary: { accuracyFinal: acc, paramsAfter: 30000 },
    }),
  );
  t.push({ config: cfg({ method: 'distort', seed: 2, compression: tucker(2) }), outcome: 'diverged' });
  t.push({
    config: cfg({ method: 'distort', seed: 0, compression: tucker(2), distortion: { interval: 50 } }),
    outcome: 'succeeded',
    summary: { accuracyFinal: 0.91, paramsAfter: 30000 },
  });
  t.push({
    config: cfg({
      method: 'finetune',
      seed: 0,
      compression: { decomposition: 'cp', rank: { kind: 'rank', rank: 4 } },
    }),
    outcome: 'succeeded',
    summary: { accuracyFinal: 0.88, paramsAfter: 30300 },
  });
  t.push({
    config: cfg({
      method: 'posttrain',
      seed: 0,
      compression: { decomposition: 'svd', rank: { kind: 'ratio', ratio: 4 } },
    }),
    outcome: 'succeeded',
    summary: { accuracyFinal: 0.6, paramsAfter: 15000 },
  });
  t.push({
    config: cfg({
      method: 'posttrain',
      seed: 1,
      compression: { decomposition: 'svd', rank: { kind: 'ratio', ratio: 4 } },
    }),
    outcome: 'pending',
  });
  return t;
}

function row(rows: readonly ReportRow[], pred: (r: ReportRow) => boolean): ReportRow {
  const hits = rows.filter(pred);
  expect(hits).toHaveLength(1);
  return hits[0]!;
}

describe('aggregation over a hand-made database', () => {
  it('groups seeds, computes mean / std / ratios, marks the best per ratio', () => {
    tmp = createTempDb();
    writeSweep(tmp.store!, 'hand', { name: 'hand' }, handSweep());
    const loaded = loadSweep(tmp.path, 'hand');
    expect(loaded.trials.totals.trials).toBe(12);
    expect(loaded.trials.groups.size).toBe(6);
    expect(loaded.reproduces).toBeNull();
    expect(loadSweepTrials(tmp.path, 'hand').trials).toHaveLength(12);
    const rows = aggregate(loaded.trials);
    expect(rows).toHaveLength(6);

    const base = rows[0]!;
    expect(base.isBaseline).toBe(true);
    expect(base.accuracyFinal.mean).toBeCloseTo(0.96, 12);
    expect(base.accuracyFinal.std).toBeCloseTo(Math.SQRT2 * 0.01, 12);
    expect(base.wallSeconds.mean).toBe(11);
    expect(base.seeds).toEqual([0, 1]);

    // Three seeds starting from two different baseline trials are still one experiment.
    const ft = row(rows, (r) => r.method === 'finetune' && r.decomposition === 'tucker2');
    expect(ft.accuracyFinal.n).toBe(3);
    expect(ft.accuracyFinal.mean).toBeCloseTo(0.92, 12);
    expect(ft.accuracyFinal.std).toBeCloseTo(0.02, 12);
    expect(ft.accuracyAfterDecomposition.mean).toBeCloseTo(0.6, 12);
    expect(ft.paramsRatio.mean).toBeCloseTo(2, 12);
    expect(ft.macsRatio.mean).toBeCloseTo(2, 12);
    expect(ft.latencyRatio.mean).toBeCloseTo(2, 12);
    expect(ft.layersRatio.mean).toBeCloseTo(2, 12);
    expect(ft.targetRatio).toBe(2);
    expect(ft.rank).toBe('ratio 2x');
    expect(ft.best).toBe(false);

    const d200 = row(rows, (r) => r.method === 'distort' && r.distortionInterval === 200);
    expect(d200.status.succeeded).toBe(2);
    expect(d200.status.diverged).toBe(1);
    expect(d200.accuracyFinal.n).toBe(2);
    expect(d200.accuracyFinal.mean).toBeCloseTo(0.94, 12);
    expect(d200.variant).toBe('S_D=200');
    expect(d200.best).toBe(true);
    const d50 = row(rows, (r) => r.method === 'distort' && r.distortionInterval === 50);
    expect(d50.variant).toBe('S_D=50');
    expect(d50.accuracyFinal.std).toBeNull();

    // A fixed rank has no target: its measured ratio (1.98) joins the 2x bucket.
    const cp = row(rows, (r) => r.decomposition === 'cp');
    expect(cp.targetRatio).toBeNull();
    expect(cp.bucket).toBe(2);
    expect(cp.best).toBe(false);
    expect(rows.filter((r) => r.best)).toEqual([d200]);

    const post = row(rows, (r) => r.method === 'posttrain');
    expect(post.status).toMatchObject({ succeeded: 1, pending: 1 });
    expect(post.bucket).toBe(4);
    // Alone at its ratio: nothing to be best against.
    expect(post.best).toBe(false);
    expect(rows.at(-1)).toBe(post);

    const report = buildReport(loaded.trials, { sweep: 'hand' });
    expect(report.totals).toMatchObject({ trials: 12, succeeded: 10, diverged: 1, pending: 1 });
    expect(report.rows.every((r) => r.paper === null)).toBe(true);
  });

  it('streamed groups and per-trial objects give byte-identical reports and plots', () => {
    tmp = createTempDb();
    const trials = handSweep();
    // A baseline of another sweep (outside this one), a fine-tune starting from it, a chain of two
    // trial starts, a result without a final accuracy, and a trial shared with the other sweep.
    const outside = cfg({ method: 'baseline', seed: 7, training: { epochs: 2, lr: 0.05, batchSize: 32 } });
    writeSweep(tmp.store!, 'other', { name: 'other' }, [
      { config: outside, outcome: 'succeeded' },
      trials[0]!,
    ]);
    const ft = trials[2]!.config;
    trials.push(
      {
        config: cfg({
          method: 'finetune',
          seed: 0,
          start: { kind: 'trial', trialKey: trialKey(outside) },
          compression: tucker(2),
        }),
        outcome: 'succeeded',
        summary: { accuracyFinal: 0.5 },
      },
      {
        config: cfg({
          method: 'finetune',
          seed: 0,
          start: { kind: 'trial', trialKey: trialKey(ft) },
          compression: tucker(4),
        }),
        outcome: 'succeeded',
        summary: { accuracyFinal: 0.8123456789, paramsAfter: 15001, wallSeconds: 3.3 },
        layers: [
          { name: 'conv2', paramsBefore: 2400, paramsAfter: 601 },
          { name: 'conv1', paramsBefore: 150, paramsAfter: 150 },
        ],
      },
      {
        config: cfg({ method: 'posttrain', seed: 3, compression: tucker(4) }),
        outcome: 'succeeded',
        summary: { accuracyFinal: null as unknown as number, paramsAfter: 20000 },
        layers: [{ name: 'conv2', paramsBefore: 2400, paramsAfter: 700 }],
      },
    );
    writeSweep(tmp.store!, 'hand', { name: 'hand', reproduces: 'paper-fig3' }, trials);
    const streamed = loadSweep(tmp.path, 'hand');
    const perTrial = loadSweepTrials(tmp.path, 'hand');
    expect(streamed.trials.totals.trials).toBe(perTrial.trials.length);
    const opts = { sweep: streamed.sweep, reproduces: streamed.reproduces };
    const a = buildReport(streamed.trials, opts);
    const b = buildReport(perTrial.trials, opts);
    // The outside start is its own group, the chained start its own row.
    expect(a.rows.filter((r) => r.method === 'finetune' && r.decomposition === 'tucker2')).toHaveLength(3);
    for (const f of ['md', 'csv', 'json'] as const) expect(formatReport(a, f)).toBe(formatReport(b, f));
    expect(renderPlotSvg(plotData(a))).toBe(renderPlotSvg(plotData(b)));
  });

  it("comparable decomposition errors: distort's first distortion beside fine-tuning's, the same through both loaders", () => {
    tmp = createTempDb();
    const base = cfg({ method: 'baseline', seed: 0 });
    const start = { kind: 'trial' as const, trialKey: trialKey(base) };
    const trials: HandTrial[] = [
      { config: base, outcome: 'succeeded', summary: { accuracyFinal: 0.9 } },
      {
        config: cfg({ method: 'distort', seed: 0, start, compression: tucker(2) }),
        outcome: 'succeeded',
        summary: { accuracyFinal: 0.88, accuracyAfterDecomposition: 0.6, paramsAfter: 30000 },
        layers: [
          { name: 'conv2', relativeError: 1e-6, firstDistortionError: 0.6, finalDistortionError: 1e-6 },
          { name: 'fc1', relativeError: 2e-6, firstDistortionError: 0.4, finalDistortionError: 2e-6 },
        ],
      },
      {
        config: cfg({ method: 'finetune', seed: 0, start, compression: tucker(2) }),
        outcome: 'succeeded',
        summary: { accuracyFinal: 0.87, accuracyAfterDecomposition: 0.6, paramsAfter: 30000 },
        layers: [
          { name: 'conv2', relativeError: 0.7 },
          { name: 'fc1', relativeError: 0.5 },
        ],
      },
    ];
    writeSweep(tmp.store!, 'err', { name: 'err' }, trials);
    // The layers table keeps both, the view picks the comparable one per method.
    const rows = runUserQuery(
      tmp.path,
      'SELECT method, layer, relative_error, first_distortion_error, final_distortion_error, decomposition_error FROM trial_layers ORDER BY method, layer',
    ).rows;
    expect(rows).toEqual([
      {
        method: 'distort',
        layer: 'conv2',
        relative_error: 1e-6,
        first_distortion_error: 0.6,
        final_distortion_error: 1e-6,
        decomposition_error: 0.6,
      },
      {
        method: 'distort',
        layer: 'fc1',
        relative_error: 2e-6,
        first_distortion_error: 0.4,
        final_distortion_error: 2e-6,
        decomposition_error: 0.4,
      },
      {
        method: 'finetune',
        layer: 'conv2',
        relative_error: 0.7,
        first_distortion_error: null,
        final_distortion_error: null,
        decomposition_error: 0.7,
      },
      {
        method: 'finetune',
        layer: 'fc1',
        relative_error: 0.5,
        first_distortion_error: null,
        final_distortion_error: null,
        decomposition_error: 0.5,
      },
    ]);
    const a = buildReport(loadSweep(tmp.path, 'err').trials, { sweep: 'err' });
    const b = buildReport(loadSweepTrials(tmp.path, 'err').trials, { sweep: 'err' });
    const by = (m: string) => a.rows.find((r) => r.method === m)!;
    expect(by('distort').decompositionError.mean).toBeCloseTo(0.5, 12);
    expect(by('finetune').decompositionError.mean).toBeCloseTo(0.6, 12);
    expect(by('baseline').decompositionError.mean).toBeNull();
    const md = formatReport(a, 'md');
    expect(md).toContain('| decomp. err. |');
    expect(md).toMatch(/\| distort tucker2 \|.*\| 0\.500 \|/);
    for (const f of ['md', 'csv', 'json'] as const) expect(formatReport(a, f)).toBe(formatReport(b, f));
    // Without first-distortion errors (distort trials recorded before them) the column is left out.
    const old = buildReport(
      loadSweepTrials(tmp.path, 'err').trials.map((t) => ({
        ...t,
        layers: t.layers.map((l) => ({ ...l, firstDistortionError: null })),
      })),
      { sweep: 'err' },
    );
    expect(formatReport(old, 'md')).not.toContain('decomp. err.');
  });

  it('unknown sweep and missing database are typed errors', () => {
    tmp = createTempDb();
    writeSweep(tmp.store!, 'hand', { name: 'hand' }, handSweep().slice(0, 2));
    expect(() => loadSweep(tmp!.path, 'nope')).toThrow(UnknownNameError);
    try {
      loadSweep(tmp.path, 'nope');
    } catch (e) {
      expect((e as UnknownNameError).allowed).toEqual(['hand']);
    }
    const missing = createTempDb({ create: false });
    try {
      expect(() => loadSweep(missing.path, 'hand')).toThrow(StoreError);
      try {
        loadSweep(missing.path, 'hand');
      } catch (e) {
        expect((e as StoreError).code).toBe('DB_MISSING');
      }
    } finally {
      missing.cleanup();
    }
  });

  it('reads the spec field reproduces', () => {
    tmp = createTempDb();
    writeSweep(tmp.store!, 'fig3', { name: 'fig3', reproduces: 'paper-fig3' }, handSweep().slice(0, 1));
    writeSweep(tmp.store!, 'other', { name: 'other', reproduces: 'something-else' }, handSweep().slice(1, 2));
    const s = ResultsStore.open(tmp.path, { readonly: true });
    s.close();
    expect(loadSweep(tmp.path, 'fig3').reproduces).toBe('paper-fig3');
    expect(loadSweep(tmp.path, 'other').reproduces).toBeNull();
  });

  it('trp trials: one row per scheme x energy x trp settings, seeds grouped, the reached ratio as the row ratio', () => {
    tmp = createTempDb();
    const base = [0, 1].map((seed) => cfg({ method: 'baseline', seed }));
    const trp = (seed: number, scheme: 'lowered' | 'spatial', threshold: number, lambda: number) =>
      cfg({
        method: 'trp',
        seed,
        start: { kind: 'trial', trialKey: trialKey(base[seed]!) },
        compression: { decomposition: 'svd', scheme, rank: { kind: 'energy', threshold } },
        trp: { interval: 20, lambda },
      });
    const trials: HandTrial[] = base.map((config) => ({ config, outcome: 'succeeded' as const }));
    for (const seed of [0, 1])
      for (const [scheme, threshold, lambda, paramsAfter] of [
        ['lowered', 0.9, 3e-4, 20000],
        ['spatial', 0.9, 3e-4, 24000],
        ['lowered', 0.95, 3e-4, 30000],
        ['lowered', 0.9, 0, 25000],
      ] as const)
        trials.push({
          config: trp(seed, scheme, threshold, lambda),
          outcome: 'succeeded',
          summary: { paramsAfter: paramsAfter + seed * 100, accuracyFinal: 0.9 - seed * 0.01 },
        });
    writeSweep(tmp.store!, 'trp', { name: 'trp' }, trials);
    const rows = aggregate(loadSweep(tmp.path, 'trp').trials).filter((r) => r.method === 'trp');
    expect(rows).toHaveLength(4);
    for (const r of rows) {
      expect(r.seeds).toEqual([0, 1]);
      expect(r.decomposition).toBe('svd');
      expect(r.targetRatio).toBeNull(); // the ratio is a result, not a target
    }
    const spatial = row(rows, (r) => r.variant.includes('scheme=spatial'));
    expect(spatial.rank).toBe('energy=0.9');
    expect(spatial.variant).toBe('order=- scheme=spatial lambda=0.0003');
    expect(spatial.paramsRatio.mean).toBeCloseTo((60000 / 24000 + 60000 / 24100) / 2, 12);
    expect(spatial.ratio).toBeCloseTo(spatial.paramsRatio.mean!, 12);
    const noPenalty = row(rows, (r) => r.variant.endsWith(' lambda=0'));
    expect(noPenalty.rank).toBe('energy=0.9');
    expect(row(rows, (r) => r.rank === 'energy=0.95').variant).toBe('order=hwc scheme=lowered lambda=0.0003');
  });
});

// Whole trp trials (runTrial) on LeNet-5 and the wasm backend: the projections, the exactly
// low-rank checkpoint at the recorded ranks, the export, and lambda's pull on the ranks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isTerminalEvent,
  type LayerRecord,
  type TrialConfigInput,
  type TrialEvent,
} from '@flatrank/protocol';
import { Tensor, svd } from '@flatrank/core';
import { kernelToMatrix } from '@flatrank/decomposers';
import { runTrial, type RunTrialOptions } from '../src/trial.js';
import { loadCheckpoint } from '../src/training/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-trp-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const trp = (
  scheme: 'lowered' | 'spatial',
  trpBlock: Record<string, unknown>,
  energy = 0.9,
): TrialConfigInput => ({
  model: 'lenet5',
  dataset: { name: 'mnist', trainLimit: 768, testLimit: 256 },
  training: { epochs: 1, maxSteps: 24, batchSize: 32, lr: 0.05, weightDecay: 1e-4 },
  method: 'trp',
  compression: {
    decomposition: 'svd',
    scheme,
    rank: { kind: 'energy', threshold: energy },
    layers: { kind: 'all-but-first', includeFc: true },
  },
  trp: trpBlock as { interval: number; lambda: number },
  seed: 3,
});

function opts(name: string, events: TrialEvent[]): RunTrialOptions {
  return {
    dataDir: null,
    artifactDir: join(dir, name),
    startCheckpoint: null,
    backend: 'wasm',
    heartbeatMs: 1000,
    emit: (e) => events.push(e),
    logEverySteps: 8,
    latencyRepeats: 1,
  };
}

const metric = (events: TrialEvent[], phase: string, name: string) =>
  events.filter(
    (e): e is Extract<TrialEvent, { type: 'metric' }> =>
      e.type === 'metric' && e.phase === phase && e.name === name,
  );

const layerRecords = (events: TrialEvent[]): LayerRecord[] =>
  events.filter((e) => e.type === 'layer').map((e) => (e as Extract<TrialEvent, { type: 'layer' }>).layer);

/** Each saved target kernel's scheme matrix has the recorded rank: the rest is float32 rounding. */
async function expectExactlyLowRank(
  checkpoint: string,
  records: LayerRecord[],
  scheme: 'lowered' | 'spatial',
): Promise<void> {
  const ck = await loadCheckpoint(checkpoint, { optimizer: false });
  expect(ck.meta.exactlyLowRank).toBe(true);
  const byLayer = new Map(records.map((r) => [r.name, r.ranks[0]!]));
  const kernels = ck.weights.filter((w) => /kernel/.test(w.name) && byLayer.has(w.name.split('/')[0]!));
  expect(kernels.map((w) => w.name.split('/')[0])).toEqual(['conv2', 'fc1', 'fc2', 'fc3']);
  for (const w of kernels) {
    const r = byLayer.get(w.name.split('/')[0]!)!;
    const k = new Tensor(Float64Array.from(w.tensor.dataSync()), w.tensor.shape);
    const s = svd(kernelToMatrix(k, w.tensor.rank === 4 ? scheme : 'lowered')).S;
    expect(r, w.name).toBeLessThan(s.length);
    expect(s[r - 1]! / s[0]!, w.name).toBeGreaterThan(1e-3); // the recorded rank is really kept
    expect(s[r]! / s[0]!, w.name).toBeLessThan(1e-5); // and nothing past it
  }
}

describe('runTrial method trp', { timeout: 180_000 }, () => {
  it('channel-wise (lowered), subgradient every step: projections every m steps, exactly low-rank at the recorded ranks, exact export', async () => {
    const events: TrialEvent[] = [];
    const s = await runTrial(trp('lowered', { interval: 8, lambda: 1e-3 }), opts('lowered', events));
    expect(events.filter(isTerminalEvent).map((e) => e.type)).toEqual(['finished']);
    expect(s.steps).toBe(24);
    // projections at steps 8, 16, 24: the last step was one, so no extra final projection
    expect(metric(events, 'train', 'distortion_error').map((m) => m.step)).toEqual([8, 16, 24]);
    expect(metric(events, 'train', 'params_ratio').map((m) => m.step)).toEqual([8, 16, 24]);
    expect(metric(events, 'train', 'nuclear_norm')).toHaveLength(3);
    expect(metric(events, 'final', 'distortions')[0]!.value).toBe(3);
    expect(metric(events, 'final', 'nuclear_subgradient_steps')[0]!.value).toBe(24);
    expect(metric(events, 'final', 'export_max_rel_deviation')[0]!.value).toBeLessThan(1e-4);
    const records = layerRecords(events);
    expect(records.map((r) => r.name)).toEqual(['conv2', 'fc1', 'fc2', 'fc3']);
    for (const r of records) {
      expect(r.scheme).toBe('lowered');
      expect(r.ranks[0]!).toBeLessThan(
        Math.min(
          ...r.kernelShape.slice(-1),
          r.kernelShape.slice(0, -1).reduce((a, b) => a * b, 1),
        ),
      );
    }
    // The whole-model ratio reached is the trial's result: params after = before - the layers' savings,
    // and the last projection's params_ratio metric says the same.
    const saved = records.reduce((a, r) => a + r.paramsBefore - r.paramsAfter, 0);
    expect(s.paramsAfter).toBe(s.paramsBefore - saved);
    expect(metric(events, 'train', 'params_ratio')[2]!.value).toBeCloseTo(s.paramsBefore / s.paramsAfter, 10);
    expect(s.accuracyAfterDecomposition).toBeNull(); // from scratch
    expect(s.latencyAfterMs).toBeGreaterThan(0);
    await expectExactlyLowRank(join(dir, 'lowered', 'checkpoint'), records, 'lowered');
    // One allocation record: no budget, the final ranks, and the rank trajectory of the projections.
    const allocations = events.filter(
      (e): e is Extract<TrialEvent, { type: 'allocation' }> => e.type === 'allocation',
    );
    expect(allocations).toHaveLength(1);
    const a = allocations[0]!.allocation;
    expect(a.policy).toBe('trp');
    expect(a.budget).toBeNull();
    expect(a.achieved.params).toBeCloseTo(s.paramsBefore / s.paramsAfter, 12);
    expect(a.achieved.macs).toBeCloseTo(s.macsBefore / s.macsAfter, 12);
    expect(a.layers.map((l) => [l.name, l.ranks, l.error])).toEqual(
      records.map((r) => [r.name, r.ranks, r.relativeError]),
    );
    const measured = a.measured as {
      energy: number;
      scheme: string;
      interval: number;
      lambda: number;
      nuclearEvery: string;
      projections: number;
      trajectory: Array<{ step: number; ranks: number[]; paramsRatio: number }>;
    };
    expect(measured).toMatchObject({
      energy: 0.9,
      scheme: 'lowered',
      interval: 8,
      lambda: 1e-3,
      projections: 3,
    });
    expect(measured.trajectory.map((p) => p.step)).toEqual([8, 16, 24]);
    expect(measured.trajectory.map((p) => p.paramsRatio)).toEqual(
      metric(events, 'train', 'params_ratio').map((m) => m.value),
    );
    expect(measured.trajectory.at(-1)!.ranks).toEqual(records.map((r) => r.ranks[0]));
  });

  it('spatial-wise, subgradient at projections only, with a final projection after the last step', async () => {
    const events: TrialEvent[] = [];
    const cfg = trp('spatial', { interval: 5, lambda: 1e-3, nuclearEvery: 'projection' });
    const s = await runTrial(
      { ...cfg, training: { ...cfg.training!, maxSteps: 12 } },
      opts('spatial', events),
    );
    expect(s.steps).toBe(12);
    expect(metric(events, 'train', 'distortion_error').map((m) => m.step)).toEqual([5, 10]);
    expect(metric(events, 'final', 'distortion_error')).toHaveLength(1);
    expect(metric(events, 'final', 'params_ratio')).toHaveLength(1);
    expect(metric(events, 'final', 'distortions')[0]!.value).toBe(3);
    // steps 6 and 11 follow a projection
    expect(metric(events, 'final', 'nuclear_subgradient_steps')[0]!.value).toBe(2);
    expect(metric(events, 'final', 'export_max_rel_deviation')[0]!.value).toBeLessThan(1e-4);
    const records = layerRecords(events);
    expect(records.map((r) => r.scheme)).toEqual(['spatial', 'lowered', 'lowered', 'lowered']);
    await expectExactlyLowRank(join(dir, 'spatial', 'checkpoint'), records, 'spatial');
  });

  it('a larger lambda ends with smaller ranks (same seed, same steps)', async () => {
    const ranks = async (lambda: number): Promise<number[]> => {
      const events: TrialEvent[] = [];
      await runTrial(trp('lowered', { interval: 8, lambda }, 0.95), opts(`lambda-${lambda}`, events));
      return layerRecords(events).map((r) => r.ranks[0]!);
    };
    const none = await ranks(0);
    const strong = await ranks(0.05);
    for (let i = 0; i < none.length; i++) expect(strong[i]!, `layer ${i}`).toBeLessThanOrEqual(none[i]!);
    expect(strong.reduce((a, b) => a + b, 0)).toBeLessThan(none.reduce((a, b) => a + b, 0));
  });
});

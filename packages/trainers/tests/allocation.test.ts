// The allocate rank policy through the compression engine: budgets against the counts a trial
// reports, and the sensitivity measurement on a real TF.js model whose answer is planted.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allocateRanks } from '@flatrank/decomposers';
import { RankError, compressionSchema, type CompressionConfig } from '@flatrank/protocol';
import { buildModel } from '../src/models/index.js';
import {
  allocationLayers,
  allocationRecord,
  decomposeTargets,
  fixRanks,
  measureSensitivity,
  modelCounts,
  planCompression,
  type ValidationSplit,
} from '../src/compression/index.js';
import { initBackend } from '../src/backend/index.js';

const comp = (c: Record<string, unknown>): CompressionConfig => compressionSchema.parse(c);

let dir: string;
beforeAll(async () => {
  // The measurement evaluates the model some 40 times: the wasm backend keeps that to seconds.
  await initBackend({ backend: 'wasm' });
  dir = mkdtempSync(join(tmpdir(), 'flatrank-allocation-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('allocate by error / vbmf in the engine', () => {
  it.each([
    ['tucker2', 'error', 'params', 3],
    ['tucker2', 'vbmf', 'params', 4],
    ['svd', 'error', 'macs', 2.5],
    ['cp', 'error', 'params', 3],
  ] as const)(
    '%s by %s: the %s ratio the trial reports is the budget, within 1 %%',
    (decomposition, by, basis, ratio) => {
      const model = buildModel('resnet20', { inputShape: [8, 8, 1], numClasses: 10, seed: 21 });
      const plan = planCompression(
        model,
        comp({
          decomposition,
          tucker: { algorithm: 'hosvd' },
          cp: { maxIterations: 5 },
          layers: { kind: 'all-but-first', includeFc: decomposition !== 'cp' },
          rank: { kind: 'allocate', by, target: { [basis]: ratio } },
        }),
        0,
      );
      expect(plan.allocation).toBeNull();
      fixRanks(model, plan);
      const allocation = plan.allocation!;
      expect(allocation.layers.map((l) => l.name)).toEqual(plan.targets.map((t) => t.layer.name));
      const results = decomposeTargets(model, plan);
      results.forEach((r, i) => expect(r.decomposition.ranks).toEqual(allocation.layers[i]!.ranks));
      const counts = modelCounts(model, plan, results);
      const reported = {
        params: counts.paramsBefore / counts.paramsAfter,
        macs: counts.macsBefore / counts.macsAfter,
      };
      expect(allocation.achieved.params).toBeCloseTo(reported.params, 10);
      expect(allocation.achieved.macs).toBeCloseTo(reported.macs, 10);
      expect(reported[basis]).toBeGreaterThanOrEqual(ratio);
      expect(reported[basis]).toBeLessThan(ratio * 1.01);
      const record = allocationRecord(plan)!;
      expect(record.policy).toBe(`alloc-${by}:${basis}=${ratio}`);
      expect(record.budget).toEqual({ kind: basis, ratio });
      expect(record.layers.map((l) => l.ranks)).toEqual(results.map((r) => r.decomposition.ranks));
      if (by === 'error') expect(record.layers.every((l) => typeof l.error === 'number')).toBe(true);
      else expect(record.measured).toMatchObject({ by: 'vbmf', scale: expect.any(Number) });
      // Fixed once: a later distortion keeps them.
      fixRanks(model, plan);
      expect(plan.allocation).toBe(allocation);
      model.dispose();
    },
  );

  it('refuses a budget below the smallest model when planning, before any training', () => {
    const model = buildModel('resnet8', { inputShape: [8, 8, 1], numClasses: 10, seed: 1 });
    expect(() =>
      planCompression(
        model,
        comp({ decomposition: 'tucker2', rank: { kind: 'allocate', by: 'error', target: { params: 200 } } }),
        0,
      ),
    ).toThrow(RankError);
    expect(() =>
      planCompression(
        model,
        comp({ decomposition: 'tucker2', rank: { kind: 'allocate', by: 'error', target: { params: 200 } } }),
        0,
      ),
    ).toThrow(/rank\.target\.params: .*out of reach/);
    model.dispose();
  });
});

/** Random inputs labelled by the model itself: its accuracy is 1, and falls as far as a change moves its outputs. */
function selfLabelled(model: tfl.LayersModel, n: number, seed: number): ValidationSplit {
  return tf.tidy(() => {
    const x = tf.randomNormal([n, 8, 8, 1], 0, 1, 'float32', seed);
    const labels = tf.argMax(model.predict(x) as tf.Tensor, -1).dataSync() as Int32Array;
    return {
      split: { images: x.dataSync() as Float32Array, labels: Int32Array.from(labels), count: n },
      info: { source: 'train' as const, size: n, seed, trainCount: n, sha256: `self-${seed}` },
    };
  });
}

describe('allocate by sensitivity: the measurement', { timeout: 120_000 }, () => {
  // ResNet-8 with the residual branch of block s2b1 switched off (its last batch norm's scale and
  // offset zeroed): compressing s2b1_conv1 / s2b1_conv2 costs nothing, every other conv costs.
  function deadBranchModel(): tfl.LayersModel {
    const model = buildModel('resnet8', { inputShape: [8, 8, 1], numClasses: 4, seed: 7 });
    const bn = model.getLayer('s2b1_bn2');
    bn.setWeights(bn.getWeights().map((w, i) => (i < 2 ? tf.zerosLike(w) : w)));
    return model;
  }
  const compression = comp({
    decomposition: 'svd',
    rank: {
      kind: 'allocate',
      by: 'sensitivity',
      target: { params: 2.5 },
      sensitivity: { candidates: [1 / 8, 1 / 4, 1 / 2, 3 / 4] },
    },
  });

  it('gives the layers whose compression costs nothing the least rank; by error does not', async () => {
    const model = deadBranchModel();
    const validation = selfLabelled(model, 128, 3);
    const plan = planCompression(model, compression, 0);
    const env = {
      validation,
      imageShape: [8, 8, 1],
      numClasses: 4,
      cacheDir: join(dir, 'curves'),
      beat: () => {},
    };
    const budget = { untargetedParams: plan.untargeted.params, untargetedMacs: plan.untargeted.macs };
    const a = await allocateRanks(allocationLayers(model, plan), plan.allocate!, {
      ...budget,
      measure: measureSensitivity(model, env),
    });
    expect(a.measured['baselineAccuracy']).toBe(1);
    const byName = new Map(
      a.layers.map((l, i) => [
        l.name,
        { rank: l.ranks[0]!, full: Math.min(...plan.targets[i]!.kernelShape.slice(2)) },
      ]),
    );
    const fraction = (n: string): number => byName.get(n)!.rank / byName.get(n)!.full;
    const dead = ['s2b1_conv1', 's2b1_conv2'];
    const alive = a.layers.map((l) => l.name).filter((n) => !dead.includes(n));
    for (const d of dead)
      for (const n of alive) expect(fraction(d), `${d} vs ${n}`).toBeLessThan(fraction(n));
    // The curves: flat at accuracy 1 for the dead branch, falling for the others at their smallest ranks.
    const curve = (n: string) =>
      a.layers.find((l) => l.name === n)!.measured['curve'] as Array<{ accuracy: number }>;
    for (const d of dead) expect(curve(d).every((p) => p.accuracy === 1)).toBe(true);
    for (const n of alive) expect(curve(n)[0]!.accuracy, n).toBeLessThan(1);
    expect(a.achieved.params).toBeGreaterThanOrEqual(2.5);
    expect(a.achieved.params).toBeLessThan(2.5 * 1.02);
    // The data-free criterion sees two ordinary kernels there and gives them ordinary ranks.
    const e = await allocateRanks(allocationLayers(model, plan), { ...plan.allocate!, by: 'error' }, budget);
    const errorRank = e.layers.find((l) => l.name === 's2b1_conv2')!.ranks[0]!;
    expect(errorRank).toBeGreaterThan(byName.get('s2b1_conv2')!.rank);
    model.dispose();
  });

  it('caches the curves per start model, split and candidates, and leaves the model unchanged', async () => {
    const model = deadBranchModel();
    const validation = selfLabelled(model, 64, 4);
    const plan = planCompression(model, compression, 0);
    const cacheDir = join(dir, 'cache');
    const before = model.getWeights().map((w) => Float32Array.from(w.dataSync() as Float32Array));
    const run = async (m: tfl.LayersModel, v: ValidationSplit) =>
      allocateRanks(allocationLayers(m, plan), plan.allocate!, {
        untargetedParams: plan.untargeted.params,
        untargetedMacs: plan.untargeted.macs,
        measure: measureSensitivity(m, {
          validation: v,
          imageShape: [8, 8, 1],
          numClasses: 4,
          cacheDir,
          beat: () => {},
        }),
      });
    const first = await run(model, validation);
    model
      .getWeights()
      .forEach((w, i) => expect(Float32Array.from(w.dataSync() as Float32Array)).toEqual(before[i]));
    expect(first.measured['cache']).toMatchObject({ hit: false });
    expect(readdirSync(cacheDir)).toHaveLength(1);
    const second = await run(model, validation);
    expect(second.measured['cache']).toMatchObject({
      hit: true,
      key: (first.measured['cache'] as { key: string }).key,
    });
    expect(second.layers.map((l) => l.measured['curve'])).toEqual(
      first.layers.map((l) => l.measured['curve']),
    );
    // Another split, or other weights: other curves.
    const third = await run(model, selfLabelled(model, 64, 5));
    expect(third.measured['cache']).toMatchObject({ hit: false });
    const k = model.getLayer('s1b1_conv1');
    k.setWeights(k.getWeights().map((w) => tf.mul(w, 1.5)));
    const fourth = await run(model, validation);
    expect(fourth.measured['cache']).toMatchObject({ hit: false });
    expect(readdirSync(cacheDir)).toHaveLength(3);
    model.dispose();
  });
});

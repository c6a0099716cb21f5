import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DivergedError, type TrialEvent } from '@flatrank/protocol';
import {
  evaluateModel,
  learningRateAt,
  loadCheckpoint,
  loadCheckpointModel,
  MomentumSgd,
  reestimateBatchNorm,
  restoreWeights,
  saveCheckpoint,
  trainableVariables,
  trainLoop,
  CancelledError,
} from '../src/training/index.js';
import { batchesOf, blobs, tinyNet, useCpu } from './training-fixtures.js';

const shape = [8, 8, 1];
const recipe = {
  epochs: 2,
  maxSteps: null,
  optimizer: { name: 'sgd' as const, momentum: 0.9, nesterov: false },
  lr: 0.05,
  schedule: { kind: 'constant' as const },
  weightDecay: 1e-4,
};
let dir: string;

beforeAll(async () => {
  await useCpu();
  dir = mkdtempSync(join(tmpdir(), 'flatrank-training-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('learning-rate schedules', () => {
  it('step: gamma at each milestone (in epochs)', () => {
    const s = { kind: 'step' as const, milestones: [2, 4], gamma: 0.1 };
    expect(learningRateAt(s, 0.1, 0, 6)).toBeCloseTo(0.1);
    expect(learningRateAt(s, 0.1, 1.99, 6)).toBeCloseTo(0.1);
    expect(learningRateAt(s, 0.1, 2, 6)).toBeCloseTo(0.01);
    expect(learningRateAt(s, 0.1, 5.5, 6)).toBeCloseTo(0.001);
  });
  it('cosine: lr at 0, midpoint average, minLr at the end', () => {
    const s = { kind: 'cosine' as const, minLr: 0.001 };
    expect(learningRateAt(s, 0.1, 0, 10)).toBeCloseTo(0.1);
    expect(learningRateAt(s, 0.1, 5, 10)).toBeCloseTo((0.1 + 0.001) / 2);
    expect(learningRateAt(s, 0.1, 10, 10)).toBeCloseTo(0.001);
    expect(learningRateAt(s, 0.1, 2.5, 10)).toBeGreaterThan(learningRateAt(s, 0.1, 7.5, 10));
  });
  it('constant', () => expect(learningRateAt({ kind: 'constant' }, 0.3, 7, 10)).toBe(0.3));
});

describe('MomentumSgd', () => {
  it('matches the hand-computed momentum + weight-decay update and resets its buffers to zero', () => {
    const w = tf.variable(tf.tensor1d([1, -2]), true, 'sgd_test_w');
    const opt = new MomentumSgd([{ variable: w, decay: true }], {
      momentum: 0.9,
      nesterov: false,
      weightDecay: 0.1,
    });
    opt.step({ [w.name]: tf.tensor1d([0.5, 0.5]) }, 0.1);
    // g = grad + 0.1 w = [0.6, 0.3]; buf = g; w = w - 0.1 g
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.94, 6), expect.closeTo(-2.03, 6)]);
    opt.step({ [w.name]: tf.tensor1d([0, 0]) }, 0.1);
    // g = 0.1 w = [0.094, -0.203]; buf = 0.9*[0.6,0.3] + g = [0.634, 0.067]
    expect(Array.from(w.dataSync())).toEqual([
      expect.closeTo(0.94 - 0.0634, 6),
      expect.closeTo(-2.03 - 0.0067, 6),
    ]);
    expect(opt.momentumSquaredNorm()).toBeGreaterThan(0.4);
    opt.resetMomentum();
    expect(opt.momentumSquaredNorm()).toBe(0);
    // after a reset the next step is plain SGD again: buf = g
    const before = Array.from(w.dataSync());
    opt.step({ [w.name]: tf.tensor1d([1, 1]) }, 0.1);
    const g0 = 1 + 0.1 * before[0]!;
    expect(w.dataSync()[0]).toBeCloseTo(before[0]! - 0.1 * g0, 6);
    opt.dispose();
    w.dispose();
  });
  it('nesterov: w -= lr * (g + momentum * buf)', () => {
    const w = tf.variable(tf.tensor1d([1]), true, 'sgd_test_nesterov');
    const opt = new MomentumSgd([{ variable: w, decay: false }], {
      momentum: 0.5,
      nesterov: true,
      weightDecay: 0,
    });
    opt.step({ [w.name]: tf.tensor1d([2]) }, 0.1); // buf = 2; d = 2 + 0.5*2 = 3
    expect(w.dataSync()[0]).toBeCloseTo(0.7, 6);
    opt.step({ [w.name]: tf.tensor1d([2]) }, 0.1); // buf = 1 + 2 = 3; d = 2 + 1.5 = 3.5
    expect(w.dataSync()[0]).toBeCloseTo(0.35, 6);
    opt.dispose();
    w.dispose();
  });
  it('decays kernels but not biases or batch-norm parameters', () => {
    const m = tinyNet(1, { batchNorm: true });
    const vars = trainableVariables(m);
    const decayed = m.trainableWeights.filter((_, i) => vars[i]!.decay).map((w) => w.originalName);
    expect(decayed.every((n) => n.endsWith('kernel'))).toBe(true);
    expect(decayed).toHaveLength(4);
    expect(vars.filter((v) => !v.decay).length).toBeGreaterThan(0);
  });
});

describe('trainLoop', { timeout: 120_000 }, () => {
  it('learns the synthetic task, evaluates every epoch, and is deterministic', async () => {
    const train = blobs(256, 1);
    const test = blobs(128, 2);
    const run = async () => {
      const model = tinyNet(7);
      const events: TrialEvent[] = [];
      const res = await trainLoop({
        model,
        recipe: { ...recipe, epochs: 3 },
        numClasses: 4,
        epochBatches: (e) => batchesOf(train, shape, 32, 100 + e),
        evaluate: () => evaluateModel(model, test, shape, 4),
        emit: (e) => events.push(e),
        logEverySteps: 4,
        heartbeatMs: 0,
      });
      const weights = model.getWeights().map((w) => Array.from(w.dataSync()));
      return { res, events, weights };
    };
    const a = await run();
    expect(a.res.steps).toBe(24);
    expect(a.res.epochs).toBe(3);
    expect(a.res.lastEval!.accuracy).toBeGreaterThan(0.9);
    const evals = a.events.filter((e) => e.type === 'metric' && e.phase === 'eval' && e.name === 'accuracy');
    expect(evals).toHaveLength(3);
    expect(a.events.some((e) => e.type === 'heartbeat')).toBe(true);
    const stepLosses = a.events.filter(
      (e): e is Extract<TrialEvent, { type: 'metric' }> =>
        e.type === 'metric' && e.name === 'loss' && e.phase === 'train',
    );
    expect(stepLosses.length).toBe(6);
    expect(stepLosses[stepLosses.length - 1]!.value).toBeLessThan(stepLosses[0]!.value);
    const b = await run();
    expect(b.weights).toEqual(a.weights);
  });

  it('resetMomentum from the step hook zeroes the live buffers (the distortion option)', async () => {
    const model = tinyNet(6);
    const train = blobs(96, 7);
    const norms: Array<[number, number]> = [];
    await trainLoop({
      model,
      recipe: { ...recipe, epochs: 1 },
      numClasses: 4,
      epochBatches: (e) => batchesOf(train, shape, 16, e),
      emit: () => {},
      afterStep: ({ step, optimizer }) => {
        if (step % 3 !== 0) return;
        const before = optimizer.momentumSquaredNorm();
        optimizer.resetMomentum();
        norms.push([before, optimizer.momentumSquaredNorm()]);
      },
    });
    expect(norms).toHaveLength(2);
    for (const [before, after] of norms) {
      expect(before).toBeGreaterThan(0);
      expect(after).toBe(0);
    }
  });

  it('adjustGradients: the optimizer steps with the gradients the hook leaves (a penalty without a TF.js gradient)', async () => {
    const model = tinyNet(6);
    const train = blobs(32, 7);
    const vars = trainableVariables(model);
    const before = vars.map((v) => Float32Array.from(v.variable.dataSync() as Float32Array));
    const seen: number[] = [];
    const c = 0.5;
    const lr = 0.1;
    await trainLoop({
      model,
      recipe: {
        ...recipe,
        epochs: 1,
        maxSteps: 2,
        lr,
        weightDecay: 0,
        optimizer: { ...recipe.optimizer, momentum: 0 },
      },
      numClasses: 4,
      epochBatches: (e) => batchesOf(train, shape, 16, e),
      emit: () => {},
      // the loss gradient is replaced by the constant c: plain SGD then moves every weight by -lr * c
      adjustGradients: (grads, { step }) => {
        seen.push(step);
        for (const [name, g] of Object.entries(grads)) {
          grads[name] = tf.fill(g.shape, c);
          g.dispose();
        }
      },
    });
    expect(seen).toEqual([1, 2]);
    vars.forEach((v, i) => {
      const after = v.variable.dataSync() as Float32Array;
      for (let k = 0; k < after.length; k++) expect(after[k]! - before[i]![k]!).toBeCloseTo(-2 * lr * c, 5);
    });
  });

  it('moves the schedule within an epoch and anneals cosine over the maxSteps horizon', async () => {
    const model = tinyNet(8);
    const train = blobs(128, 9);
    const events: TrialEvent[] = [];
    await trainLoop({
      model,
      recipe: { ...recipe, epochs: 10, maxSteps: 4, lr: 0.1, schedule: { kind: 'cosine', minLr: 0 } },
      numClasses: 4,
      epochBatches: (e) => batchesOf(train, shape, 16, e),
      stepsPerEpoch: 8,
      logEverySteps: 1,
      emit: (e) => events.push(e),
    });
    const lrs = events
      .filter((e): e is Extract<TrialEvent, { type: 'metric' }> => e.type === 'metric' && e.name === 'lr')
      .map((e) => e.value);
    // step k uses epoch (k-1)/8 of a 4/8-epoch run
    expect(lrs).toHaveLength(4);
    lrs.forEach((lr, i) => expect(lr).toBeCloseTo((0.1 * (1 + Math.cos((Math.PI * (i / 8)) / 0.5))) / 2, 8));
  });

  it('stops at maxSteps', async () => {
    const model = tinyNet(2);
    const train = blobs(128, 3);
    const res = await trainLoop({
      model,
      recipe: { ...recipe, epochs: 5, maxSteps: 5 },
      numClasses: 4,
      epochBatches: (e) => batchesOf(train, shape, 16, e),
      emit: () => {},
    });
    expect(res.steps).toBe(5);
  });

  it('detects divergence with a huge learning rate', async () => {
    const model = tinyNet(3);
    const train = blobs(128, 4);
    const err = await trainLoop({
      model,
      recipe: { ...recipe, epochs: 3, lr: 1e4 },
      numClasses: 4,
      epochBatches: (e) => batchesOf(train, shape, 16, e),
      emit: () => {},
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DivergedError);
    expect((err as DivergedError).message).toMatch(/diverged at step \d+/);
  });

  it('honours an AbortSignal', async () => {
    const model = tinyNet(3);
    const train = blobs(64, 4);
    const ac = new AbortController();
    const err = await trainLoop({
      model,
      recipe,
      numClasses: 4,
      epochBatches: (e) => batchesOf(train, shape, 16, e),
      emit: () => {},
      signal: ac.signal,
      afterStep: ({ step }) => {
        if (step === 2) ac.abort('test');
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledError);
    expect((err as CancelledError).code).toBe('CANCELLED');
  });
});

describe('checkpoints', () => {
  it('round-trips weights and metadata; restores into a fresh model and from its own topology', async () => {
    const model = tinyNet(4, { batchNorm: true });
    const test = blobs(64, 5);
    const ckDir = join(dir, 'ck1');
    await saveCheckpoint(model, ckDir, {
      trialKey: 'k',
      config: null,
      architecture: 'base',
      epoch: 3,
      step: 30,
      accuracy: 0.5,
    });
    expect(readdirSync(ckDir).sort()).toEqual(['flatrank.json', 'model.json', 'weights.bin']);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const ck = await loadCheckpoint(ckDir);
    expect(ck.meta).toMatchObject({ trialKey: 'k', epoch: 3, step: 30, accuracy: 0.5, architecture: 'base' });
    const other = tinyNet(99, { batchNorm: true });
    restoreWeights(other, ck);
    const a = model.predict(tf.tensor4d(test.images.subarray(0, 640), [10, 8, 8, 1])) as tf.Tensor;
    const b = other.predict(tf.tensor4d(test.images.subarray(0, 640), [10, 8, 8, 1])) as tf.Tensor;
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    const c = (await loadCheckpointModel(ck)).predict(
      tf.tensor4d(test.images.subarray(0, 640), [10, 8, 8, 1]),
    ) as tf.Tensor;
    expect(Array.from(c.dataSync())).toEqual(Array.from(a.dataSync()));
    // overwriting an existing checkpoint replaces it
    await saveCheckpoint(model, ckDir, {
      trialKey: 'k2',
      config: null,
      architecture: 'base',
      epoch: 4,
      step: 40,
      accuracy: null,
    });
    expect((await loadCheckpoint(ckDir)).meta.trialKey).toBe('k2');
  });

  it('rejects a truncated weights file and a different architecture', async () => {
    const ckDir = join(dir, 'ck2');
    await saveCheckpoint(tinyNet(1), ckDir, {
      trialKey: null,
      config: null,
      architecture: 'base',
      epoch: 0,
      step: 0,
      accuracy: null,
    });
    const ck = await loadCheckpoint(ckDir);
    expect(() => restoreWeights(tinyNet(1, { batchNorm: true }), ck)).toThrow(/weight tensors|shape/);
    writeFileSync(join(ckDir, 'weights.bin'), new Uint8Array(10));
    await expect(loadCheckpoint(ckDir)).rejects.toThrow(/truncated or corrupt/);
  });
});

describe('batch-norm re-estimation', () => {
  it('sets the moving statistics to the population statistics of the BN input', async () => {
    const model = tinyNet(5, { batchNorm: true });
    const train = blobs(64, 6);
    const n = reestimateBatchNorm(model, batchesOf(train, shape, 32, 0));
    expect(n).toBe(1);
    const bn = model.getLayer('bn2');
    const mean = bn.weights
      .find((w) => w.originalName.endsWith('moving_mean'))!
      .read()
      .dataSync();
    const variance = bn.weights
      .find((w) => w.originalName.endsWith('moving_variance'))!
      .read()
      .dataSync();
    // the input of bn2 is conv2's output over all 64 images
    const probe = tf.tidy(() => {
      const x = tf.tensor4d(train.images, [64, 8, 8, 1]);
      const conv2 = model.getLayer('conv2');
      const conv1 = model.getLayer('conv1');
      const h = conv2.apply(conv1.apply(x)) as tf.Tensor;
      const m = tf.moments(h, [0, 1, 2]);
      return [m.mean.dataSync(), m.variance.dataSync()];
    });
    for (let c = 0; c < 8; c++) {
      expect(mean[c]).toBeCloseTo(probe[0]![c]!, 4);
      expect(variance[c]).toBeCloseTo(probe[1]![c]!, 4);
    }
  });
});

// Optimizer (momentum) state in checkpoints: save / load, the restore rules, old checkpoints,
// corrupt files, atomic replacement. cpu backend, the tiny net of training-fixtures.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, ShapeError, ValidationError, type TrialEvent } from '@flatrank/protocol';
import {
  disposeCheckpoint,
  loadCheckpoint,
  momentumStartFor,
  MomentumSgd,
  restoreMomentum,
  restoreWeights,
  saveCheckpoint,
  trainableVariables,
  trainLoop,
  type Batch,
  type MomentumStart,
  type OptimizerState,
} from '../src/training/index.js';
import { batchesOf, blobs, tinyNet, useCpu } from './training-fixtures.js';

const shape = [8, 8, 1];
const recipe = {
  epochs: 1,
  maxSteps: null,
  optimizer: { name: 'sgd' as const, momentum: 0.9, nesterov: false },
  lr: 0.05,
  schedule: { kind: 'constant' as const },
  weightDecay: 1e-4,
};
const train = blobs(160, 11);
/** Written by saveCheckpoint before optimizer state existed (commit 78a9d6e): tinyNet(7, { batchNorm: true }). */
const BEFORE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'checkpoint-before-optimizer-state');
let dir: string;

beforeAll(async () => {
  await useCpu();
  dir = mkdtempSync(join(tmpdir(), 'flatrank-ckpt-opt-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Batches [from, to) of one fixed order of 10 batches of 16 (fresh tensors, the loop disposes them). */
function range(from: number, to: number): Batch[] {
  const all = batchesOf(train, shape, 16, 3);
  all.forEach((b, i) => {
    if (i < from || i >= to) tf.dispose([b.x, b.y]);
  });
  return all.slice(from, to);
}

function weightsOf(model: tfl.LayersModel): number[][] {
  return model.weights.map((w) => Array.from(w.read().dataSync()));
}

function disposeModels(...models: tfl.LayersModel[]): void {
  for (const m of models) m.dispose();
}

function maxAbsDiff(a: number[][], b: number[][]): number {
  let d = 0;
  a.forEach((t, i) => t.forEach((v, j) => (d = Math.max(d, Math.abs(v - b[i]![j]!)))));
  return d;
}

function momentumMetrics(events: TrialEvent[]): number[] {
  return events.flatMap((e) => (e.type === 'metric' && e.name === 'momentum_restored' ? [e.value] : []));
}

/** Trains `steps` batches from `from`, optionally offered a saved momentum. */
async function trainSteps(
  model: tfl.LayersModel,
  from: number,
  to: number,
  extra: { momentumStart?: MomentumStart; keepOptimizerState?: boolean } = {},
) {
  const events: TrialEvent[] = [];
  const res = await trainLoop({
    model,
    recipe,
    numClasses: 4,
    epochBatches: () => range(from, to),
    emit: (e) => events.push(e),
    stepOffset: from,
    heartbeatMs: 1e9,
    ...extra,
  });
  return { res, events };
}

async function savedAfter(steps: number, name: string, trialKey = 'trial-A'): Promise<string> {
  const model = tinyNet(3, { batchNorm: true });
  const { res } = await trainSteps(model, 0, steps, { keepOptimizerState: true });
  const ckDir = join(dir, name);
  await saveCheckpoint(
    model,
    ckDir,
    { trialKey, config: null, architecture: 'base', epoch: 0, step: steps, accuracy: null },
    { optimizer: res.optimizerState },
  );
  model.dispose();
  return ckDir;
}

describe('resume with momentum', { timeout: 60_000 }, () => {
  it('k steps + checkpoint + resume m steps = k + m uninterrupted steps (bitwise); fresh momentum differs', async () => {
    const k = 5;
    const m = 5;
    const whole = tinyNet(3, { batchNorm: true });
    await trainSteps(whole, 0, k + m);
    const expected = weightsOf(whole);

    const ckDir = await savedAfter(k, 'resume');
    expect(readdirSync(ckDir).sort()).toEqual([
      'flatrank.json',
      'model.json',
      'optimizer.bin',
      'optimizer.json',
      'weights.bin',
    ]);
    const ck = await loadCheckpoint(ckDir);
    // Same checkpoint format as before (older readers and the scheduler still accept it); the
    // optimizer part carries its own version.
    expect(ck.meta.format).toBe('flatrank-checkpoint-1');
    expect(ck.meta.optimizer).toEqual({
      format: 'flatrank-optimizer-1',
      kind: 'sgd-momentum',
      file: 'optimizer.json',
      buffers: 9,
    });
    expect(ck.optimizer!.slots.map((s) => s.name)).toContain('bn2/gamma');

    // Resume into a differently initialised model: every weight and buffer comes from the checkpoint.
    const resumed = tinyNet(42, { batchNorm: true });
    restoreWeights(resumed, ck);
    const start = momentumStartFor(ck, 'trial-A');
    expect(start.mode).toBe('resume');
    const r = await trainSteps(resumed, k, k + m, { momentumStart: start });
    expect(r.res.momentum).toMatchObject({ restored: true, mode: 'resume', source: ckDir });
    expect(momentumMetrics(r.events)).toEqual([1]);
    expect(weightsOf(resumed)).toEqual(expected);

    // The same resume with fresh momentum (what every resume did before): measurably different.
    const freshModel = tinyNet(42, { batchNorm: true });
    restoreWeights(freshModel, ck);
    const f = await trainSteps(freshModel, k, k + m, {
      momentumStart: { ...start, state: null, absentReason: 'test: dropped' },
    });
    expect(f.res.momentum).toMatchObject({
      restored: false,
      reason: expect.stringContaining('test: dropped'),
    });
    expect(momentumMetrics(f.events)).toEqual([0]);
    expect(maxAbsDiff(weightsOf(freshModel), expected)).toBeGreaterThan(1e-4);

    disposeCheckpoint(ck);
    disposeModels(whole, resumed, freshModel);
  });
});

describe('checkpoints without optimizer state', () => {
  it('a checkpoint written before optimizer state loads; training records fresh momentum', async () => {
    const ck = await loadCheckpoint(BEFORE);
    expect(ck.meta.format).toBe('flatrank-checkpoint-1');
    expect(ck.meta.optimizer).toBeUndefined();
    expect(ck.optimizer).toBeNull();
    expect(ck.optimizerAbsentReason).toBe(`${BEFORE} was written before checkpoints carried optimizer state`);
    const model = tinyNet(1, { batchNorm: true });
    restoreWeights(model, ck);
    const start = momentumStartFor(ck, ck.meta.trialKey);
    expect(start.mode).toBe('resume');
    const { res, events } = await trainSteps(model, 0, 2, { momentumStart: start });
    expect(res.steps).toBe(2);
    expect(res.momentum!.restored).toBe(false);
    expect(res.momentum!.reason).toBe(`momentum starts fresh: ${ck.optimizerAbsentReason}`);
    expect(momentumMetrics(events)).toEqual([0]);
    disposeCheckpoint(ck);
    model.dispose();
  });

  it('a checkpoint saved without state says so', async () => {
    const ckDir = join(dir, 'no-state');
    await saveCheckpoint(tinyNet(2), ckDir, {
      trialKey: null,
      config: null,
      architecture: 'base',
      epoch: 0,
      step: 0,
      accuracy: null,
    });
    expect(readdirSync(ckDir).sort()).toEqual(['flatrank.json', 'model.json', 'weights.bin']);
    const ck = await loadCheckpoint(ckDir);
    expect(ck.meta.optimizer).toBeNull();
    expect(ck.optimizer).toBeNull();
    expect(ck.optimizerAbsentReason).toBe(`${ckDir} was saved without optimizer state`);
    disposeCheckpoint(ck);
  });

  it('optimizer state of an unknown (newer) version: the weights load, momentum starts fresh', async () => {
    const ckDir = await savedAfter(1, 'newer-optimizer');
    const metaFile = join(ckDir, 'flatrank.json');
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as { optimizer: { format: string } };
    meta.optimizer.format = 'flatrank-optimizer-9';
    writeFileSync(metaFile, JSON.stringify(meta));
    const ck = await loadCheckpoint(ckDir);
    expect(ck.optimizer).toBeNull();
    expect(ck.optimizerAbsentReason).toMatch(/format "flatrank-optimizer-9", which this version cannot read/);
    expect(ck.weights).toHaveLength(11);
    disposeCheckpoint(ck);
  });
});

describe('corrupt optimizer files', { timeout: 60_000 }, () => {
  let good: string;
  beforeAll(async () => {
    good = await savedAfter(2, 'good');
  });
  const corrupted = (name: string, damage: (d: string) => void): string => {
    const d = join(dir, name);
    cpSync(good, d, { recursive: true });
    damage(d);
    return d;
  };
  const dataError = async (d: string): Promise<DataError> => {
    const err = await loadCheckpoint(d).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    return err as DataError;
  };

  it('truncated optimizer.bin', async () => {
    const d = corrupted('trunc-bin', (d) => {
      const bin = readFileSync(join(d, 'optimizer.bin'));
      writeFileSync(join(d, 'optimizer.bin'), bin.subarray(0, bin.byteLength - 7));
    });
    const err = await dataError(d);
    expect(err.file).toBe(join(d, 'optimizer.bin'));
    expect(err.message).toContain(join(d, 'optimizer.bin'));
    expect(err.message).toMatch(/truncated or corrupt optimizer state/);
  });

  it('a changed byte in optimizer.bin (same length): the sha256 check', async () => {
    const d = corrupted('flip-bin', (d) => {
      const bin = readFileSync(join(d, 'optimizer.bin'));
      bin[13] = bin[13]! ^ 0x40;
      writeFileSync(join(d, 'optimizer.bin'), bin);
    });
    const err = await dataError(d);
    expect(err.file).toBe(join(d, 'optimizer.bin'));
    expect(err.message).toMatch(/sha256 .* differs/);
  });

  it('truncated optimizer.json, missing optimizer.bin, a wrong buffer list', async () => {
    const j = corrupted('trunc-json', (d) => {
      const text = readFileSync(join(d, 'optimizer.json'), 'utf8');
      writeFileSync(join(d, 'optimizer.json'), text.slice(0, text.length / 2));
    });
    const e1 = await dataError(j);
    expect(e1.file).toBe(join(j, 'optimizer.json'));
    expect(e1.message).toContain(`${join(j, 'optimizer.json')} is not valid JSON`);

    const missing = corrupted('missing-bin', (d) => rmSync(join(d, 'optimizer.bin')));
    const e2 = await dataError(missing);
    expect(e2.file).toBe(join(missing, 'optimizer.bin'));
    expect(e2.message).toMatch(/cannot be read/);

    const shapes = corrupted('bad-shapes', (d) => {
      const meta = JSON.parse(readFileSync(join(d, 'optimizer.json'), 'utf8')) as {
        buffers: Array<{ shape: number[] }>;
      };
      meta.buffers[0]!.shape = [3, 3, 1, 5];
      writeFileSync(join(d, 'optimizer.json'), JSON.stringify(meta));
    });
    const e3 = await dataError(shapes);
    expect(e3.file).toBe(join(shapes, 'optimizer.json'));
    expect(e3.message).toMatch(/bytes \d+, the buffers need \d+ \(corrupt optimizer state\)/);

    // Callers that do not train can skip the optimizer files entirely.
    const ck = await loadCheckpoint(shapes, { optimizer: false });
    expect(ck.optimizer).toBeNull();
    expect(ck.optimizerAbsentReason).toMatch(/not read/);
    disposeCheckpoint(ck);
  });
});

describe('when momentum is restored', { timeout: 60_000 }, () => {
  let ckDir: string;
  let state: OptimizerState;
  beforeAll(async () => {
    ckDir = await savedAfter(3, 'policy', 'baseline-trial');
    const ck = await loadCheckpoint(ckDir);
    state = ck.optimizer!;
    disposeCheckpoint(ck);
  });
  const sgdFor = (model: tfl.LayersModel, momentum = 0.9) =>
    new MomentumSgd(trainableVariables(model), { momentum, nesterov: false, weightDecay: 1e-4 });
  const sumSq = (s: OptimizerState) =>
    s.slots.reduce((t, b) => t + b.values.reduce((u, v) => u + v * v, 0), 0);

  it('another trial of the same architecture (distortion from a baseline): restored, buffers equal', () => {
    const model = tinyNet(9, { batchNorm: true });
    const opt = sgdFor(model);
    const r = restoreMomentum(opt, { state, mode: 'continue', source: ckDir });
    expect(r).toMatchObject({ restored: true, mode: 'continue' });
    expect(sumSq(state)).toBeGreaterThan(0);
    expect(opt.exportState().slots).toEqual(state.slots);
    opt.dispose();
    model.dispose();
  });

  it('changed variables (other shapes, other names): fresh, and the reason names the variable', () => {
    const wider = tinyNet(9, { batchNorm: true, classes: 6 });
    const opt = sgdFor(wider);
    const r = restoreMomentum(opt, { state, mode: 'continue', source: ckDir });
    expect(r.restored).toBe(false);
    expect(r.reason).toMatch(/variable fc\/kernel has shape \[\d+, 6\], its saved buffer \[\d+, 4\]/);
    expect(opt.momentumSquaredNorm()).toBe(0);
    opt.dispose();

    const noBn = tinyNet(9);
    const opt2 = sgdFor(noBn);
    const r2 = restoreMomentum(opt2, { state, mode: 'continue', source: ckDir });
    expect(r2.restored).toBe(false);
    expect(r2.reason).toMatch(
      /no saved buffer for variable conv2\/bias \(the saved state has 9 buffers, the model 8/,
    );
    opt2.dispose();
    disposeModels(wider, noBn);
  });

  it('resume of the same trial must fit exactly: ShapeError / ValidationError otherwise', () => {
    const wider = tinyNet(9, { batchNorm: true, classes: 6 });
    const opt = sgdFor(wider);
    expect(() => restoreMomentum(opt, { state, mode: 'resume', source: ckDir })).toThrow(ShapeError);
    opt.dispose();
    const same = tinyNet(9, { batchNorm: true });
    const opt2 = sgdFor(same, 0.5);
    expect(() => restoreMomentum(opt2, { state, mode: 'resume', source: ckDir })).toThrow(ValidationError);
    opt2.dispose();
    disposeModels(wider, same);
  });

  it('momentumStartFor: resume only for the same trial key', async () => {
    const ck = await loadCheckpoint(ckDir);
    expect(momentumStartFor(ck, 'baseline-trial').mode).toBe('resume');
    expect(momentumStartFor(ck, 'distort-trial').mode).toBe('continue');
    expect(momentumStartFor(ck, null).mode).toBe('continue');
    disposeCheckpoint(ck);
  });
});

describe('atomic writes', { timeout: 60_000 }, () => {
  it('replacing a checkpoint leaves no temp or old directories; a refused state leaves the old one intact', async () => {
    const ckDir = await savedAfter(1, 'atomic');
    const model = tinyNet(3, { batchNorm: true });
    const { res } = await trainSteps(model, 0, 2, { keepOptimizerState: true });
    await saveCheckpoint(
      model,
      ckDir,
      { trialKey: 'second', config: null, architecture: 'base', epoch: 0, step: 2, accuracy: null },
      { optimizer: res.optimizerState },
    );
    expect(readdirSync(dir).filter((f) => f.startsWith('.atomic'))).toEqual([]);
    expect((await loadCheckpoint(ckDir, { optimizer: false })).meta.trialKey).toBe('second');

    // A state that belongs to another model is refused before anything is written.
    const other = tinyNet(3, { batchNorm: true, classes: 6 });
    const err = await saveCheckpoint(
      other,
      ckDir,
      { trialKey: 'third', config: null, architecture: 'base', epoch: 0, step: 0, accuracy: null },
      { optimizer: res.optimizerState },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).field).toBe('optimizer');
    const ck = await loadCheckpoint(ckDir);
    expect(ck.meta.trialKey).toBe('second');
    expect(ck.optimizer!.slots).toEqual(res.optimizerState!.slots);
    expect(readdirSync(dir).filter((f) => f.startsWith('.atomic'))).toEqual([]);
    disposeCheckpoint(ck);
    disposeModels(model, other);
  });
});

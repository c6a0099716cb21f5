import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  DivergedError,
  ValidationError,
  isTerminalEvent,
  type TrialConfigInput,
  type TrialEvent,
} from '@flatrank/protocol';
import { Tensor, svd } from '@flatrank/core';
import { decompose, factoredLayer, kernelToMatrix } from '@flatrank/decomposers';
import { runTrial, type RunTrialOptions } from '../src/trial.js';
import { loadCheckpoint } from '../src/training/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-trial-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: TrialConfigInput = {
  model: 'lenet5',
  dataset: { name: 'mnist', trainLimit: 512, testLimit: 256 },
  training: { epochs: 2, batchSize: 32, lr: 0.05, weightDecay: 1e-4 },
  method: 'baseline',
  seed: 1,
};

function opts(name: string, events: TrialEvent[], extra: Partial<RunTrialOptions> = {}): RunTrialOptions {
  return {
    dataDir: null,
    artifactDir: join(dir, name),
    startCheckpoint: null,
    backend: 'wasm',
    heartbeatMs: 1000,
    emit: (e) => events.push(e),
    logEverySteps: 4,
    latencyRepeats: 1,
    ...extra,
  };
}

/** started first, exactly one terminal event, last. */
function checkSequence(events: TrialEvent[], terminal: TrialEvent['type']): void {
  expect(events[0]!.type).toBe('started');
  expect(events.filter(isTerminalEvent)).toHaveLength(1);
  expect(events[events.length - 1]!.type).toBe(terminal);
}

const metric = (events: TrialEvent[], phase: string, name: string) =>
  events.filter(
    (e): e is Extract<TrialEvent, { type: 'metric' }> =>
      e.type === 'metric' && e.phase === phase && e.name === name,
  );

let baselineCkpt: string;

// Real (small) trainings on the wasm backend; generous timeouts because the 2-core machine is shared.
describe('runTrial', { timeout: 120_000 }, () => {
  it('baseline: trains, evaluates, saves the final checkpoint, one terminal event', async () => {
    const events: TrialEvent[] = [];
    const s = await runTrial(base, opts('baseline', events));
    checkSequence(events, 'finished');
    const started = events[0] as Extract<TrialEvent, { type: 'started' }>;
    expect(started.env.backend).toBe('wasm');
    expect(s.steps).toBe(32);
    expect(s.epochs).toBe(2);
    expect(s.accuracyFinal).toBeGreaterThan(0.5);
    expect(s.accuracyAfterDecomposition).toBeNull();
    expect(s.paramsAfter).toBe(s.paramsBefore);
    expect(s.latencyBeforeMs).toBeGreaterThan(0);
    const art = events.find(
      (e): e is Extract<TrialEvent, { type: 'artifact' }> => e.type === 'artifact' && e.kind === 'checkpoint',
    )!;
    baselineCkpt = art.path;
    const ck = await loadCheckpoint(art.path);
    expect(ck.meta.accuracy).toBe(s.accuracyFinal);
    expect(ck.meta.step).toBe(32);
    expect(metric(events, 'eval', 'accuracy')).toHaveLength(2);
  });

  it('distort from the baseline checkpoint: periodic distortions, exact export, layer records', async () => {
    const events: TrialEvent[] = [];
    const cfg: TrialConfigInput = {
      ...base,
      method: 'distort',
      start: { kind: 'checkpoint', name: 'baseline' },
      training: { ...base.training!, lr: 0.01 },
      compression: {
        decomposition: 'svd',
        scheme: 'lowered',
        rank: { kind: 'rank', rank: 3 },
        layers: { kind: 'all-but-first', includeFc: true },
      },
      distortion: { interval: 8, resetMomentum: true, reestimateBatchNorm: true },
    };
    const s = await runTrial(cfg, opts('distort', events, { startCheckpoint: baselineCkpt }));
    checkSequence(events, 'finished');
    // steps 8, 16, 24, 32; the last step was a distortion step, so no extra final one is needed
    expect(metric(events, 'train', 'distortion_error').map((m) => m.step)).toEqual([8, 16, 24, 32]);
    expect(metric(events, 'final', 'distortions')[0]!.value).toBe(4);
    expect(metric(events, 'final', 'distortion_error')).toHaveLength(0);
    expect(metric(events, 'final', 'export_max_rel_deviation')[0]!.value).toBeLessThan(1e-4);
    const layers = events.filter((e) => e.type === 'layer');
    expect(layers.length).toBe(4); // conv2 + three dense layers of LeNet-5
    expect(s.accuracyOriginal).not.toBeNull();
    expect(s.accuracyAfterDecomposition).not.toBeNull();
    expect(s.paramsAfter).toBeLessThan(s.paramsBefore);
    expect(s.latencyAfterMs).toBeGreaterThan(0);
    expect(events.some((e) => e.type === 'artifact' && e.kind === 'factored-model')).toBe(true);
    // First and final distortion errors per layer: the first moved the trained kernel, the final
    // (the 4th, at the last step) met an almost low-rank one; relativeError is the final one's.
    const recs = layers.map((e) => (e as Extract<TrialEvent, { type: 'layer' }>).layer);
    for (const r of recs) {
      expect(r.firstDistortionError).toBeGreaterThan(0.05);
      expect(r.finalDistortionError).toBe(r.relativeError);
      expect(r.finalDistortionError!).toBeLessThan(r.firstDistortionError!);
      expect(r.order).toBe('hwc');
    }
  });

  it('distort: the saved checkpoint is exactly low-rank (singular values past r at float32 rounding)', async () => {
    const ck = await loadCheckpoint(join(dir, 'distort', 'checkpoint'), { optimizer: false });
    expect(ck.meta.exactlyLowRank).toBe(true);
    const kernels = ck.weights.filter((w) => /kernel/.test(w.name) && !/conv1\//.test(w.name));
    expect(kernels.map((w) => w.name.split('/')[0])).toEqual(['conv2', 'fc1', 'fc2', 'fc3']);
    for (const w of kernels) {
      const k = new Tensor(Float64Array.from(w.tensor.dataSync()), w.tensor.shape);
      const m = w.tensor.rank === 4 ? kernelToMatrix(k, 'lowered') : k;
      const s = svd(m).S;
      expect(s[2]! / s[0]!, w.name).toBeGreaterThan(1e-3); // rank 3 really kept 3
      // a rank-3 matrix stored in float32: the rest is rounding (~1e-7 relative per entry)
      expect(s[3]! / s[0]!, w.name).toBeLessThan(1e-5);
    }
  });

  it('finetune starts from the decomposed weights: its first evaluation is the accuracy right after decomposition, its first step starts from the factors', async () => {
    const events: TrialEvent[] = [];
    // One step at a learning rate far below float32 resolution: the weights after it are the
    // weights it started from, so the checkpoint shows them and the first evaluation measures them.
    const compression = { decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } } as const;
    const s = await runTrial(
      {
        ...base,
        method: 'finetune',
        start: { kind: 'checkpoint', name: 'baseline' },
        training: { ...base.training!, epochs: 1, maxSteps: 1, lr: 1e-12, weightDecay: 0 },
        compression,
      },
      opts('finetune-start', events, { startCheckpoint: baselineCkpt }),
    );
    checkSequence(events, 'finished');
    expect(s.steps).toBe(1);
    const firstEval = metric(events, 'eval', 'accuracy')[0]!.value;
    expect(firstEval).toBe(s.accuracyAfterDecomposition);
    expect(s.accuracyFinal).toBe(s.accuracyAfterDecomposition);
    // The factors of the start checkpoint's conv2, computed here independently of the trial.
    const start = await loadCheckpoint(baselineCkpt, { optimizer: false });
    const conv2 = start.weights.find((w) => w.name.startsWith('conv2/') && /kernel/.test(w.name))!;
    const bias = start.weights.find((w) => w.name.startsWith('conv2/') && /bias/.test(w.name))!;
    const d = decompose(new Tensor(Float32Array.from(conv2.tensor.dataSync()), conv2.tensor.shape), {
      method: 'tucker2',
      rank: compression.rank,
      tucker: { algorithm: 'hooi', maxIterations: 50, tolerance: 1e-6 },
    });
    const chain = factoredLayer(d, {
      padding: 'valid',
      bias: new Tensor(Float64Array.from(bias.tensor.dataSync()), [16]),
    });
    expect(chain.form).toBe('chain');
    const ck = await loadCheckpoint(join(dir, 'finetune-start', 'checkpoint'), { optimizer: false });
    expect(ck.meta.architecture).toBe('factored');
    const kernels = ck.weights.filter((w) => /kernel/.test(w.name)).map((w) => w.tensor);
    const layers = chain.form === 'chain' ? chain.layers : [];
    // conv1, then the three convs of conv2's chain, then the dense layers
    expect(kernels.slice(1, 4).map((t) => t.shape)).toEqual(layers.map((l) => l.kernelShape));
    layers.forEach((l, i) => {
      const got = kernels[1 + i]!.dataSync();
      let worst = 0;
      let scale = 0;
      for (let j = 0; j < got.length; j++) {
        worst = Math.max(worst, Math.abs(got[j]! - l.kernel.data[j]!));
        scale = Math.max(scale, Math.abs(l.kernel.data[j]!));
      }
      expect(worst / scale).toBeLessThan(1e-5);
    });
  });

  it('distort from scratch on a ResNet: a final distortion when the last step was not one, BN re-estimation, exact export', async () => {
    const events: TrialEvent[] = [];
    const cfg: TrialConfigInput = {
      ...base,
      model: 'resnet8',
      dataset: { name: 'mnist', trainLimit: 384, testLimit: 128 },
      method: 'distort',
      training: { ...base.training!, maxSteps: 12, lr: 0.02 },
      compression: {
        decomposition: 'cp',
        rank: { kind: 'rank', rank: 6 },
        cp: { maxIterations: 25 },
        layers: { kind: 'filter', stride: 1, kernelSize: 3 },
      },
      distortion: { interval: 5, resetMomentum: false, reestimateBatchNorm: true },
    };
    const s = await runTrial(cfg, opts('distort-resnet', events));
    checkSequence(events, 'finished');
    expect(s.steps).toBe(12);
    expect(metric(events, 'train', 'distortion_error').map((m) => m.step)).toEqual([5, 10]);
    expect(metric(events, 'final', 'distortions')[0]!.value).toBe(3);
    expect(metric(events, 'final', 'distortion_error')[0]!.value).toBeGreaterThan(0);
    expect(metric(events, 'final', 'accuracy_before_bn_reestimation')).toHaveLength(1);
    expect(metric(events, 'final', 'export_max_rel_deviation')[0]!.value).toBeLessThan(1e-4);
    expect(s.accuracyAfterDecomposition).toBeNull(); // from scratch
  });

  it('finetune (tucker2) and posttrain (cp) from the checkpoint', async () => {
    const events: TrialEvent[] = [];
    const ft = await runTrial(
      {
        ...base,
        method: 'finetune',
        start: { kind: 'trial', trialKey: 'a'.repeat(64) },
        training: { ...base.training!, lr: 0.005 },
        compression: { decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } },
      },
      opts('finetune', events, { startCheckpoint: baselineCkpt }),
    );
    checkSequence(events, 'finished');
    expect(ft.accuracyAfterDecomposition).not.toBeNull();
    expect(ft.steps).toBe(32);
    const ck = await loadCheckpoint(join(dir, 'finetune', 'checkpoint'));
    expect(ck.meta.architecture).toBe('factored');

    const ev2: TrialEvent[] = [];
    const pt = await runTrial(
      {
        ...base,
        method: 'posttrain',
        start: { kind: 'trial', trialKey: 'a'.repeat(64) },
        training: { ...base.training!, epochs: 0 },
        compression: { decomposition: 'cp', rank: { kind: 'rank', rank: 4 }, cp: { maxIterations: 20 } },
      },
      opts('posttrain', ev2, { startCheckpoint: baselineCkpt }),
    );
    checkSequence(ev2, 'finished');
    expect(pt.steps).toBe(0);
    expect(pt.accuracyFinal).toBe(pt.accuracyAfterDecomposition);
    expect(pt.accuracyOriginal).not.toBeNull();
    expect(ev2.filter((e) => e.type === 'layer')).toHaveLength(1);
  });

  it('distort (cp) from the checkpoint: CP-ALS refits warm from the second distortion in training on', async () => {
    const events: TrialEvent[] = [];
    const cfg: TrialConfigInput = {
      ...base,
      method: 'distort',
      start: { kind: 'checkpoint', name: 'baseline' },
      training: { ...base.training!, epochs: 1, maxSteps: 12, lr: 0.01 },
      compression: { decomposition: 'cp', rank: { kind: 'rank', rank: 4 } }, // conv2 only
      distortion: { interval: 4 },
    };
    await runTrial(cfg, opts('distort-cp-warm', events, { startCheckpoint: baselineCkpt }));
    checkSequence(events, 'finished');
    const sweeps = metric(events, 'train', 'distortion_sweeps');
    expect(sweeps.map((m) => m.step)).toEqual([4, 8, 12]);
    const [cold, ...warm] = sweeps.map((m) => m.value);
    // The first distortion in training is cold (as is the preview one on the start model).
    expect(cold).toBeGreaterThan(10);
    for (const w of warm) {
      expect(w).toBeLessThanOrEqual(10);
      expect(w).toBeLessThan(cold! / 2);
    }
    const layers = events.filter((e) => e.type === 'layer').map((e) => e.layer);
    expect(layers.map((l) => l.name)).toEqual(['conv2']);
    const [rec] = layers;
    // The recorded (final) distortion is a warm refit: its init, its sweeps, its fit.
    expect(rec!.cp).toMatchObject({ init: 'warm', fit: 1 - rec!.relativeError });
    expect(rec!.iterations).toBe(warm.at(-1));
    expect(rec!.converged).toBe(true);
    expect(rec!.firstDistortionError).toBeGreaterThan(rec!.finalDistortionError!);
  });

  it('long fits send heartbeats: one per sweep when they are due, none when not', async () => {
    const cfg: TrialConfigInput = {
      ...base,
      method: 'posttrain',
      start: { kind: 'trial', trialKey: 'b'.repeat(64) },
      training: { ...base.training!, epochs: 0 },
      compression: {
        decomposition: 'cp',
        rank: { kind: 'rank', rank: 4 },
        cp: { maxIterations: 30, tolerance: 1e-300 },
      },
    };
    // The heartbeats between the start model's evaluation and the layer record: the decomposition's.
    const decompositionBeats = (events: TrialEvent[]): number => {
      const from = events.findIndex((e) => e.type === 'metric' && e.name === 'accuracy_original');
      const to = events.findIndex((e) => e.type === 'layer');
      expect(from).toBeGreaterThan(0);
      expect(to).toBeGreaterThan(from);
      return events.slice(from, to).filter((e) => e.type === 'heartbeat').length;
    };
    // A fake clock that moves a whole heartbeat interval at every reading: every beat is due.
    let now = Date.now();
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => (now += 1000));
    const due: TrialEvent[] = [];
    try {
      await runTrial(cfg, opts('beats-due', due, { startCheckpoint: baselineCkpt }));
    } finally {
      clock.mockRestore();
    }
    checkSequence(due, 'finished');
    const layer = due.find((e) => e.type === 'layer')!.layer;
    expect(layer.iterations).toBe(30);
    expect(decompositionBeats(due)).toBe(layer.iterations! + 1); // every sweep, then the layer
    // Rate-limited like the training loop's: with a long interval the same fit sends none.
    const quiet: TrialEvent[] = [];
    await runTrial(cfg, opts('beats-quiet', quiet, { startCheckpoint: baselineCkpt, heartbeatMs: 1e9 }));
    checkSequence(quiet, 'finished');
    expect(decompositionBeats(quiet)).toBe(0);
  });

  it('is deterministic on one backend: the same config gives bit-identical weights', async () => {
    const cfg = { ...base, training: { ...base.training!, epochs: 1, maxSteps: 6 } };
    await runTrial(cfg, opts('det-a', []));
    const tensors = tf.memory().numTensors;
    await runTrial(cfg, opts('det-b', []));
    // nothing leaks: every model, batch, optimizer buffer and checkpoint tensor is disposed
    expect(tf.memory().numTensors).toBe(tensors);
    const a = await loadCheckpoint(join(dir, 'det-a', 'checkpoint'));
    const b = await loadCheckpoint(join(dir, 'det-b', 'checkpoint'));
    expect(a.weights.length).toBeGreaterThan(0);
    a.weights.forEach((w, i) =>
      expect(Array.from(b.weights[i]!.tensor.dataSync())).toEqual(Array.from(w.tensor.dataSync())),
    );
  });

  it('a config the schema refuses fails before anything runs: finetune with tiled-svd', async () => {
    const events: TrialEvent[] = [];
    const err = await runTrial(
      {
        ...base,
        method: 'finetune',
        compression: { decomposition: 'tiled-svd', tile: [5, 5], rank: { kind: 'rank', rank: 1 } },
      },
      opts('ft-tiled', events),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).field).toBe('config.compression.decomposition');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'failed', retryable: false, error: { code: 'INVALID_OPTION' } });
    expect(existsSync(join(dir, 'ft-tiled'))).toBe(false);
  });

  it('a bad config fails with one terminal event naming the field', async () => {
    const events: TrialEvent[] = [];
    const err = await runTrial(
      { ...base, training: { ...base.training!, lr: -1 } },
      opts('bad', events),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).field).toBe('config.training.lr');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'failed', retryable: false, error: { code: 'INVALID_OPTION' } });
  });

  it('a huge learning rate ends in a diverged event', async () => {
    const events: TrialEvent[] = [];
    const err = await runTrial(
      { ...base, training: { ...base.training!, lr: 1e5 } },
      opts('diverge', events),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DivergedError);
    checkSequence(events, 'diverged');
    expect((events[events.length - 1] as Extract<TrialEvent, { type: 'diverged' }>).step).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'diverge', 'checkpoint'))).toBe(false);
  });

  it('an aborted trial fails with code CANCELLED, not retryable', async () => {
    const events: TrialEvent[] = [];
    const ac = new AbortController();
    const err = await runTrial(
      base,
      opts('cancel', events, {
        signal: ac.signal,
        emit: (e) => {
          events.push(e);
          if (e.type === 'metric' && e.name === 'loss') ac.abort('test cancel');
        },
      }),
    ).catch((e: unknown) => e);
    expect((err as { code: string }).code).toBe('CANCELLED');
    checkSequence(events, 'failed');
    expect(events[events.length - 1]).toMatchObject({
      type: 'failed',
      retryable: false,
      error: { code: 'CANCELLED' },
    });
  });

  it('a start checkpoint is required when start is not scratch', async () => {
    const events: TrialEvent[] = [];
    await expect(
      runTrial({ ...base, start: { kind: 'checkpoint', name: 'x' } }, opts('nostart', events)),
    ).rejects.toThrow(/startCheckpoint/);
    checkSequence(events, 'failed');
  });
});

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DivergedError,
  ValidationError,
  isTerminalEvent,
  type TrialConfigInput,
  type TrialEvent,
} from '@flatrank/protocol';
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

  it('finetune (tucker2) from the checkpoint and posttrain (cp) from scratch', async () => {
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
        training: { ...base.training!, maxSteps: 8 },
        compression: { decomposition: 'cp', rank: { kind: 'rank', rank: 4 }, cp: { maxIterations: 20 } },
      },
      opts('posttrain', ev2),
    );
    checkSequence(ev2, 'finished');
    expect(pt.steps).toBe(8);
    expect(pt.accuracyFinal).toBe(pt.accuracyAfterDecomposition);
    expect(pt.accuracyOriginal).not.toBeNull();
    expect(ev2.filter((e) => e.type === 'layer')).toHaveLength(1);
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

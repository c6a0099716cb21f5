// runTrial and momentum: a baseline's checkpoint carries its momentum; distortion training from it
// (same architecture) restores it, fine-tuning a decomposed model starts fresh; both recorded.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrialConfigInput, TrialEvent } from '@flatrank/protocol';
import { runTrial, type RunTrialOptions } from '../src/trial.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/training/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-trial-momentum-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: TrialConfigInput = {
  model: 'lenet5',
  dataset: { name: 'mnist', trainLimit: 256, testLimit: 128 },
  training: { epochs: 1, batchSize: 32, lr: 0.05, weightDecay: 1e-4 },
  method: 'baseline',
  seed: 3,
};
const compression = {
  decomposition: 'svd' as const,
  scheme: 'lowered' as const,
  rank: { kind: 'rank' as const, rank: 3 },
  layers: { kind: 'all-but-first' as const, includeFc: false },
};

function opts(name: string, events: TrialEvent[], startCheckpoint: string | null = null): RunTrialOptions {
  return {
    dataDir: null,
    artifactDir: join(dir, name),
    startCheckpoint,
    backend: 'wasm',
    heartbeatMs: 1000,
    emit: (e) => events.push(e),
    latencyRepeats: 1,
  };
}

const restoredMetric = (events: TrialEvent[]) =>
  events.flatMap((e) => (e.type === 'metric' && e.name === 'momentum_restored' ? [e.value] : []));

describe('runTrial: momentum across checkpoints', { timeout: 120_000 }, () => {
  it('baseline saves it; distort and finetune (new trials) start fresh; a trial resuming itself restores it', async () => {
    const b: TrialEvent[] = [];
    await runTrial(base, opts('baseline', b));
    expect(restoredMetric(b)).toEqual([]); // from scratch: nothing offered, nothing recorded
    const baseline = join(dir, 'baseline', 'checkpoint');
    expect(existsSync(join(baseline, 'optimizer.bin'))).toBe(true);
    const bck = await loadCheckpoint(baseline);
    expect(bck.optimizer!.slots).toHaveLength(10); // LeNet-5: 5 kernels + 5 biases
    disposeCheckpoint(bck);

    const d: TrialEvent[] = [];
    await runTrial(
      {
        ...base,
        method: 'distort',
        start: { kind: 'checkpoint', name: 'baseline' },
        compression,
        distortion: { interval: 4, resetMomentum: false, reestimateBatchNorm: false },
      },
      opts('distort', d, baseline),
    );
    expect(restoredMetric(d)).toEqual([0]);
    const dck = await loadCheckpoint(join(dir, 'distort', 'checkpoint'));
    expect(dck.meta['momentumRestored']).toBe(false);
    expect(dck.meta['momentumNote']).toMatch(/new trial starts its optimizer fresh/);
    expect(dck.optimizer).not.toBeNull();
    disposeCheckpoint(dck);
    // the exported factored model has other variables: saved without momentum
    expect(existsSync(join(dir, 'distort', 'factored', 'optimizer.bin'))).toBe(false);

    const f: TrialEvent[] = [];
    await runTrial(
      { ...base, method: 'finetune', start: { kind: 'checkpoint', name: 'baseline' }, compression },
      opts('finetune', f, baseline),
    );
    expect(restoredMetric(f)).toEqual([0]);
    const fck = await loadCheckpoint(join(dir, 'finetune', 'checkpoint'));
    expect(fck.meta['momentumRestored']).toBe(false);
    expect(fck.meta['momentumNote']).toMatch(/new trial starts its optimizer fresh/);
    // the fine-tuned factored model's own momentum is saved for a later continuation of it
    expect(fck.optimizer!.slots.map((s) => s.name)).toContain('conv2_f1/kernel');
    disposeCheckpoint(fck);
  });

  it('the same trial started again from its own checkpoint resumes its momentum', async () => {
    const baseline = join(dir, 'baseline', 'checkpoint');
    const more = { ...base, start: { kind: 'checkpoint' as const, name: 'baseline' } };
    const first: TrialEvent[] = [];
    await runTrial(more, opts('more-1', first, baseline));
    expect(restoredMetric(first)).toEqual([0]);
    const again: TrialEvent[] = [];
    await runTrial(more, opts('more-2', again, join(dir, 'more-1', 'checkpoint')));
    expect(restoredMetric(again)).toEqual([1]);
    const ck = await loadCheckpoint(join(dir, 'more-2', 'checkpoint'));
    expect(ck.meta['momentumRestored']).toBe(true);
    disposeCheckpoint(ck);
  });
});

// Long test target: LeNet-5 on the embedded MNIST (8,000 train / 2,000 test digits) must exceed
// 97 % test accuracy with a plain recipe, and the distortion method started from it must keep the
// low-rank (svd lowered, rank 8 for conv2 and fc1) model close to it.
// Run: npm run test:long -w packages/trainers (about 1-2 minutes on 2 cores with the wasm backend).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { TrialEvent, TrialSummary } from '@flatrank/protocol';
import { runTrial } from '../src/trial.js';

const dir = mkdtempSync(join(tmpdir(), 'flatrank-long-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(
  name: string,
  config: unknown,
  startCheckpoint: string | null = null,
): Promise<{ s: TrialSummary; events: TrialEvent[] }> {
  const events: TrialEvent[] = [];
  const s = await runTrial(config, {
    dataDir: null,
    artifactDir: join(dir, name),
    startCheckpoint,
    backend: (process.env['FLATRANK_BACKEND'] as 'wasm' | undefined) ?? 'wasm',
    heartbeatMs: 10_000,
    emit: (e) => events.push(e),
  });
  return { s, events };
}

it('LeNet-5 reaches > 97 % on the embedded MNIST; distortion training keeps a rank-8 model close', async () => {
  const training = { epochs: 6, batchSize: 64, lr: 0.05, schedule: { kind: 'cosine' }, weightDecay: 5e-4 };
  const base = await run('baseline', {
    model: 'lenet5',
    dataset: { name: 'mnist' },
    training,
    method: 'baseline',
    seed: 0,
  });
  console.log(
    `LeNet-5 baseline: test accuracy ${base.s.accuracyFinal} after ${base.s.epochs} epochs (${base.s.wallSeconds.toFixed(1)} s)`,
  );
  expect(base.s.accuracyFinal).toBeGreaterThan(0.97);

  const ckpt = join(dir, 'baseline', 'checkpoint');
  const distort = await run(
    'distort',
    {
      model: 'lenet5',
      dataset: { name: 'mnist' },
      training: { epochs: 2, batchSize: 64, lr: 0.01, schedule: { kind: 'cosine' }, weightDecay: 5e-4 },
      method: 'distort',
      start: { kind: 'checkpoint', name: 'lenet5-baseline' },
      compression: {
        decomposition: 'svd',
        scheme: 'lowered',
        rank: { kind: 'rank', rank: 8 },
        layers: { kind: 'names', names: ['conv2', 'fc1'] },
      },
      distortion: { interval: 50 },
      seed: 0,
    },
    ckpt,
  );
  const s = distort.s;
  console.log(
    `distort svd rank 8: original ${s.accuracyOriginal}, one-shot decomposition ${s.accuracyAfterDecomposition}, after distortion training ${s.accuracyFinal}; params ${s.paramsBefore} -> ${s.paramsAfter}`,
  );
  expect(s.accuracyFinal).toBeGreaterThan(s.accuracyAfterDecomposition!);
  expect(s.accuracyFinal).toBeGreaterThan(0.95);
});

import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { resolveTrialConfig, trialKey } from '@flatrank/protocol';
import { createTempDb, tempDbTrialConfig, tempDbTrialEvents } from '@flatrank/testing';
import {
  progressLine,
  renderStatus,
  snapshotFromStore,
  trialLabel,
  TtyRenderer,
  type ProgressSnapshot,
} from '../src/index.js';

const snap: ProgressSnapshot = {
  sweep: 'demo',
  total: 10,
  counts: { pending: 5, running: 2, succeeded: 2, failed: 1, diverged: 0, cancelled: 0 },
  running: [
    {
      key: 'a'.repeat(64),
      label: 'distort svd ratio=2 sd=200 seed=0',
      device: 'cuda:1 T4',
      worker: null,
      attempt: 2,
      epoch: 3,
      epochs: 10,
      step: 1200,
      startedAt: 1_000,
    },
    {
      key: 'b'.repeat(64),
      label: 'baseline seed=1',
      device: 'cpu',
      worker: null,
      attempt: 1,
      epoch: null,
      epochs: 2,
      step: null,
      startedAt: 61_000,
    },
  ],
  etaMs: 125_000,
  elapsedMs: 3_723_000,
};

describe('progress', () => {
  it('one line and a status table with device, attempt, epoch and ETA', () => {
    expect(progressLine(snap)).toBe('demo: 2/10 done, 2 running, 5 pending, 1 failed, 0 diverged, ETA 2m05s');
    const text = renderStatus(snap, 91_000);
    expect(text).toMatch(/^demo: 2\/10 done.*\(elapsed 1h02m\)\n\[#{6}\.{22}\] 20%\n/);
    expect(text).toMatch(
      /aaaaaaaaaa\s+distort svd ratio=2 sd=200 seed=0\s+cuda:1 T4\s+2\s+3\/10\s+1200\s+1m30s/,
    );
    expect(text).toMatch(/bbbbbbbbbb\s+baseline seed=1\s+cpu\s+1\s+-\s+-\s+30s/);
  });

  it('labels trials by method, decomposition, rank policy, S_D and seed', () => {
    const c = resolveTrialConfig({
      model: 'resnet32',
      dataset: { name: 'cifar10' },
      training: { epochs: 1 },
      method: 'distort',
      compression: { decomposition: 'tiled-svd', tile: [32, 32], rank: { kind: 'rank', rank: 8 } },
      distortion: { interval: 200 },
      seed: 3,
    });
    expect(trialLabel(c)).toBe('distort tiled-svd 32x32 rank=8 sd=200 seed=3');
  });

  it('redraws the live block in place and prints log lines above it', () => {
    const out = new PassThrough();
    let written = '';
    out.on('data', (d: Buffer) => (written += d.toString()));
    const r = new TtyRenderer(out);
    r.update('a\nb\n');
    r.update('c\nd\ne\n');
    r.log('hello');
    expect(written).toBe(
      'a\nb\n' + '\x1b[2A\x1b[0J' + 'c\nd\ne\n' + '\x1b[3A\x1b[0J' + 'hello\n' + 'c\nd\ne\n',
    );
  });

  it('snapshotFromStore: counts, running trials and an ETA from the mean duration of succeeded trials', () => {
    const db = createTempDb();
    try {
      const store = db.store!;
      const { id } = store.upsertSweep({ name: 'snap', specText: '', specResolved: null, specHash: '' });
      const g = [0, 1, 2, 3, 4].map((seed) => {
        const config = tempDbTrialConfig({ seed });
        return { key: trialKey(config), config };
      });
      store.insertTrials(id, g);
      const claim = (now: number) =>
        store.claimTrial({
          sweepId: id,
          worker: 'w',
          device: 'cuda:0',
          leaseMs: 60_000,
          maxAttempts: 2,
          now,
        })!;
      // Two trials succeed, after 10 s and 30 s: mean 20 s.
      for (const ms of [10_000, 30_000]) {
        const c = claim(1_000);
        store.applyEvents(tempDbTrialEvents(c.key, c.attempt), 1_000 + ms);
      }
      const running = claim(50_000);
      store.applyEvents([
        {
          trialKey: running.key,
          attempt: running.attempt,
          seq: 0,
          event: { type: 'heartbeat', step: 7, epoch: 0 },
        },
      ]);
      const s = snapshotFromStore(store, { id, name: 'snap', createdAt: 1_000 }, 60_000);
      expect(s.total).toBe(5);
      expect(s.counts).toEqual({
        pending: 2,
        running: 1,
        succeeded: 2,
        failed: 0,
        diverged: 0,
        cancelled: 0,
      });
      expect(s.running).toEqual([
        {
          key: running.key,
          label: 'finetune tucker2 ratio=2 seed=2',
          device: 'cuda:0',
          worker: 'w',
          attempt: 1,
          epoch: 0,
          epochs: 1,
          step: 7,
          startedAt: 50_000,
        },
      ]);
      // 3 trials left, 1 running at a time: 3 x 20 s.
      expect(s.etaMs).toBe(60_000);
      expect(s.elapsedMs).toBe(59_000);
    } finally {
      db.cleanup();
    }
  });
});

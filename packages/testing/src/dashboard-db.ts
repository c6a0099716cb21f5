/**
 * A results database as the dashboard sees it mid-study: a finished sweep (baseline, distortion
 * training and fine-tuning at 2x / 4x, several seeds, per-epoch metrics with distortion steps,
 * per-layer records) and a running one (some succeeded, one running, the rest pending), written
 * through the store's writer API exactly as the scheduler does (grid insert, claim, events).
 */
import {
  trialKey,
  type LayerRecord,
  type TrialConfig,
  type TrialEnvelope,
  type TrialEvent,
} from '@flatrank/protocol';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResultsStore } from '@flatrank/store';
import { TEMP_DB_ENVIRONMENT, tempDbTrialConfig } from './temp-db.js';

export interface DashboardSweep {
  name: string;
  sweepId: number;
  keys: string[];
  configs: TrialConfig[];
}

export interface DashboardDb {
  finished: DashboardSweep;
  running: DashboardSweep;
  /** Claims the running sweep's next pending trial and writes its whole run (as a worker would). */
  finishNext(): string | null;
}

const LAYERS = [
  { name: 'conv2', kernelShape: [5, 5, 6, 16], params: 2400, macs: 240_000 },
  { name: 'fc1', kernelShape: [400, 120], params: 48_000, macs: 48_000 },
];

/** Baseline, distort svd and finetune tucker2 at 2x / 4x, `seeds` seeds each; `lr` tells sweeps apart. */
function configs(seeds: number, lr: number): TrialConfig[] {
  const training = { epochs: 2, lr, batchSize: 32 };
  const out: TrialConfig[] = [];
  for (let seed = 0; seed < seeds; seed++)
    out.push(tempDbTrialConfig({ method: 'baseline', seed, training }));
  for (const ratio of [2, 4])
    for (let seed = 0; seed < seeds; seed++) {
      out.push(
        tempDbTrialConfig({
          method: 'distort',
          seed,
          training,
          compression: { decomposition: 'svd', rank: { kind: 'ratio', ratio } },
          distortion: { interval: 4 },
        }),
      );
      out.push(
        tempDbTrialConfig({
          method: 'finetune',
          seed,
          training,
          compression: { decomposition: 'tucker2', rank: { kind: 'ratio', ratio } },
        }),
      );
    }
  return out;
}

/**
 * One layer's record as the trainers write it: the fit records of its decomposition (lowering order
 * of svd, the iterative fit of tucker2 / cp on the conv layer only, CP's init / seed / fit), and for
 * distort the first and final distortion errors (its relativeError is the final projection's, ~1e-6).
 */
function layerRecord(c: TrialConfig, l: (typeof LAYERS)[number], ratio: number): LayerRecord {
  const decomposition = c.compression!.decomposition;
  const relativeError = c.method === 'distort' ? 1e-6 : 0.1 * ratio;
  const iterative = (decomposition === 'tucker2' || decomposition === 'cp') && l.kernelShape.length === 4;
  return {
    name: l.name,
    decomposition,
    scheme: decomposition === 'svd' ? 'lowered' : null,
    order: decomposition === 'svd' ? 'hwc' : null,
    ranks:
      decomposition === 'tucker2' ? [Math.ceil(6 / ratio), Math.ceil(16 / ratio)] : [Math.ceil(24 / ratio)],
    rawRanks: null,
    tile: null,
    kernelShape: l.kernelShape,
    paramsBefore: l.params,
    paramsAfter: Math.round(l.params / ratio),
    macsBefore: l.macs,
    macsAfter: Math.round(l.macs / ratio),
    relativeError,
    iterations: iterative ? 3 + ratio : null,
    converged: iterative ? ratio <= 2 : null,
    cp: decomposition === 'cp' ? { init: 'svd', seed: c.seed, fit: 1 - 0.1 * ratio } : null,
    firstDistortionError: c.method === 'distort' ? 0.3 / ratio : null,
    finalDistortionError: c.method === 'distort' ? 0.2 / ratio : null,
  };
}

/**
 * The events of one successful run: 'started', a loss per step, per-epoch eval accuracy, a
 * distortion error every S_D steps (distort), accuracy right after decomposition, per-layer
 * records, an artifact, 'finished'. Values depend on the config and seed so that seeds differ.
 */
export function dashboardTrialEvents(key: string, attempt: number, c: TrialConfig): TrialEnvelope[] {
  const ratio = c.compression?.rank.kind === 'ratio' ? c.compression.rank.ratio : 1;
  const compressed = c.method !== 'baseline';
  const acc = 0.97 - (compressed ? 0.004 * ratio : 0) + (c.method === 'distort' ? 0.002 : 0) + 0.001 * c.seed;
  const events: TrialEvent[] = [{ type: 'started', env: TEMP_DB_ENVIRONMENT }];
  const stepsPerEpoch = 8;
  const epochs = 2;
  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let i = 1; i <= stepsPerEpoch; i++) {
      const step = epoch * stepsPerEpoch + i;
      events.push({
        type: 'metric',
        step,
        epoch,
        phase: 'train',
        name: 'loss',
        value: 2 / step + 0.01 * c.seed,
      });
      if (c.distortion && step % c.distortion.interval === 0)
        events.push({
          type: 'metric',
          step,
          epoch,
          phase: 'train',
          name: 'distortion_error',
          value: 0.3 / ratio,
        });
    }
    const step = (epoch + 1) * stepsPerEpoch;
    events.push({
      type: 'metric',
      step,
      epoch,
      phase: 'eval',
      name: 'accuracy',
      value: acc - 0.02 * (epochs - 1 - epoch),
    });
  }
  const steps = epochs * stepsPerEpoch;
  const afterDecomposition = compressed ? acc - 0.1 * ratio : null;
  if (afterDecomposition !== null)
    events.push({
      type: 'metric',
      step: steps,
      epoch: epochs,
      phase: 'after-decomposition',
      name: 'accuracy',
      value: afterDecomposition,
    });
  if (compressed) for (const l of LAYERS) events.push({ type: 'layer', layer: layerRecord(c, l, ratio) });
  events.push({ type: 'artifact', kind: 'checkpoint', path: `runs/${key.slice(0, 16)}/checkpoint` });
  events.push({
    type: 'finished',
    summary: {
      accuracyOriginal: 0.97,
      accuracyAfterDecomposition: afterDecomposition,
      accuracyFinal: acc,
      paramsBefore: 61_706,
      paramsAfter: compressed ? Math.round(61_706 / (ratio * 0.98)) : 61_706,
      macsBefore: 416_520,
      macsAfter: compressed ? Math.round(416_520 / (ratio * 0.7)) : 416_520,
      latencyBeforeMs: 2,
      latencyAfterMs: compressed ? 2 / (1 + ratio / 4) : 2,
      latencyBatch: 64,
      wallSeconds: 3 + c.seed + ratio,
      steps,
      epochs,
    },
  });
  return events.map((event, seq) => ({ trialKey: key, attempt, seq, event }));
}

/** A sweep of these configs, every trial pending (written as `flatrank run` inserts its grid). */
export function writeDashboardSweep(store: ResultsStore, name: string, cs: TrialConfig[]): DashboardSweep {
  const { id: sweepId } = store.upsertSweep({
    name,
    specText: `name: ${name}\ndescription: ${name} of the dashboard fixture\n`,
    specResolved: { name, description: `${name} of the dashboard fixture` },
    specHash: 'e'.repeat(64),
  });
  const keys = cs.map((c) => trialKey(c));
  store.insertTrials(
    sweepId,
    cs.map((config, i) => ({ key: keys[i]!, config })),
  );
  return { name, sweepId, keys, configs: cs };
}

/** Claims the sweep's next trial and runs it to the end through events; null when none is claimable. */
export function runNextTrial(
  store: ResultsStore,
  sweep: DashboardSweep,
  worker = 'test-worker',
): string | null {
  const claim = store.claimTrial({
    sweepId: sweep.sweepId,
    worker,
    device: 'cpu',
    leaseMs: 600_000,
    maxAttempts: 3,
  });
  if (!claim) return null;
  // The trial takes the wall time its summary reports, so succeeded trials have a real duration
  // (an ETA computed from them is positive).
  const events = dashboardTrialEvents(claim.key, claim.attempt, claim.config);
  const started = Date.now();
  const finished = events.at(-1)!.event;
  const durationMs = finished.type === 'finished' ? finished.summary.wallSeconds * 1000 : 1000;
  store.applyEvents(events.slice(0, 1), started);
  store.applyEvents(events.slice(1), started + durationMs);
  return claim.key;
}

/**
 * Writes both sweeps: `finished` (every trial succeeded, sweep marked finished) and `running`
 * (`succeeded` trials done, one claimed and started with a few metrics, the rest pending).
 */
export function populateDashboardDb(
  store: ResultsStore,
  opts: { seeds?: number; runningSucceeded?: number } = {},
): DashboardDb {
  const finished = writeDashboardSweep(store, 'finished-sweep', configs(opts.seeds ?? 3, 0.05));
  while (runNextTrial(store, finished) !== null);
  store.finishSweep(finished.sweepId);

  const running = writeDashboardSweep(store, 'running-sweep', configs(2, 0.02));
  for (let i = 0; i < (opts.runningSucceeded ?? 3); i++) runNextTrial(store, running);
  const claim = store.claimTrial({
    sweepId: running.sweepId,
    worker: 'live-worker',
    device: 'cpu',
    leaseMs: 600_000,
    maxAttempts: 3,
  });
  if (claim)
    store.applyEvents(
      dashboardTrialEvents(claim.key, claim.attempt, claim.config)
        .filter((e) => e.event.type === 'started' || (e.event.type === 'metric' && e.event.step <= 4))
        .map((e, seq) => ({ ...e, seq })),
    );
  return { finished, running, finishNext: () => runNextTrial(store, running) };
}

/**
 * The grid of a large sweep (86 configurations: baseline; distort svd / tucker2 at S_D 4 and 8;
 * finetune svd / tucker2 / cp; 6 ratios; 2 learning rates), then seeds until there are `n`.
 */
export function largeSweepConfigs(n: number): TrialConfig[] {
  const shapes: Array<(seed: number) => TrialConfig> = [];
  for (const lr of [0.05, 0.02]) {
    // Batch 64: none of these is a trial of populateDashboardDb's sweeps (batch 32) in the same file.
    const training = { epochs: 2, lr, batchSize: 64 };
    shapes.push((seed) => tempDbTrialConfig({ method: 'baseline', seed, training }));
    for (const ratio of [1.5, 2, 3, 4, 6, 8]) {
      for (const decomposition of ['svd', 'tucker2'] as const)
        for (const interval of [4, 8])
          shapes.push((seed) =>
            tempDbTrialConfig({
              method: 'distort',
              seed,
              training,
              compression: { decomposition, rank: { kind: 'ratio', ratio } },
              distortion: { interval },
            }),
          );
      for (const decomposition of ['svd', 'tucker2', 'cp'] as const)
        shapes.push((seed) =>
          tempDbTrialConfig({
            method: 'finetune',
            seed,
            training,
            compression: { decomposition, rank: { kind: 'ratio', ratio } },
          }),
        );
    }
  }
  const out: TrialConfig[] = [];
  for (let seed = 0; out.length < n; seed++)
    for (const shape of shapes) if (out.length < n) out.push(shape(seed));
  return out;
}

/**
 * A finished sweep of `n` succeeded trials (largeSweepConfigs), each with the events of
 * dashboardTrialEvents: what the dashboard bench and the large-sweep browser test read. Written
 * through the store as the coordinator writes (grid insert, claims, events), in large batches.
 */
export function writeLargeDashboardSweep(store: ResultsStore, name: string, n: number): DashboardSweep {
  const configs = largeSweepConfigs(n);
  const { id: sweepId } = store.upsertSweep({
    name,
    specText: `name: ${name}\n`,
    specResolved: { name, description: `${n} trials of the large dashboard fixture` },
    specHash: 'b'.repeat(64),
  });
  const keys = configs.map((c) => trialKey(c));
  for (let i = 0; i < configs.length; i += 5000)
    store.insertTrials(
      sweepId,
      configs.slice(i, i + 5000).map((config, j) => ({ key: keys[i + j]!, config })),
    );
  let batch: TrialEnvelope[] = [];
  for (;;) {
    const claim = store.claimTrial({ sweepId, worker: 'fixture', leaseMs: 3_600_000, maxAttempts: 1 });
    if (!claim) break;
    batch.push(...dashboardTrialEvents(claim.key, claim.attempt, claim.config));
    if (batch.length >= 10_000) {
      store.applyEvents(batch);
      batch = [];
    }
  }
  store.applyEvents(batch);
  store.finishSweep(sweepId);
  return { name, sweepId, keys, configs };
}

export interface FakeBrowser {
  /** The executable to name in $BROWSER. */
  command: string;
  /** The arguments of every start so far, one array per start. */
  starts(): string[][];
  /** Resolves with the first start's arguments (rejects after timeoutMs). */
  firstStart(timeoutMs?: number): Promise<string[]>;
}

/**
 * A stand-in for a desktop browser (`serve --open` tests): an executable shell script in `dir` that
 * records the arguments it was started with, one NUL-separated line per start, and exits.
 */
export function fakeBrowser(dir: string): FakeBrowser {
  const command = join(dir, 'fake-browser.sh');
  const log = join(dir, 'fake-browser.log');
  const quoted = `'${log.replaceAll("'", `'\\''`)}'`;
  // One append per start: its arguments, each ended by NUL, then a newline.
  writeFileSync(command, `#!/bin/sh\n{ printf '%s\\0' "$@"; echo; } >> ${quoted}\n`);
  chmodSync(command, 0o755);
  const starts = () =>
    existsSync(log)
      ? readFileSync(log, 'utf8')
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => line.split('\0').slice(0, -1))
      : [];
  return {
    command,
    starts,
    async firstStart(timeoutMs = 10_000) {
      for (const t0 = Date.now(); Date.now() - t0 < timeoutMs;) {
        const first = starts()[0];
        if (first) return first;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`the fake browser ${command} was not started within ${timeoutMs} ms`);
    },
  };
}

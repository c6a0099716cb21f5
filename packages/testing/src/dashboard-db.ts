/**
 * A results database as the dashboard sees it mid-study: a finished sweep (baseline, distortion
 * training and fine-tuning at 2x / 4x, several seeds, per-epoch metrics with distortion steps,
 * per-layer records) and a running one (some succeeded, one running, the rest pending), written
 * through the store's writer API exactly as the scheduler does (grid insert, claim, events).
 */
import { trialKey, type TrialConfig, type TrialEnvelope, type TrialEvent } from '@flatrank/protocol';
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
  if (compressed)
    for (const l of LAYERS)
      events.push({
        type: 'layer',
        layer: {
          name: l.name,
          decomposition: c.compression!.decomposition,
          scheme: c.compression!.decomposition === 'svd' ? 'lowered' : null,
          ranks:
            c.compression!.decomposition === 'tucker2'
              ? [Math.ceil(6 / ratio), Math.ceil(16 / ratio)]
              : [Math.ceil(24 / ratio)],
          rawRanks: null,
          tile: null,
          kernelShape: l.kernelShape,
          paramsBefore: l.params,
          paramsAfter: Math.round(l.params / ratio),
          macsBefore: l.macs,
          macsAfter: Math.round(l.macs / ratio),
          relativeError: 0.1 * ratio,
        },
      });
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

function writeSweep(store: ResultsStore, name: string, cs: TrialConfig[]): DashboardSweep {
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
  const finished = writeSweep(store, 'finished-sweep', configs(opts.seeds ?? 3, 0.05));
  while (runNextTrial(store, finished) !== null);
  store.finishSweep(finished.sweepId);

  const running = writeSweep(store, 'running-sweep', configs(2, 0.02));
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

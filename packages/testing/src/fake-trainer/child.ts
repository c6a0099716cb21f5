/**
 * A fake trial child: the child side of the scheduler's IPC protocol (@flatrank/protocol ipc.ts),
 * like apps/cli's trial-child, but it "trains" by sleeping. Forked by tests through fakeTrainerPath
 * (this file compiled to dist/fake-trainer/child.js); behaviour from settings.ts.
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type {
  CANCELLED_CODE,
  CHECKPOINT_FILES,
  CHECKPOINT_FORMAT,
  ChildToCoordinator,
  CoordinatorToChild,
  LayerRecord,
  RankAllocationRecord,
  TrialConfig,
  TrialEvent,
  TrialRunOptions,
} from '@flatrank/protocol';
import {
  FAKE_TRAINER_ENV,
  parseFakeSettings,
  resolveBehaviour,
  type FakeAction,
  type FakeRunRecord,
  type ResolvedBehaviour,
} from './settings.js';

type RunMessage = Extract<CoordinatorToChild, { type: 'run' }>;

// Types only from the protocol: a runtime import would load its schemas (zod) in every child and
// delay the start of each fake attempt by up to seconds on a busy machine; the type keeps the value
// in step with the protocol's.
const CANCELLED: typeof CANCELLED_CODE = 'CANCELLED';
// Likewise the checkpoint layout's names (protocol/src/checkpoint.ts).
const CHECKPOINT_META: (typeof CHECKPOINT_FILES)['meta'] = 'flatrank.json';
const CHECKPOINT: typeof CHECKPOINT_FORMAT = 'flatrank-checkpoint-1';

const settings = parseFakeSettings(process.env[FAKE_TRAINER_ENV]);
let cancelRequested = false;

function post(msg: ChildToCoordinator): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(msg, () => resolve());
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One attempt: its event stream (seq in order), log records and heartbeat timer. */
class FakeAttempt {
  step = 0;
  epoch = 0;
  private seq = 0;
  private lastSent: Promise<void> = Promise.resolve();
  private beat: NodeJS.Timeout | undefined;

  constructor(
    readonly run: RunMessage,
    readonly behaviour: ResolvedBehaviour,
  ) {}

  send(event: TrialEvent): void {
    const { trialKey, attempt } = this.run;
    this.lastSent = post({ type: 'event', envelope: { trialKey, attempt, seq: this.seq++, event } });
  }

  record(kind: FakeRunRecord['kind'], extra: Partial<FakeRunRecord> = {}): void {
    if (!settings.logFile) return;
    const r: FakeRunRecord = {
      kind,
      key: this.run.trialKey,
      attempt: this.run.attempt,
      pid: process.pid,
      cuda: process.env['CUDA_VISIBLE_DEVICES'] ?? null,
      order: process.env['CUDA_DEVICE_ORDER'] ?? null,
      webgpuAdapter: process.env['FLATRANK_WEBGPU_ADAPTER'] ?? null,
      driPrime: process.env['DRI_PRIME'] ?? null,
      t: Date.now(),
      ...extra,
    };
    appendFileSync(settings.logFile, `${JSON.stringify(r)}\n`);
  }

  startHeartbeat(): void {
    const ms = Math.max(10, this.run.options.heartbeatMs);
    this.beat = setInterval(() => this.send({ type: 'heartbeat', step: this.step, epoch: this.epoch }), ms);
  }

  stopHeartbeat(): void {
    clearInterval(this.beat);
  }

  /** Exits once every event has left (process.send is asynchronous). */
  async exit(code: number): Promise<never> {
    await this.lastSent;
    process.exit(code);
  }

  async fail(code: string, message: string, retryable: boolean, name = 'Error'): Promise<never> {
    this.stopHeartbeat();
    this.send({ type: 'failed', error: { name, code, message }, retryable });
    this.record('end', { outcome: code });
    return this.exit(0);
  }
}

/** What each action does at its step; each ends the attempt. */
const ACTIONS: Record<Exclude<FakeAction, 'ok'>, (a: FakeAttempt) => Promise<unknown>> = {
  crash: async (a) => {
    a.record('crash');
    process.exit(a.behaviour.exitCode);
  },
  hang: async (a) => {
    a.stopHeartbeat();
    a.record('hang');
    // Stops heart-beating and never answers a cancel: only SIGKILL ends it.
    return new Promise(() => setInterval(() => {}, 1 << 30));
  },
  diverge: async (a) => {
    a.stopHeartbeat();
    a.send({ type: 'metric', step: a.step, epoch: a.epoch, phase: 'train', name: 'loss', value: Number.NaN });
    a.send({ type: 'diverged', reason: `loss is NaN at step ${a.step}`, step: a.step });
    a.record('end', { outcome: 'diverged' });
    return a.exit(0);
  },
  fail: (a) => a.fail('FAKE_FAILURE', `fake failure at step ${a.step}`, false),
  'fail-retryable': (a) => a.fail('FAKE_FAILURE', `fake failure at step ${a.step}`, true),
};

interface StartFailure {
  code: string;
  message: string;
  name: string;
}

/**
 * The start point the real trial would refuse (packages/trainers runTrial + loadCheckpoint), with
 * the same error: a dependent trial must receive its start trial's checkpoint (the fake's own
 * final.ckpt.json); a named checkpoint start must receive a checkpoint directory.
 */
function checkStart(config: TrialConfig, options: TrialRunOptions): StartFailure | null {
  const start = config.start;
  if (start.kind === 'trial') {
    let ok = false;
    try {
      const ckpt = JSON.parse(readFileSync(options.startCheckpoint ?? '', 'utf8')) as { trialKey?: string };
      ok = ckpt.trialKey === start.trialKey;
    } catch {
      ok = false;
    }
    return ok
      ? null
      : {
          code: 'DATA_INVALID',
          message: `start checkpoint ${options.startCheckpoint} is not the checkpoint of trial ${start.trialKey}`,
          name: 'Error',
        };
  }
  if (start.kind !== 'checkpoint') return null;
  if (!options.startCheckpoint)
    return {
      code: 'INVALID_OPTION',
      message: `startCheckpoint: required because config.start.kind is 'checkpoint' (the scheduler resolves it; flatrank train takes --start-checkpoint)`,
      name: 'ValidationError',
    };
  const metaFile = join(options.startCheckpoint, CHECKPOINT_META);
  const dataError = (message: string) => ({ code: 'DATA_INVALID', message, name: 'DataError' });
  let text: string;
  try {
    text = readFileSync(metaFile, 'utf8');
  } catch (e) {
    return dataError(`checkpoint file ${metaFile} cannot be read: ${(e as Error)?.message ?? e}`);
  }
  let meta: { format?: unknown } | null;
  try {
    meta = JSON.parse(text) as { format?: unknown } | null;
  } catch {
    return dataError(`checkpoint file ${metaFile} is not valid JSON`);
  }
  if (meta?.format !== CHECKPOINT)
    return dataError(
      `${metaFile}: not a flatrank checkpoint (format ${JSON.stringify(meta?.format)}, expected ${CHECKPOINT})`,
    );
  return null;
}

function started(a: FakeAttempt): void {
  const cuda = process.env['CUDA_VISIBLE_DEVICES'];
  a.send({
    type: 'started',
    env: {
      gitCommit: null,
      gitDirty: null,
      packageVersions: { 'fake-trainer': '1' },
      nodeVersion: process.version,
      backend: 'cpu',
      backendVersion: 'fake',
      device: cuda ? `fake GPU ${cuda}` : 'fake CPU',
      host: hostname(),
      cudaVisibleDevices: cuda || null,
      pid: process.pid,
    },
  });
}

/**
 * The layer records of a compressed trial: one per layer of its allocation (its ranks, counts
 * derived from them), else one fixed conv2 record.
 */
function layerRecords(
  c: NonNullable<TrialConfig['compression']>,
  allocation: RankAllocationRecord | null,
): LayerRecord[] {
  const record = (name: string, ranks: number[], paramsAfter: number): LayerRecord => ({
    name,
    decomposition: c.decomposition,
    scheme: c.scheme ?? null,
    ranks,
    rawRanks: null,
    tile: c.tile ?? null,
    kernelShape: [5, 5, 6, 16],
    paramsBefore: 2400,
    paramsAfter,
    macsBefore: 240000,
    macsAfter: paramsAfter * 100,
    relativeError: 0.1,
  });
  if (!allocation) return [record('conv2', [4], 1200)];
  return allocation.layers.map((l) =>
    record(
      l.name,
      l.ranks,
      l.ranks.reduce((sum, r) => sum + 100 * r, 0),
    ),
  );
}

/** The end of a successful attempt: final accuracy, layer records, a checkpoint, finished. */
async function finish(a: FakeAttempt): Promise<never> {
  const { config, options } = a.run;
  const b = a.behaviour;
  a.epoch = config.training.epochs;
  const accuracy = b.accuracy ?? Number((0.9 + 0.001 * (config.seed % 10)).toFixed(4));
  a.send({
    type: 'metric',
    step: b.steps,
    epoch: a.epoch,
    phase: 'final',
    name: 'accuracy',
    value: accuracy,
  });
  const c = config.compression;
  if (c) for (const layer of layerRecords(c, b.allocation)) a.send({ type: 'layer', layer });
  mkdirSync(options.artifactDir, { recursive: true });
  const ckpt = join(options.artifactDir, 'final.ckpt.json');
  writeFileSync(ckpt, JSON.stringify({ trialKey: a.run.trialKey, attempt: a.run.attempt }));
  a.send({ type: 'artifact', kind: 'checkpoint', path: ckpt });
  a.send({
    type: 'finished',
    summary: {
      accuracyOriginal: c ? 0.95 : null,
      accuracyAfterDecomposition: c ? 0.5 : null,
      accuracyFinal: accuracy,
      paramsBefore: 60000,
      paramsAfter: c ? 30000 : 60000,
      macsBefore: 400000,
      macsAfter: c ? 200000 : 400000,
      latencyBeforeMs: null,
      latencyAfterMs: null,
      latencyBatch: null,
      wallSeconds: (b.steps * b.stepMs) / 1000,
      steps: b.steps,
      epochs: a.epoch,
    },
  });
  a.record('end', { outcome: 'finished' });
  return a.exit(0);
}

async function runAttempt(a: FakeAttempt): Promise<unknown> {
  const { config, options, trialKey, attempt } = a.run;
  const b = a.behaviour;
  if (settings.pidDir) {
    mkdirSync(settings.pidDir, { recursive: true });
    writeFileSync(join(settings.pidDir, `${trialKey}-${attempt}.pid`), String(process.pid));
  }
  a.record('start', { seed: config.seed, method: config.method, behaviour: b.action });
  started(a);
  const refused = checkStart(config, options);
  if (refused) return a.fail(refused.code, refused.message, false, refused.name);
  if (b.allocation && config.compression) a.send({ type: 'allocation', allocation: b.allocation });

  a.startHeartbeat();
  for (a.step = 0; a.step < b.steps; a.step++) {
    if (cancelRequested) return a.fail(CANCELLED, 'cancelled by the coordinator', false);
    if (a.step === b.atStep && b.action !== 'ok') return ACTIONS[b.action](a);
    if (b.stepMs > 0) await sleep(b.stepMs);
    a.send({
      type: 'metric',
      step: a.step,
      epoch: a.epoch,
      phase: 'train',
      name: 'loss',
      value: 2 / (a.step + 1),
    });
    a.send({ type: 'heartbeat', step: a.step, epoch: a.epoch });
  }
  a.stopHeartbeat();
  return finish(a);
}

// The coordinator died: never train on as an orphan.
process.on('disconnect', () => process.exit(1));
process.on('message', (msg: CoordinatorToChild) => {
  if (msg?.type === 'run') {
    const a = new FakeAttempt(msg, resolveBehaviour(settings, msg.config, msg.attempt));
    runAttempt(a).catch((e: unknown) => {
      a.send({
        type: 'failed',
        error: { name: 'Error', code: 'INTERNAL', message: String((e as Error)?.stack ?? e) },
        retryable: false,
      });
      void a.exit(1);
    });
  } else if (msg?.type === 'cancel') {
    cancelRequested = true;
  }
});
void post({ type: 'ready' });

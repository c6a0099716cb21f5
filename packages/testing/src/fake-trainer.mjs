#!/usr/bin/env node
/* global setTimeout, setInterval, clearInterval */
// A fake trial child: speaks the scheduler's IPC protocol (@flatrank/protocol ipc.ts) like the real
// apps/cli/dist/trial-child.js, but "trains" by sleeping. Plain .mjs so tests can fork it without a
// build. Behaviour comes from the FLATRANK_FAKE_TRAINER environment variable (JSON):
//   { default?: B, bySeed?: { "<seed>": B }, byMethod?: { "<method>": B },
//     logFile?: path (JSONL: one 'start' and one 'end' record per attempt), pidDir?: dir (<key>-<attempt>.pid) }
//   B = { steps?: 5, stepMs?: 20, action?: 'ok'|'crash'|'hang'|'diverge'|'fail'|'fail-retryable',
//         atStep?: steps/2, attempts?: [1] (the action applies only on these attempts), exitCode?: 1, accuracy?: number }
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const settings = JSON.parse(process.env.FLATRANK_FAKE_TRAINER || '{}');
let seq = 0;
let current = null; // { trialKey, attempt }
let cancelRequested = false;

// The coordinator died: never train on as an orphan.
process.on('disconnect', () => process.exit(1));

let lastSent = Promise.resolve();
function send(event) {
  if (!current || !process.connected) return;
  const msg = {
    type: 'event',
    envelope: { trialKey: current.trialKey, attempt: current.attempt, seq: seq++, event },
  };
  lastSent = new Promise((resolve) => process.send(msg, () => resolve()));
}

function record(kind, extra = {}) {
  if (!settings.logFile) return;
  appendFileSync(
    settings.logFile,
    JSON.stringify({
      kind,
      key: current?.trialKey,
      attempt: current?.attempt,
      pid: process.pid,
      cuda: process.env.CUDA_VISIBLE_DEVICES ?? null,
      order: process.env.CUDA_DEVICE_ORDER ?? null,
      webgpuAdapter: process.env.FLATRANK_WEBGPU_ADAPTER ?? null,
      driPrime: process.env.DRI_PRIME ?? null,
      t: Date.now(),
      ...extra,
    }) + '\n',
  );
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function behaviourFor(config, attempt) {
  const b =
    settings.bySeed?.[String(config.seed)] ?? settings.byMethod?.[config.method] ?? settings.default ?? {};
  const steps = b.steps ?? 5;
  const applies = !b.attempts || b.attempts.includes(attempt);
  return {
    steps,
    stepMs: b.stepMs ?? 20,
    action: applies ? (b.action ?? 'ok') : 'ok',
    atStep: b.atStep ?? Math.floor(steps / 2),
    exitCode: b.exitCode ?? 1,
    accuracy: b.accuracy,
  };
}

async function finishWithFailure(code, message, retryable, name = 'Error') {
  send({ type: 'failed', error: { name, code, message }, retryable });
  record('end', { outcome: code });
  await flushAndExit(0);
}

function flushAndExit(code) {
  // process.send is asynchronous: exit once the channel has drained.
  return lastSent.then(() => process.exit(code));
}

async function run(msg) {
  current = { trialKey: msg.trialKey, attempt: msg.attempt };
  const { config, options } = msg;
  const b = behaviourFor(config, msg.attempt);
  if (settings.pidDir) {
    mkdirSync(settings.pidDir, { recursive: true });
    writeFileSync(join(settings.pidDir, `${msg.trialKey}-${msg.attempt}.pid`), String(process.pid));
  }
  record('start', { seed: config.seed, method: config.method, behaviour: b.action });
  send({
    type: 'started',
    env: {
      gitCommit: null,
      gitDirty: null,
      packageVersions: { 'fake-trainer': '1' },
      nodeVersion: process.version,
      backend: 'cpu',
      backendVersion: 'fake',
      device: process.env.CUDA_VISIBLE_DEVICES ? `fake GPU ${process.env.CUDA_VISIBLE_DEVICES}` : 'fake CPU',
      host: hostname(),
      cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES || null,
      pid: process.pid,
    },
  });

  // A dependent trial must receive its start trial's checkpoint (the fake's own final.ckpt.json).
  if (config.start?.kind === 'trial') {
    let ok = false;
    try {
      ok = JSON.parse(readFileSync(options.startCheckpoint, 'utf8')).trialKey === config.start.trialKey;
    } catch {
      ok = false;
    }
    if (!ok)
      return finishWithFailure(
        'DATA_INVALID',
        `start checkpoint ${options.startCheckpoint} is not the checkpoint of trial ${config.start.trialKey}`,
        false,
      );
  }

  // A named checkpoint start: the path the coordinator resolved must be a checkpoint directory. The
  // real trial (packages/trainers runTrial + loadCheckpoint) fails for good with these errors.
  if (config.start?.kind === 'checkpoint') {
    if (!options.startCheckpoint)
      return finishWithFailure(
        'INVALID_OPTION',
        `startCheckpoint: required because config.start.kind is 'checkpoint' (the scheduler resolves it; flatrank train takes --start-checkpoint)`,
        false,
        'ValidationError',
      );
    const metaFile = join(options.startCheckpoint, 'flatrank.json');
    let text;
    let meta;
    try {
      text = readFileSync(metaFile, 'utf8');
    } catch (e) {
      return finishWithFailure(
        'DATA_INVALID',
        `checkpoint file ${metaFile} cannot be read: ${e?.message ?? e}`,
        false,
        'DataError',
      );
    }
    try {
      meta = JSON.parse(text);
    } catch {
      return finishWithFailure(
        'DATA_INVALID',
        `checkpoint file ${metaFile} is not valid JSON`,
        false,
        'DataError',
      );
    }
    if (meta?.format !== 'flatrank-checkpoint-1')
      return finishWithFailure(
        'DATA_INVALID',
        `${metaFile}: not a flatrank checkpoint (format ${JSON.stringify(meta?.format)}, expected flatrank-checkpoint-1)`,
        false,
        'DataError',
      );
  }

  let step = 0;
  let epoch = 0;
  const beat = setInterval(() => send({ type: 'heartbeat', step, epoch }), Math.max(10, options.heartbeatMs));
  for (step = 0; step < b.steps; step++) {
    if (cancelRequested) {
      clearInterval(beat);
      return finishWithFailure('CANCELLED', 'cancelled by the coordinator', false);
    }
    if (step === b.atStep && b.action !== 'ok') {
      if (b.action === 'crash') {
        record('crash');
        process.exit(b.exitCode);
      }
      if (b.action === 'hang') {
        clearInterval(beat);
        record('hang');
        // Stops heart-beating and never answers a cancel: only SIGKILL ends it.
        return new Promise(() => setInterval(() => {}, 1 << 30));
      }
      if (b.action === 'diverge') {
        clearInterval(beat);
        send({ type: 'metric', step, epoch, phase: 'train', name: 'loss', value: Number.NaN });
        send({ type: 'diverged', reason: `loss is NaN at step ${step}`, step });
        record('end', { outcome: 'diverged' });
        return flushAndExit(0);
      }
      if (b.action === 'fail' || b.action === 'fail-retryable') {
        clearInterval(beat);
        return finishWithFailure(
          'FAKE_FAILURE',
          `fake failure at step ${step}`,
          b.action === 'fail-retryable',
        );
      }
    }
    if (b.stepMs > 0) await sleep(b.stepMs);
    send({ type: 'metric', step, epoch, phase: 'train', name: 'loss', value: 2 / (step + 1) });
    send({ type: 'heartbeat', step, epoch });
  }
  clearInterval(beat);
  epoch = config.training?.epochs ?? 0;
  const accuracy = b.accuracy ?? Number((0.9 + 0.001 * (config.seed % 10)).toFixed(4));
  send({ type: 'metric', step: b.steps, epoch, phase: 'final', name: 'accuracy', value: accuracy });
  if (config.compression) {
    send({
      type: 'layer',
      layer: {
        name: 'conv2',
        decomposition: config.compression.decomposition,
        scheme: config.compression.scheme ?? null,
        ranks: [4],
        rawRanks: null,
        tile: config.compression.tile ?? null,
        kernelShape: [5, 5, 6, 16],
        paramsBefore: 2400,
        paramsAfter: 1200,
        macsBefore: 240000,
        macsAfter: 120000,
        relativeError: 0.1,
      },
    });
  }
  mkdirSync(options.artifactDir, { recursive: true });
  const ckpt = join(options.artifactDir, 'final.ckpt.json');
  writeFileSync(ckpt, JSON.stringify({ trialKey: msg.trialKey, attempt: msg.attempt }));
  send({ type: 'artifact', kind: 'checkpoint', path: ckpt });
  const compressed = config.compression !== null && config.compression !== undefined;
  send({
    type: 'finished',
    summary: {
      accuracyOriginal: compressed ? 0.95 : null,
      accuracyAfterDecomposition: compressed ? 0.5 : null,
      accuracyFinal: accuracy,
      paramsBefore: 60000,
      paramsAfter: compressed ? 30000 : 60000,
      macsBefore: 400000,
      macsAfter: compressed ? 200000 : 400000,
      latencyBeforeMs: null,
      latencyAfterMs: null,
      latencyBatch: null,
      wallSeconds: (b.steps * b.stepMs) / 1000,
      steps: b.steps,
      epochs: epoch,
    },
  });
  record('end', { outcome: 'finished' });
  return flushAndExit(0);
}

process.on('message', (msg) => {
  if (msg?.type === 'run') {
    run(msg).catch((e) => {
      send({
        type: 'failed',
        error: { name: 'Error', code: 'INTERNAL', message: String(e?.stack ?? e) },
        retryable: false,
      });
      flushAndExit(1);
    });
  } else if (msg?.type === 'cancel') {
    cancelRequested = true;
  }
});
process.send({ type: 'ready' });

// The fake trainer's start-point checks: a `{kind: checkpoint}` start must receive an existing
// checkpoint directory, else the attempt fails for good with the error the real trial sends.
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveTrialConfig, trialKey, type TrialEvent, type TrialRunOptions } from '@flatrank/protocol';
import { fakeTrainerEnv, fakeTrainerPath } from '../src/index.js';
import { parseFakeSettings, resolveBehaviour } from '../src/fake-trainer/settings.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-fake-trainer-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const config = resolveTrialConfig({
  model: 'lenet5',
  dataset: { name: 'mnist', trainLimit: 64, testLimit: 32 },
  training: { epochs: 1, batchSize: 16 },
  method: 'finetune',
  start: { kind: 'checkpoint', name: 'ckpts/lenet5' },
  compression: { decomposition: 'tucker2', rank: { kind: 'ratio', ratio: 2 } },
});

/** Forks the fake, runs one attempt with `startCheckpoint`, returns its events until it exits. */
function runAttempt(startCheckpoint: string | null): Promise<TrialEvent[]> {
  const options: TrialRunOptions = {
    dataDir: null,
    artifactDir: join(dir, 'artifacts'),
    startCheckpoint,
    backend: 'auto',
    heartbeatMs: 1000,
  };
  const child = fork(fakeTrainerPath, [], {
    env: { ...process.env, ...fakeTrainerEnv({ default: { steps: 2, stepMs: 1 } }) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const events: TrialEvent[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fake trainer did not exit; events so far: ${JSON.stringify(events)}`));
    }, 10_000);
    child.on('message', (m: { type: string; envelope?: { event: TrialEvent } }) => {
      if (m.type === 'ready')
        child.send({ type: 'run', trialKey: trialKey(config), attempt: 1, config, options });
      else if (m.type === 'event') events.push(m.envelope!.event);
    });
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(events);
    });
  });
}

function terminal(events: TrialEvent[]): TrialEvent {
  const t = events.filter((e) => ['finished', 'failed', 'diverged'].includes(e.type));
  expect(t).toHaveLength(1);
  return t[0]!;
}

describe('fake trainer, start: {kind: checkpoint}', () => {
  it('a start path that does not exist fails for good as the real trial does (DataError, DATA_INVALID)', async () => {
    const missing = join(dir, 'ckpts', 'lenet5');
    const end = terminal(await runAttempt(missing));
    expect(end).toMatchObject({
      type: 'failed',
      retryable: false,
      error: { name: 'DataError', code: 'DATA_INVALID' },
    });
    if (end.type !== 'failed') throw new Error('unreachable');
    expect(end.error.message).toContain(`checkpoint file ${join(missing, 'flatrank.json')} cannot be read`);
    expect(end.error.message).toContain('ENOENT');
  });

  it('no start path at all is the real trial option error (ValidationError, INVALID_OPTION)', async () => {
    const end = terminal(await runAttempt(null));
    expect(end).toMatchObject({
      type: 'failed',
      retryable: false,
      error: { name: 'ValidationError', code: 'INVALID_OPTION' },
    });
  });

  it('a directory that is not a flatrank checkpoint is refused; a checkpoint directory trains', async () => {
    const ckpt = join(dir, 'ckpts', 'lenet5');
    mkdirSync(ckpt, { recursive: true });
    writeFileSync(join(ckpt, 'flatrank.json'), JSON.stringify({ format: 'something-else' }));
    const bad = terminal(await runAttempt(ckpt));
    expect(bad).toMatchObject({ type: 'failed', error: { code: 'DATA_INVALID' } });
    if (bad.type !== 'failed') throw new Error('unreachable');
    expect(bad.error.message).toContain('not a flatrank checkpoint');

    writeFileSync(join(ckpt, 'flatrank.json'), JSON.stringify({ format: 'flatrank-checkpoint-1' }));
    expect(terminal(await runAttempt(ckpt)).type).toBe('finished');
  });
});

describe('fake trainer settings', () => {
  it('resolve by seed, then method, then default; an action applies only on its attempts', () => {
    const c = { ...config, seed: 3 };
    const s = {
      default: { steps: 7 },
      byMethod: { finetune: { stepMs: 1 } },
      bySeed: { '3': { action: 'crash' as const, attempts: [1] } },
    };
    expect(resolveBehaviour(s, c, 1)).toEqual({
      steps: 5,
      stepMs: 20,
      action: 'crash',
      atStep: 2,
      exitCode: 1,
      accuracy: undefined,
      allocation: null,
    });
    expect(resolveBehaviour(s, c, 2).action).toBe('ok');
    expect(resolveBehaviour(s, config, 1)).toMatchObject({ steps: 5, stepMs: 1, action: 'ok' });
    expect(resolveBehaviour({ default: { steps: 7 } }, config, 1)).toMatchObject({ steps: 7, atStep: 3 });
  });

  it('attempt n reports allocations[n - 1], the last one from then on', () => {
    const alloc = (rank: number) => ({
      policy: 'model-ratio=4',
      budget: { kind: 'params' as const, ratio: 4 },
      achieved: { params: 4, macs: 3 },
      layers: [{ name: 'conv2', ranks: [rank] }],
      measured: null,
    });
    const s = { default: { allocations: [alloc(2), alloc(3)] } };
    expect(resolveBehaviour(s, config, 1).allocation).toEqual(alloc(2));
    expect(resolveBehaviour(s, config, 2).allocation).toEqual(alloc(3));
    expect(resolveBehaviour(s, config, 5).allocation).toEqual(alloc(3));
  });

  it('an unknown action is an error naming the field and the allowed values', () => {
    expect(() => parseFakeSettings(JSON.stringify({ bySeed: { '1': { action: 'explode' } } }))).toThrow(
      /FLATRANK_FAKE_TRAINER\.bySeed\.1\.action: unknown value "explode"; allowed: ok, crash, hang, diverge, fail, fail-retryable/,
    );
    expect(parseFakeSettings(undefined)).toEqual({});
  });
});

// The trial child IPC protocol (packages/protocol/src/ipc.ts), against the built
// dist/trial-child.js: ready -> run -> envelopes with increasing seq -> one terminal -> exit 0.
import { fork, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isTerminalEvent,
  resolveTrialConfig,
  type ChildToCoordinator,
  type CoordinatorToChild,
  type TrialEnvelope,
} from '@flatrank/protocol';

const childEntry = fileURLToPath(new URL('../dist/trial-child.js', import.meta.url));
let dir: string;

beforeAll(() => {
  // The child runs compiled code, as the scheduler forks it (npm test builds first).
  if (!existsSync(childEntry))
    throw new Error(`these tests fork the built trial child (${childEntry}); build first: npx tsc -b`);
  dir = mkdtempSync(join(tmpdir(), 'flatrank-child-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ChildRun {
  messages: ChildToCoordinator[];
  envelopes: TrialEnvelope[];
  exitCode: number | null;
}

function runChild(
  rawConfig: unknown,
  onEnvelope?: (e: TrialEnvelope, send: (m: CoordinatorToChild) => void) => void,
): Promise<ChildRun> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(childEntry, [], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, CUDA_VISIBLE_DEVICES: '', CUDA_DEVICE_ORDER: 'PCI_BUS_ID' },
    });
    const out: ChildRun = { messages: [], envelopes: [], exitCode: null };
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    const send = (m: CoordinatorToChild) => child.connected && child.send(m);
    child.on('message', (raw) => {
      const m = raw as ChildToCoordinator;
      out.messages.push(m);
      if (m.type === 'ready') {
        const config = rawConfig as ReturnType<typeof resolveTrialConfig>;
        send({
          type: 'run',
          trialKey: 'k'.repeat(8),
          attempt: 2,
          config,
          options: {
            dataDir: null,
            artifactDir: join(dir, String(Math.random()).slice(2)),
            startCheckpoint: null,
            backend: 'wasm',
            heartbeatMs: 500,
          },
        });
      } else if (m.type === 'event') {
        out.envelopes.push(m.envelope);
        onEnvelope?.(m.envelope, send);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      out.exitCode = code;
      if (code !== 0) reject(new Error(`child exited ${code}: ${stderr}`));
      else resolvePromise(out);
    });
  });
}

const tiny = resolveTrialConfig({
  model: 'lenet5',
  dataset: { name: 'mnist', trainLimit: 128, testLimit: 64 },
  training: { epochs: 0, batchSize: 32, lr: 0.05 },
  method: 'posttrain',
  compression: { decomposition: 'svd', rank: { kind: 'rank', rank: 4 } },
});

function checkEnvelopes(r: ChildRun): void {
  expect(r.messages[0]).toEqual({ type: 'ready' });
  expect(r.envelopes.map((e) => e.seq)).toEqual(r.envelopes.map((_, i) => i));
  expect(r.envelopes.every((e) => e.trialKey === 'k'.repeat(8) && e.attempt === 2)).toBe(true);
  expect(r.envelopes.filter((e) => isTerminalEvent(e.event))).toHaveLength(1);
  expect(isTerminalEvent(r.envelopes[r.envelopes.length - 1]!.event)).toBe(true);
  expect(r.exitCode).toBe(0);
}

describe('trial child process', { timeout: 120_000 }, () => {
  it('runs a trial: ready, started, events with increasing seq, finished, exit 0', async () => {
    const r = await runChild(tiny);
    checkEnvelopes(r);
    expect(r.envelopes[0]!.event.type).toBe('started');
    const last = r.envelopes[r.envelopes.length - 1]!.event;
    expect(last.type).toBe('finished');
    expect(r.envelopes.some((e) => e.event.type === 'layer')).toBe(true);
    expect(r.envelopes.some((e) => e.event.type === 'artifact' && e.event.kind === 'checkpoint')).toBe(true);
  });

  it("stops on 'cancel': failed, code CANCELLED, not retryable, exit 0", async () => {
    const long = {
      ...tiny,
      method: 'baseline' as const,
      compression: null,
      training: { ...tiny.training, epochs: 200 },
    };
    let sent = false;
    const r = await runChild(long, (e, send) => {
      if (!sent && e.event.type === 'metric') {
        sent = true;
        send({ type: 'cancel', reason: 'test' });
      }
    });
    checkEnvelopes(r);
    const last = r.envelopes[r.envelopes.length - 1]!.event;
    expect(last).toMatchObject({ type: 'failed', retryable: false, error: { code: 'CANCELLED' } });
    expect(
      r.envelopes.filter((e) => e.event.type === 'metric' && e.event.phase === 'eval').length,
    ).toBeLessThan(5);
  });

  it('an invalid config ends in one failed event naming the field', async () => {
    const r = await runChild({ ...tiny, training: { ...tiny.training, batchSize: 0 } });
    checkEnvelopes(r);
    expect(r.envelopes).toHaveLength(1);
    expect(r.envelopes[0]!.event).toMatchObject({
      type: 'failed',
      retryable: false,
      error: { code: 'INVALID_OPTION', context: { field: 'config.training.batchSize' } },
    });
  });
});

describe('flatrank train (built CLI)', { timeout: 120_000 }, () => {
  const cli = fileURLToPath(new URL('../dist/main.js', import.meta.url));
  const runCli = (args: string[]) =>
    spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 110_000 });

  it('runs a YAML config and prints the summary as one JSON object with --json', () => {
    const file = join(dir, 'trial.yaml');
    writeFileSync(
      file,
      [
        'model: lenet5',
        'dataset: { name: mnist, trainLimit: 128, testLimit: 64 }',
        'training: { epochs: 1, batchSize: 32, lr: 0.05 }',
        'method: distort',
        'compression: { decomposition: tiled-svd, tile: [8, 10], rank: { kind: rank, rank: 2 } }',
        'distortion: { interval: 2 }',
      ].join('\n'),
    );
    const r = runCli(['train', file, '--backend', 'wasm', '--out', join(dir, 'cli-out'), '--json']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const s = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(s['steps']).toBe(4);
    expect(s['latencyAfterMs']).toBeNull(); // tiled-svd: no conv-chain export
    expect(s['paramsAfter'] as number).toBeLessThan(s['paramsBefore'] as number);
    expect(r.stderr).toMatch(/distortion: mean relative error/);
    expect(existsSync(join(dir, 'cli-out', 'checkpoint', 'model.json'))).toBe(true);
  });

  it('a bad config is a typed error naming the field, exit 2', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        model: 'lenet5',
        dataset: { name: 'mnist' },
        training: { epochs: 1 },
        method: 'distort',
      }),
    );
    const r = runCli(['train', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/config\.compression/);
  });
});

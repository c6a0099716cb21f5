// Shared set-up of the scheduler tests: temp dirs, spec files, runSpec with the fake trainer.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runUserQuery } from '@flatrank/store';
import {
  fakeGpuDiscovery,
  fakeTrainerEnv,
  fakeTrainerPath,
  type FakeTrainerSettings,
} from '@flatrank/testing';
import { runSpec, type RunSpecOptions, type RunSpecResult } from '../src/index.js';

export interface Sandbox {
  dir: string;
  db: string;
  runsDir: string;
  logFile: string;
  pidDir: string;
  spec(name: string, yaml: string): string;
  cleanup(): void;
}

export function sandbox(): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'flatrank-sched-'));
  return {
    dir,
    db: join(dir, 'flatrank.sqlite'),
    runsDir: join(dir, 'runs'),
    logFile: join(dir, 'fake.jsonl'),
    pidDir: join(dir, 'pids'),
    spec(name, yaml) {
      const f = join(dir, `${name}.yaml`);
      writeFileSync(f, yaml);
      return f;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A spec of `n` baseline trials (seeds 0..n-1) on lenet5 / mnist. */
export function baselineSpec(name: string, seeds: number[], extra = ''): string {
  return `name: ${name}
model: lenet5
dataset: { name: mnist, trainLimit: 64, testLimit: 32 }
training: { epochs: 1, batchSize: 16 }
methods:
  baseline: {}
grid:
  seed: [${seeds.join(', ')}]
${extra}`;
}

export function capture(): { stream: PassThrough; text(): string } {
  const stream = new PassThrough();
  let buf = '';
  stream.on('data', (d: Buffer) => (buf += d.toString()));
  return { stream, text: () => buf };
}

export async function runFake(
  sb: Sandbox,
  specFile: string,
  fake: FakeTrainerSettings,
  opts: Partial<RunSpecOptions> & { gpus?: RunSpecOptions['gpus']; fakeGpus?: number } = {},
): Promise<{ result?: RunSpecResult; error?: unknown; out: string; err: string }> {
  const out = capture();
  const err = capture();
  const { fakeGpus: nGpus, ...rest } = opts;
  try {
    const result = await runSpec({
      specFile,
      db: sb.db,
      runsDir: sb.runsDir,
      childEntry: fakeTrainerPath,
      childEnv: fakeTrainerEnv({ logFile: sb.logFile, pidDir: sb.pidDir, ...fake }),
      discoverGpus: fakeGpuDiscovery(nGpus ?? 0),
      gpus: opts.gpus ?? 'auto',
      stdout: out.stream,
      stderr: err.stream,
      tty: false,
      heartbeatMs: 100,
      heartbeatTimeoutMs: 3000,
      cancelGraceMs: 3000,
      ...rest,
    });
    return { result, out: out.text(), err: err.text() };
  } catch (error) {
    return { error, out: out.text(), err: err.text() };
  }
}

export function sql(db: string, q: string): Array<Record<string, unknown>> {
  return runUserQuery(db, q).rows;
}

/** No result row twice, no metric (trial, attempt, seq) twice, one results row per succeeded trial. */
export function assertNoDuplicates(db: string): { results: number; succeeded: number } {
  const dupMetrics = sql(
    db,
    'SELECT trial_id, attempt, step, phase, name, count(*) AS n FROM metrics GROUP BY trial_id, attempt, step, phase, name HAVING n > 1',
  );
  if (dupMetrics.length) throw new Error(`duplicate metrics: ${JSON.stringify(dupMetrics.slice(0, 3))}`);
  const results = Number(sql(db, 'SELECT count(*) AS n FROM results')[0]!['n']);
  const resultTrials = Number(sql(db, 'SELECT count(DISTINCT trial_id) AS n FROM results')[0]!['n']);
  const succeeded = Number(sql(db, "SELECT count(*) AS n FROM trials WHERE status = 'succeeded'")[0]!['n']);
  if (results !== resultTrials) throw new Error(`${results} result rows for ${resultTrials} trials`);
  if (results !== succeeded) throw new Error(`${results} result rows but ${succeeded} succeeded trials`);
  return { results, succeeded };
}

export async function waitFor<T>(
  fn: () => T | undefined | null | false,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---------------------------------------------------------------- processes of the built CLI

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../../apps/cli/dist/main.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(CLI) || !existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url))))
    throw new Error(
      `these tests fork the built CLI (${CLI}); build first: npx tsc -b packages/scheduler apps/cli`,
    );
}

export interface Proc {
  proc: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

export function spawnCli(args: string[], env: Record<string, string | undefined>, cwd: string): Proc {
  const proc = spawn(process.execPath, [CLI, ...args], {
    cwd,
    env: { ...process.env, ...env, FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))),
  );
  return { proc, output: () => out, exited };
}

/**
 * A sweep sandbox for tests that run sweeps (the scheduler's, the CLI's): a temp directory with the
 * database, runs directory, fake-trainer log and pid paths, spec files written into it; a small
 * baseline spec; a coordinator run with the fake trainer; polling for a condition; and the
 * no-duplicate-rows check every run must pass. Processes of the built CLI in a sandbox: processes.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runUserQuery } from '@flatrank/store';
import { fakeGpuDiscovery, fakeTrainerEnv, fakeTrainerPath, type FakeTrainerSettings } from './fakes.js';

export interface Sandbox {
  dir: string;
  db: string;
  runsDir: string;
  logFile: string;
  pidDir: string;
  spec(name: string, yaml: string): string;
  /** The environment telling the fake trainer `fake`, its log and pid files in the sandbox. */
  fakeEnv(fake: FakeTrainerSettings): Record<string, string>;
  cleanup(): void;
}

export function sandbox(): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'flatrank-sched-'));
  const logFile = join(dir, 'fake.jsonl');
  const pidDir = join(dir, 'pids');
  return {
    dir,
    db: join(dir, 'flatrank.sqlite'),
    runsDir: join(dir, 'runs'),
    logFile,
    pidDir,
    spec(name, yaml) {
      const f = join(dir, `${name}.yaml`);
      writeFileSync(f, yaml);
      return f;
    },
    fakeEnv: (fake) => fakeTrainerEnv({ logFile, pidDir, ...fake }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A spec of baseline trials (the given seeds) on lenet5 / mnist. */
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

/** The rows of one read-only query on the database file. */
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

/** Polls `fn` every 25 ms until it returns something truthy; throws after timeoutMs. */
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

/** A stream that keeps what is written to it (a coordinator's stdout / stderr in tests). */
export function captureStream(): { stream: PassThrough; text(): string } {
  const stream = new PassThrough();
  let buf = '';
  stream.on('data', (d: Buffer) => (buf += d.toString()));
  return { stream, text: () => buf };
}

/**
 * Runs a sweep through `run` (the scheduler's runSpec, passed in: this package does not depend on
 * the scheduler) in the sandbox, with the fake trainer told `fake`, `fakeGpus` fake GPUs (default
 * none), fast heartbeats and captured output; `opts` overrides any of those options. Returns the
 * result or what it threw, and what it printed.
 */
export async function runWithFakeTrainer<O extends object, R>(
  run: (options: O) => Promise<R>,
  sb: Sandbox,
  specFile: string,
  fake: FakeTrainerSettings,
  opts: Partial<O> & { fakeGpus?: number } = {},
): Promise<{ result?: R; error?: unknown; out: string; err: string }> {
  const out = captureStream();
  const err = captureStream();
  const { fakeGpus, ...rest } = opts;
  const options = {
    specFile,
    db: sb.db,
    runsDir: sb.runsDir,
    childEntry: fakeTrainerPath,
    childEnv: sb.fakeEnv(fake),
    discoverGpus: fakeGpuDiscovery(fakeGpus ?? 0),
    gpus: 'auto',
    stdout: out.stream,
    stderr: err.stream,
    tty: false,
    heartbeatMs: 100,
    heartbeatTimeoutMs: 3000,
    cancelGraceMs: 3000,
    ...rest,
  };
  try {
    const result = await run(options as unknown as O);
    return { result, out: out.text(), err: err.text() };
  } catch (error) {
    return { error, out: out.text(), err: err.text() };
  }
}

// Shared set-up of the scheduler tests: the sweep sandbox (from @flatrank/testing) and runSpec with
// the fake trainer.
import { PassThrough } from 'node:stream';
import {
  fakeGpuDiscovery,
  fakeTrainerEnv,
  fakeTrainerPath,
  type FakeTrainerSettings,
  type Sandbox,
} from '@flatrank/testing';
import { runSpec, type RunSpecOptions, type RunSpecResult } from '../src/index.js';

export { assertNoDuplicates, baselineSpec, sandbox, sql, waitFor, type Sandbox } from '@flatrank/testing';

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

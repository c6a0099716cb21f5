// Shared by the CLI tests that run `flatrank` as processes of the built CLI (run, status, worker),
// and by those that drive an in-process coordinator (runSpec) against such worker processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { runSpec, type RunSpecOptions, type RunSpecResult } from '@flatrank/scheduler';
import {
  fakeGpuDiscovery,
  fakeTrainerEnv,
  fakeTrainerPath,
  type FakeTrainerSettings,
  type Sandbox,
} from '@flatrank/testing';

export const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(CLI) || !existsSync(fakeTrainerPath))
    throw new Error(`these tests fork the built CLI (${CLI}) and the fake trainer; build first: npx tsc -b`);
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

function capture(): { stream: PassThrough; text(): string } {
  const stream = new PassThrough();
  let buf = '';
  stream.on('data', (d: Buffer) => (buf += d.toString()));
  return { stream, text: () => buf };
}

/** A coordinator in this process (runSpec) with the fake trainer and fast heartbeats. */
export async function runCoordinator(
  sb: Sandbox,
  specFile: string,
  fake: FakeTrainerSettings,
  opts: Partial<RunSpecOptions> = {},
): Promise<{ result?: RunSpecResult; error?: unknown; out: string; err: string }> {
  const out = capture();
  const err = capture();
  try {
    const result = await runSpec({
      specFile,
      db: sb.db,
      runsDir: sb.runsDir,
      childEntry: fakeTrainerPath,
      childEnv: fakeTrainerEnv({ logFile: sb.logFile, pidDir: sb.pidDir, ...fake }),
      discoverGpus: fakeGpuDiscovery(0),
      gpus: 'auto',
      stdout: out.stream,
      stderr: err.stream,
      tty: false,
      heartbeatMs: 100,
      heartbeatTimeoutMs: 3000,
      cancelGraceMs: 3000,
      ...opts,
    });
    return { result, out: out.text(), err: err.text() };
  } catch (error) {
    return { error, out: out.text(), err: err.text() };
  }
}

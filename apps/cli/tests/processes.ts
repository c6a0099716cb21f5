// Shared by the CLI tests that run `flatrank` as processes of the built CLI (run, status, worker),
// and by those that drive an in-process coordinator (runSpec) against such worker processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runSpec, type RunSpecOptions } from '@flatrank/scheduler';
import {
  fakeTrainerPath,
  runWithFakeTrainer,
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

/** A coordinator in this process (runSpec) with the fake trainer and fast heartbeats. */
export function runCoordinator(
  sb: Sandbox,
  specFile: string,
  fake: FakeTrainerSettings,
  opts: Partial<RunSpecOptions> = {},
) {
  return runWithFakeTrainer(runSpec, sb, specFile, fake, opts);
}

// Shared by the CLI tests that run `flatrank` as processes of the built CLI (run, status, worker),
// and by those that drive an in-process coordinator (runSpec) against such worker processes.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runSpec, type RunSpecOptions } from '@flatrank/scheduler';
import {
  fakeTrainerPath,
  processSandbox,
  runWithFakeTrainer,
  type FakeTrainerSettings,
  type ProcessSandbox,
} from '@flatrank/testing';

export const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(CLI) || !existsSync(fakeTrainerPath))
    throw new Error(`these tests fork the built CLI (${CLI}) and the fake trainer; build first: npx tsc -b`);
}

/** A sweep sandbox whose `spawn` runs `flatrank <args>` (the built CLI) in it. */
export function cliSandbox(): ProcessSandbox {
  return processSandbox(CLI);
}

/** `flatrank run <spec>` with the sandbox's database and runs directory, then `flags`. */
export function runArgs(
  sb: Pick<ProcessSandbox, 'db' | 'runsDir'>,
  spec: string,
  ...flags: string[]
): string[] {
  return ['run', spec, '--db', sb.db, '--runs-dir', sb.runsDir, ...flags];
}

/** A coordinator in this process (runSpec) with the fake trainer and fast heartbeats. */
export function runCoordinator(
  sb: ProcessSandbox,
  specFile: string,
  fake: FakeTrainerSettings,
  opts: Partial<RunSpecOptions> = {},
) {
  return runWithFakeTrainer(runSpec, sb, specFile, fake, opts);
}

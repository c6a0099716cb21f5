/**
 * Processes of a built program in tests (the CLI's `run`, `status`, `worker`): spawned with their
 * output kept and their exit as a promise, and tracked so that a test's cleanup kills whatever is
 * still running and waits for it. processSandbox runs them in a sweep sandbox with the fake
 * trainer's log and pid files there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { FakeRunRecord, FakeTrainerSettings } from './fake-trainer/settings.js';
import { readFakeLog } from './fakes.js';
import { sandbox, waitFor, type Sandbox } from './sandbox.js';

export interface Proc {
  proc: ChildProcess;
  /** stdout and stderr so far, interleaved as they arrived. */
  output(): string;
  /** The exit code; -1 when a signal ended it. */
  exited: Promise<number | null>;
}

export interface SpawnProcOptions {
  cwd: string;
  /** Over this process's environment (FORCE_COLOR is always 0). */
  env?: Record<string, string | undefined>;
  /** Run as this user (and group of the same id). */
  uid?: number;
  /** Its own process group. */
  detached?: boolean;
}

/** Runs `command` (program first) with stdin closed and its output kept. */
export function spawnProc(command: readonly string[], opts: SpawnProcOptions): Proc {
  const [program, ...args] = command;
  if (program === undefined) throw new Error('spawnProc: empty command');
  const proc = spawn(program, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env, FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
    detached: opts.detached ?? false,
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))),
  );
  return { proc, output: () => out, exited };
}

/** Processes spawned for one test, stopped together at its end. */
export interface ProcGroup {
  spawn(command: readonly string[], opts: SpawnProcOptions): Proc;
  /** Kills (SIGKILL) every process still running and waits until all have exited. */
  stopAll(): Promise<void>;
}

export function procGroup(): ProcGroup {
  const procs: Proc[] = [];
  return {
    spawn(command, opts) {
      const p = spawnProc(command, opts);
      procs.push(p);
      return p;
    },
    async stopAll() {
      for (const p of procs)
        if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
      await Promise.all(procs.map((p) => p.exited));
      procs.length = 0;
    },
  };
}

/** Polls a fake trainer log until `count` records match; returns the matching records. */
export function waitForFakeLog(
  logFile: string,
  match: (r: FakeRunRecord) => boolean,
  what: string,
  opts: { count?: number; timeoutMs?: number } = {},
): Promise<FakeRunRecord[]> {
  const count = opts.count ?? 1;
  return waitFor(
    () => {
      const found = readFakeLog(logFile).filter(match);
      return found.length >= count && found;
    },
    opts.timeoutMs,
    what,
  );
}

export interface ProcessSandbox extends Omit<Sandbox, 'cleanup'> {
  /**
   * `node <entry> ...args` in the sandbox directory. With `fake`, the fake trainer's settings (its
   * log and pid files in the sandbox) are in its environment; `env` goes over them.
   */
  spawn(args: readonly string[], opts?: { fake?: FakeTrainerSettings; env?: Record<string, string> }): Proc;
  /** waitForFakeLog on the sandbox's fake trainer log. */
  waitForLog(
    match: (r: FakeRunRecord) => boolean,
    what: string,
    opts?: { count?: number; timeoutMs?: number },
  ): Promise<FakeRunRecord[]>;
  /** Stops every process it spawned (SIGKILL if still running), then removes the directory. */
  cleanup(): Promise<void>;
}

/** A sweep sandbox whose processes run the node program `entry` (the built CLI). */
export function processSandbox(entry: string): ProcessSandbox {
  const sb = sandbox();
  const group = procGroup();
  return {
    ...sb,
    spawn: (args, opts = {}) =>
      group.spawn([process.execPath, entry, ...args], {
        cwd: sb.dir,
        env: { ...(opts.fake ? sb.fakeEnv(opts.fake) : {}), ...opts.env },
      }),
    waitForLog: (match, what, opts) => waitForFakeLog(sb.logFile, match, what, opts),
    async cleanup() {
      await group.stopAll();
      sb.cleanup();
    },
  };
}

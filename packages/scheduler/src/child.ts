/**
 * One attempt of one trial in its own child process (child_process.fork of the child entry), with
 * CUDA_VISIBLE_DEVICES set in the child's environment before anything loads, the IPC protocol of
 * @flatrank/protocol (ipc.ts), a heartbeat watchdog, a wall-clock timeout and clean cancellation.
 * Shared by the local coordinator and the BullMQ worker; it never touches the database.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  CANCELLED_CODE,
  isTerminalEvent,
  type ChildToCoordinator,
  type CoordinatorToChild,
  type TrialConfig,
  type TrialEnvelope,
  type TrialEvent,
  type TrialRunOptions,
} from '@flatrank/protocol';

export type TerminalEvent = Extract<TrialEvent, { type: 'finished' | 'failed' | 'diverged' }>;

/** Milliseconds since the epoch of the attempt's milestones (null when not reached). */
export interface AttemptTimings {
  forkAt: number;
  readyAt: number | null;
  terminalAt: number | null;
  closedAt: number;
}

export type AttemptOutcome = (
  | /** The child sent its terminal event (cancelled: it was the answer to our 'cancel'). */
    { kind: 'terminal'; event: TerminalEvent; cancelled: boolean }
    /** The attempt ended without a terminal event. */
  | { kind: 'lost'; cause: 'exit' | 'heartbeat' | 'timeout' | 'cancelled' | 'spawn'; reason: string }
) & { lastSeq: number; exitCode: number | null; timings: AttemptTimings };

export interface ChildAttemptOptions {
  childEntry: string;
  trialKey: string;
  attempt: number;
  config: TrialConfig;
  options: TrialRunOptions;
  /** '' for CPU, '0' for GPU 0 ... */
  cudaVisibleDevices: string;
  /** Extra environment for the child (tests: fake-trainer behaviours). */
  env?: Record<string, string | undefined>;
  /** No message from the child for this long -> it is declared hung and killed. */
  heartbeatTimeoutMs: number;
  /** Wall-clock limit of the attempt; null = none. */
  trialTimeoutMs: number | null;
  /** After 'cancel', how long the child gets to answer before SIGKILL. */
  cancelGraceMs?: number;
  /** Every event the child sends (heartbeats included), in order. */
  onEvent(envelope: TrialEnvelope): void;
  /** Lines the child writes to stdout / stderr. */
  onOutput?(stream: 'stdout' | 'stderr', line: string): void;
  /** The child process exists (pid known). */
  onSpawn?(pid: number): void;
  /** Aborting sends 'cancel' (the reason is signal.reason as text). */
  signal?: AbortSignal;
  /** Node options for the child (default: inherit none, so vitest's loaders do not leak in). */
  execArgv?: string[];
}

/** Runs the attempt to its end; never throws for child failures (they are outcomes). */
export function runChildAttempt(o: ChildAttemptOptions): Promise<AttemptOutcome> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    let terminal: TerminalEvent | null = null;
    let cancelled = false;
    let killedFor: { cause: 'heartbeat' | 'timeout' | 'cancelled'; reason: string } | null = null;
    let lastSeq = -1;
    let lastMessageAt = Date.now();
    const startedAt = Date.now();
    const timings: AttemptTimings = {
      forkAt: startedAt,
      readyAt: null,
      terminalAt: null,
      closedAt: startedAt,
    };
    const timers: NodeJS.Timeout[] = [];
    let settled = false;

    const kill = () => {
      if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      // The child leads its own process group (detached): take any grandchildren with it.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        try {
          child.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    };
    const send = (msg: CoordinatorToChild) => {
      if (child.connected)
        child.send(msg, (err) => void err /* a dying child cannot receive: its exit decides */);
    };

    try {
      child = fork(o.childEntry, [], {
        env: {
          ...process.env,
          ...o.env,
          // Before TensorFlow.js loads in the child: it only ever sees its own device.
          CUDA_VISIBLE_DEVICES: o.cudaVisibleDevices,
          CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
        },
        execArgv: o.execArgv ?? [],
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        serialization: 'json',
        // Own process group: a terminal Ctrl-C reaches the coordinator only, which cancels cleanly.
        detached: true,
      });
    } catch (e) {
      resolve({
        kind: 'lost',
        cause: 'spawn',
        reason: `cannot start the trial process: ${(e as Error).message}`,
        lastSeq,
        exitCode: null,
        timings,
      });
      return;
    }
    if (child.pid !== undefined) o.onSpawn?.(child.pid);

    for (const [stream, readable] of [
      ['stdout', child.stdout],
      ['stderr', child.stderr],
    ] as const) {
      if (!readable) continue;
      const rl = createInterface({ input: readable, crlfDelay: Infinity });
      rl.on('line', (line) => o.onOutput?.(stream, line));
    }

    child.on('message', (raw: unknown) => {
      lastMessageAt = Date.now();
      const msg = raw as ChildToCoordinator;
      if (msg?.type === 'ready') {
        timings.readyAt = lastMessageAt;
        send({ type: 'run', trialKey: o.trialKey, attempt: o.attempt, config: o.config, options: o.options });
        return;
      }
      if (msg?.type !== 'event') return;
      const env = msg.envelope;
      // Only this attempt's events; a confused child must not write another trial's rows.
      if (!env || env.trialKey !== o.trialKey || env.attempt !== o.attempt || terminal) return;
      if (typeof env.seq === 'number' && env.seq > lastSeq) lastSeq = env.seq;
      if (isTerminalEvent(env.event)) {
        terminal = env.event;
        timings.terminalAt = lastMessageAt;
        // The protocol says the child exits after its terminal event; make sure it does.
        timers.push(setTimeout(kill, 5_000).unref());
      }
      o.onEvent(env);
    });

    const onAbort = () => {
      if (cancelled || terminal) return;
      cancelled = true;
      send({ type: 'cancel', reason: String(o.signal?.reason ?? 'cancelled') });
      timers.push(
        setTimeout(() => {
          if (!terminal)
            killedFor ??= { cause: 'cancelled', reason: 'did not stop within the cancel grace period' };
          kill();
        }, o.cancelGraceMs ?? 10_000),
      );
    };
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });

    const tick = Math.max(20, Math.min(1000, Math.floor(o.heartbeatTimeoutMs / 4)));
    timers.push(
      setInterval(() => {
        if (terminal || killedFor) return;
        const now = Date.now();
        // Until 'ready' the child is starting Node (slow on a busy machine): a generous limit.
        const limit =
          timings.readyAt === null ? Math.max(o.heartbeatTimeoutMs, 30_000) : o.heartbeatTimeoutMs;
        if (now - lastMessageAt > limit) {
          killedFor = {
            cause: 'heartbeat',
            reason: `no heartbeat for ${Math.round((now - lastMessageAt) / 1000)} s (hung or overloaded; timeout ${limit / 1000} s)`,
          };
          kill();
        } else if (o.trialTimeoutMs !== null && now - startedAt > o.trialTimeoutMs) {
          killedFor = {
            cause: 'timeout',
            reason: `exceeded the trial timeout of ${Math.round(o.trialTimeoutMs / 1000)} s`,
          };
          kill();
        }
      }, tick),
    );

    const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      o.signal?.removeEventListener('abort', onAbort);
      timings.closedAt = Date.now();
      if (terminal) {
        const isCancelAnswer =
          cancelled && terminal.type === 'failed' && terminal.error.code === CANCELLED_CODE;
        resolve({
          kind: 'terminal',
          event: terminal,
          cancelled: isCancelAnswer,
          lastSeq,
          exitCode: code,
          timings,
        });
        return;
      }
      if (killedFor) {
        resolve({
          kind: 'lost',
          cause: killedFor.cause,
          reason: killedFor.reason,
          lastSeq,
          exitCode: code,
          timings,
        });
        return;
      }
      if (cancelled) {
        resolve({
          kind: 'lost',
          cause: 'cancelled',
          reason: 'cancelled before it reported an end',
          lastSeq,
          exitCode: code,
          timings,
        });
        return;
      }
      const how = error
        ? `failed to run: ${error.message}`
        : signal
          ? `was killed by ${signal}`
          : `exited with code ${code}`;
      resolve({
        kind: 'lost',
        cause: 'exit',
        reason: `the trial process (pid ${child.pid ?? '?'}) ${how} before reporting an end`,
        lastSeq,
        exitCode: code,
        timings,
      });
    };
    child.on('error', (e) => {
      // 'error' without a pid means the spawn failed; otherwise 'exit' follows.
      if (child.pid === undefined) finish(null, null, e);
    });
    // 'close' (not 'exit'): the stdio pipes and the IPC channel have drained, so no late event is lost.
    child.on('close', (code, signal) => finish(code, signal));
  });
}

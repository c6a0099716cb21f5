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
  return new Promise((resolve) => new ChildAttempt(o, resolve).start());
}

type KilledFor = { cause: 'heartbeat' | 'timeout' | 'cancelled'; reason: string };

/** One child process from fork to 'close': its messages, its watchdog, its cancellation. */
class ChildAttempt {
  private child: ChildProcess | null = null;
  private terminal: TerminalEvent | null = null;
  private cancelled = false;
  private killedFor: KilledFor | null = null;
  private lastSeq = -1;
  private lastMessageAt = Date.now();
  private readonly startedAt = Date.now();
  private readonly timings: AttemptTimings;
  private readonly timers: NodeJS.Timeout[] = [];
  private settled = false;
  private readonly onAbort = () => this.cancel();

  constructor(
    private readonly o: ChildAttemptOptions,
    private readonly resolve: (outcome: AttemptOutcome) => void,
  ) {
    this.timings = { forkAt: this.startedAt, readyAt: null, terminalAt: null, closedAt: this.startedAt };
  }

  start(): void {
    const { o } = this;
    let child: ChildProcess;
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
      this.settle({
        kind: 'lost',
        cause: 'spawn',
        reason: `cannot start the trial process: ${(e as Error).message}`,
      });
      return;
    }
    this.child = child;
    if (child.pid !== undefined) o.onSpawn?.(child.pid);
    for (const [stream, readable] of [
      ['stdout', child.stdout],
      ['stderr', child.stderr],
    ] as const) {
      if (!readable) continue;
      const rl = createInterface({ input: readable, crlfDelay: Infinity });
      rl.on('line', (line) => o.onOutput?.(stream, line));
    }
    child.on('message', (raw: unknown) => this.onMessage(raw as ChildToCoordinator));
    if (o.signal?.aborted) this.cancel();
    else o.signal?.addEventListener('abort', this.onAbort, { once: true });
    const tick = Math.max(20, Math.min(1000, Math.floor(o.heartbeatTimeoutMs / 4)));
    this.timers.push(setInterval(() => this.watch(), tick));
    child.on('error', (e) => {
      // 'error' without a pid means the spawn failed; otherwise 'exit' follows.
      if (child.pid === undefined) this.finish(null, null, e);
    });
    // 'close' (not 'exit'): the stdio pipes and the IPC channel have drained, so no late event is lost.
    child.on('close', (code, signal) => this.finish(code, signal));
  }

  private onMessage(msg: ChildToCoordinator): void {
    const { o } = this;
    this.lastMessageAt = Date.now();
    if (msg?.type === 'ready') {
      this.timings.readyAt = this.lastMessageAt;
      this.send({
        type: 'run',
        trialKey: o.trialKey,
        attempt: o.attempt,
        config: o.config,
        options: o.options,
      });
      return;
    }
    if (msg?.type !== 'event') return;
    const env = msg.envelope;
    // Only this attempt's events; a confused child must not write another trial's rows.
    if (!env || env.trialKey !== o.trialKey || env.attempt !== o.attempt || this.terminal) return;
    if (typeof env.seq === 'number' && env.seq > this.lastSeq) this.lastSeq = env.seq;
    if (isTerminalEvent(env.event)) {
      this.terminal = env.event;
      this.timings.terminalAt = this.lastMessageAt;
      // The protocol says the child exits after its terminal event; make sure it does.
      this.timers.push(setTimeout(() => this.kill(), 5_000).unref());
    }
    o.onEvent(env);
  }

  private cancel(): void {
    if (this.cancelled || this.terminal) return;
    this.cancelled = true;
    this.send({ type: 'cancel', reason: String(this.o.signal?.reason ?? 'cancelled') });
    this.timers.push(
      setTimeout(() => {
        if (!this.terminal)
          this.killedFor ??= { cause: 'cancelled', reason: 'did not stop within the cancel grace period' };
        this.kill();
      }, this.o.cancelGraceMs ?? 10_000),
    );
  }

  /** The watchdog: silence beyond the heartbeat timeout (hung), or beyond the trial timeout. */
  private watch(): void {
    if (this.terminal || this.killedFor) return;
    const { o } = this;
    const now = Date.now();
    // Until 'ready' the child is starting Node (slow on a busy machine): a generous limit.
    const limit =
      this.timings.readyAt === null ? Math.max(o.heartbeatTimeoutMs, 30_000) : o.heartbeatTimeoutMs;
    if (now - this.lastMessageAt > limit) {
      this.killedFor = {
        cause: 'heartbeat',
        reason: `no heartbeat for ${Math.round((now - this.lastMessageAt) / 1000)} s (hung or overloaded; timeout ${limit / 1000} s)`,
      };
      this.kill();
    } else if (o.trialTimeoutMs !== null && now - this.startedAt > o.trialTimeoutMs) {
      this.killedFor = {
        cause: 'timeout',
        reason: `exceeded the trial timeout of ${Math.round(o.trialTimeoutMs / 1000)} s`,
      };
      this.kill();
    }
  }

  private send(msg: CoordinatorToChild): void {
    if (this.child?.connected)
      this.child.send(msg, (err) => void err /* a dying child cannot receive: its exit decides */);
  }

  private kill(): void {
    const child = this.child;
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
  }

  private finish(code: number | null, signal: NodeJS.Signals | null, error?: Error): void {
    if (this.settled) return;
    for (const t of this.timers) clearTimeout(t);
    this.o.signal?.removeEventListener('abort', this.onAbort);
    this.timings.closedAt = Date.now();
    const terminal = this.terminal;
    if (terminal) {
      const isCancelAnswer =
        this.cancelled && terminal.type === 'failed' && terminal.error.code === CANCELLED_CODE;
      this.settle({ kind: 'terminal', event: terminal, cancelled: isCancelAnswer }, code);
    } else if (this.killedFor) {
      this.settle({ kind: 'lost', ...this.killedFor }, code);
    } else if (this.cancelled) {
      this.settle({ kind: 'lost', cause: 'cancelled', reason: 'cancelled before it reported an end' }, code);
    } else {
      const how = error
        ? `failed to run: ${error.message}`
        : signal
          ? `was killed by ${signal}`
          : `exited with code ${code}`;
      this.settle(
        {
          kind: 'lost',
          cause: 'exit',
          reason: `the trial process (pid ${this.child?.pid ?? '?'}) ${how} before reporting an end`,
        },
        code,
      );
    }
  }

  private settle(
    outcome:
      | { kind: 'terminal'; event: TerminalEvent; cancelled: boolean }
      | { kind: 'lost'; cause: 'exit' | 'heartbeat' | 'timeout' | 'cancelled' | 'spawn'; reason: string },
    exitCode: number | null = null,
  ): void {
    this.settled = true;
    this.resolve({ ...outcome, lastSeq: this.lastSeq, exitCode, timings: this.timings });
  }
}

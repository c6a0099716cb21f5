/**
 * The local executor: one coordinator process (the only database writer) hands trials of a sweep
 * to a fixed set of slots (one per GPU x workers per GPU, or N CPU workers) through p-queue; each
 * attempt runs in its own child process. How an attempt's end is judged lives in attempt.ts.
 */
import { join } from 'node:path';
import PQueue from 'p-queue';
import type { TrialEnvelope } from '@flatrank/protocol';
import type { ClaimedTrial } from '@flatrank/store';
import {
  AttemptLifecycle,
  isInterruptionAnswer,
  recoverOrphans,
  verdictOfChild,
  type AttemptRef,
  type RunResult,
} from './attempt.js';
import { runChildAttempt, type AttemptOutcome } from './child.js';
import { EventWriter } from './event-writer.js';
import type { Slot } from './gpus.js';
import { workerId } from './identity.js';
import { trialLabel } from './label.js';
import { createTrialLogger, logRefusedWrite, type LoggerHandle } from './logging.js';
import type { CoordinatorOptions } from './options.js';
import { liveSnapshot, type RunningInfo } from './progress.js';
import { attemptDir, trialDir } from './runs-dir.js';
import { startCheckpoint } from './start-checkpoint.js';

export interface LocalRunOptions extends CoordinatorOptions {
  slots: readonly Slot[];
  /** Module forked for every attempt (apps/cli/dist/trial-child.js, or the fake trainer). */
  childEntry: string;
  childEnv?: Record<string, string | undefined>;
  /** How often to look again when nothing is claimable but trials still run elsewhere. */
  pollMs?: number;
}

export async function runLocal(o: LocalRunOptions): Promise<RunResult> {
  return new LocalExecutor(o).run();
}

/** A running attempt: what the live table shows, and how to stop it. */
interface Running extends RunningInfo {
  abort: AbortController;
  ended: boolean;
  /** Why the coordinator stopped it (Ctrl-C, lease lost); null while it runs on its own. */
  interruptedBy: string | null;
}

/** Wakes the dispatch loop when a slot frees up or Ctrl-C arrives. */
class Wakeup {
  private wake: (() => void) | null = null;

  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

class LocalExecutor {
  private readonly t0 = Date.now();
  private readonly leaseMs: number;
  private readonly coordinator = workerId('local');
  private readonly lifecycle: AttemptLifecycle;
  private readonly running = new Map<string, Running>();
  private readonly free: Slot[];
  private readonly queue: PQueue;
  private readonly wakeup = new Wakeup();
  private readonly writer: EventWriter;

  constructor(private readonly o: LocalRunOptions) {
    this.leaseMs = o.heartbeatTimeoutMs * 2;
    this.lifecycle = new AttemptLifecycle({ store: o.store, logger: o.logger, maxAttempts: o.maxAttempts });
    this.free = [...o.slots];
    this.queue = new PQueue({ concurrency: Math.max(1, o.slots.length) });
    this.writer = new EventWriter({
      store: o.store,
      leaseMs: this.leaseMs,
      onError: logRefusedWrite(o.logger),
      onLeaseLost: (key, attempt) => this.leaseLost(key, attempt),
    });
  }

  async run(): Promise<RunResult> {
    const { store, sweep, logger, signal } = this.o;
    const recovered = recoverOrphans(store, sweep.id, ['local'], logger);
    const ticker = this.o.onProgress ? setInterval(() => this.progress(), 1000) : null;
    const onAbort = () => this.interrupt();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.dispatch();
      await this.queue.onIdle();
    } finally {
      if (ticker) clearInterval(ticker);
      signal?.removeEventListener('abort', onAbort);
      this.writer.flush();
    }
    const result = this.lifecycle.runResult(sweep.id, {
      t0: this.t0,
      interrupted: signal?.aborted ?? false,
      recovered,
    });
    this.progress();
    return result;
  }

  /** Claims a trial for every free slot until nothing is left to claim or Ctrl-C. */
  private async dispatch(): Promise<void> {
    const { store, sweep, signal } = this.o;
    const pollMs = this.o.pollMs ?? 1000;
    while (!signal?.aborted) {
      const slot = this.free.shift();
      if (!slot) {
        await this.wakeup.wait(pollMs);
        continue;
      }
      const claimAt = Date.now();
      const claimed = store.claimTrial({
        sweepId: sweep.id,
        worker: `${this.coordinator}/${slot.id}`,
        device: slot.device,
        leaseMs: this.leaseMs,
        maxAttempts: this.o.maxAttempts,
      });
      if (claimed) {
        this.schedule(claimed, slot, claimAt);
        continue;
      }
      this.free.unshift(slot);
      if (this.running.size === 0) store.cancelBlocked(sweep.id, this.o.maxAttempts);
      // Still running here, or elsewhere (another coordinator, or a lease of a vanished one not yet expired).
      if (this.running.size === 0 && store.trialCounts(sweep.id).running === 0) break;
      await this.wakeup.wait(pollMs);
    }
  }

  private schedule(claimed: ClaimedTrial, slot: Slot, claimAt: number): void {
    void this.queue
      .add(() => this.runAttempt(claimed, slot, claimAt))
      .catch((e: unknown) =>
        this.o.logger.error(
          { err: e, trial: claimed.key },
          `internal error running ${claimed.key.slice(0, 10)}: ${(e as Error)?.message}`,
        ),
      )
      .finally(() => {
        this.free.push(slot);
        this.wakeup.notify();
      });
  }

  /** One attempt on one slot: resolve its start, run its child, judge its end. */
  private async runAttempt(claimed: ClaimedTrial, slot: Slot, claimAt: number): Promise<void> {
    const { key, attempt, config } = claimed;
    const tlog = createTrialLogger(join(trialDir(this.o.runsDir, this.o.sweep.name, key), 'trial.log'), {
      trial: key,
      sweep: this.o.sweep.name,
    });
    const ref: AttemptRef = {
      key,
      attempt,
      label: trialLabel(config),
      where: slot.id,
      claimedAt: claimAt,
      startedAt: null,
      trialLog: tlog.logger,
    };
    try {
      const start = startCheckpoint(this.o.store, config, this.o.checkpointDir ?? null);
      if (start.error) {
        this.lifecycle.end(ref, { kind: 'refused', reason: start.error });
        return;
      }
      const info = this.begin(claimed, slot, ref, start.path, tlog);
      const outcome = await this.runChild(claimed, slot, info, start.path, tlog);
      this.writer.flush();
      info.ended = true;
      const { forkAt, readyAt, terminalAt } = outcome.timings;
      this.lifecycle.end(ref, verdictOfChild(outcome, info.interruptedBy), {
        bootMs: readyAt !== null ? readyAt - forkAt : null,
        workMs: readyAt !== null && terminalAt !== null ? terminalAt - readyAt : null,
      });
    } finally {
      this.running.delete(key);
      tlog.close();
      this.progress();
    }
  }

  /** Marks the attempt running (live table) and logs its start. */
  private begin(
    claimed: ClaimedTrial,
    slot: Slot,
    ref: AttemptRef,
    startPath: string | null,
    tlog: LoggerHandle,
  ): Running {
    const { key, attempt, config } = claimed;
    const abort = new AbortController();
    ref.startedAt = Date.now();
    const info: Running = {
      key,
      label: ref.label,
      device: slot.device,
      worker: this.coordinator,
      attempt,
      epoch: null,
      epochs: config.training.epochs,
      step: null,
      startedAt: ref.startedAt,
      abort,
      ended: false,
      interruptedBy: null,
    };
    this.running.set(key, info);
    if (this.o.signal?.aborted) this.stop(info, String(this.o.signal.reason ?? 'interrupted'));
    this.lifecycle.started(ref, 'start');
    tlog.logger.info(
      {
        attempt,
        slot: slot.id,
        cudaVisibleDevices: slot.cudaVisibleDevices,
        startCheckpoint: startPath,
        config,
      },
      'attempt started',
    );
    this.progress();
    return info;
  }

  private runChild(
    claimed: ClaimedTrial,
    slot: Slot,
    info: Running,
    startPath: string | null,
    tlog: LoggerHandle,
  ): Promise<AttemptOutcome> {
    const { key, attempt, config } = claimed;
    const { o } = this;
    return runChildAttempt({
      childEntry: o.childEntry,
      trialKey: key,
      attempt,
      config,
      options: {
        dataDir: o.dataDir,
        artifactDir: attemptDir(o.runsDir, o.sweep.name, key, attempt),
        startCheckpoint: startPath,
        backend: o.backend,
        heartbeatMs: o.heartbeatMs,
      },
      cudaVisibleDevices: slot.cudaVisibleDevices,
      env: { ...o.childEnv, ...slot.env },
      heartbeatTimeoutMs: o.heartbeatTimeoutMs,
      trialTimeoutMs: o.trialTimeoutMs,
      cancelGraceMs: o.cancelGraceMs,
      signal: info.abort.signal,
      onEvent: (env) => this.onChildEvent(info, env, tlog),
      onOutput: (stream, line) => tlog.logger.info({ attempt, stream }, line),
    });
  }

  private onChildEvent(info: Running, env: TrialEnvelope, tlog: LoggerHandle): void {
    const ev = env.event;
    if (ev.type === 'heartbeat' || ev.type === 'metric') {
      info.step = ev.step;
      info.epoch = ev.epoch;
    }
    // The answer to our own cancel is not the trial's verdict: the lifecycle ends the attempt.
    if (isInterruptionAnswer(ev)) {
      tlog.logger.info({ attempt: env.attempt, seq: env.seq }, 'answered the cancel');
      return;
    }
    if (ev.type !== 'heartbeat' && ev.type !== 'metric')
      tlog.logger.info({ attempt: env.attempt, seq: env.seq, event: ev }, ev.type);
    else tlog.logger.debug({ attempt: env.attempt, seq: env.seq, event: ev }, ev.type);
    this.writer.push(env);
  }

  private stop(info: Running, reason: string): void {
    info.interruptedBy ??= reason;
    info.abort.abort(reason);
  }

  private leaseLost(key: string, attempt: number): void {
    const r = this.running.get(key);
    if (!r || r.attempt !== attempt || r.ended) return;
    this.o.logger.warn(
      { trial: key, attempt },
      `${key.slice(0, 10)}: attempt ${attempt} lost its lease; stopping it`,
    );
    this.stop(r, 'lease lost');
  }

  /** Ctrl-C: hand out nothing more, cancel what runs. */
  private interrupt(): void {
    const reason = String(this.o.signal?.reason ?? 'interrupted');
    this.o.logger.warn(
      `interrupted (${reason}): handing out no more trials, cancelling ${this.running.size} running`,
    );
    for (const r of this.running.values()) this.stop(r, reason);
    this.wakeup.notify();
  }

  private progress(): void {
    if (!this.o.onProgress) return;
    this.o.onProgress(
      liveSnapshot({
        store: this.o.store,
        sweep: this.o.sweep,
        t0: this.t0,
        durations: this.lifecycle.durations,
        running: [...this.running.values()].map(({ abort: _a, ended: _e, interruptedBy: _i, ...r }) => r),
        parallel: (left) => Math.max(1, Math.min(this.o.slots.length, left)),
      }),
    );
  }
}

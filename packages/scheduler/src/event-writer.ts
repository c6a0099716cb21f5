/**
 * The coordinator's single path into the database for trial events: buffers envelopes and writes
 * them in batches (one applyEvents transaction per flush), renews leases on heartbeats. Terminal
 * events flush at once so that a result is durable before the attempt is considered over.
 */
import { isTerminalEvent, type StoreError, type TrialEnvelope } from '@flatrank/protocol';
import { databaseFault, type ResultsStore } from '@flatrank/store';

export interface EventWriterOptions {
  store: ResultsStore;
  /** Lease length granted on every heartbeat. */
  leaseMs: number;
  /** Max time an event waits in the buffer. */
  flushMs?: number;
  /** Flush when this many events are buffered. */
  maxBatch?: number;
  /** An attempt lost its lease (someone else owns the trial now). */
  onLeaseLost?(trialKey: string, attempt: number): void;
  /** A write the store refused (with the envelope when it was one event). Without it, errors throw. */
  onError?(e: unknown, env?: TrialEnvelope): void;
}

export class EventWriter {
  private buffer: TrialEnvelope[] = [];
  private beats = new Map<string, { key: string; attempt: number }>();
  private timer: NodeJS.Timeout | null = null;
  /** Envelopes written (applied or recognised as duplicates). */
  written = 0;
  applied = 0;
  /** Set when the database itself failed (StoreError DB_FULL, DB_CORRUPT, ...): nothing more is written. */
  fault: StoreError | null = null;
  /** Events not written because of `fault`. */
  dropped = 0;

  constructor(private readonly o: EventWriterOptions) {}

  push(env: TrialEnvelope): void {
    this.buffer.push(env);
    if (env.event.type === 'heartbeat' || env.event.type === 'started')
      this.beats.set(`${env.trialKey}#${env.attempt}`, { key: env.trialKey, attempt: env.attempt });
    if (isTerminalEvent(env.event) || this.buffer.length >= (this.o.maxBatch ?? 500)) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.o.flushMs ?? 100);
  }

  pushAll(envs: readonly TrialEnvelope[]): void {
    for (const e of envs) this.push(e);
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.buffer;
    // An attempt that ended in this batch is no longer running: its lease is over, not lost.
    const ended = new Set(
      batch.filter((e) => isTerminalEvent(e.event)).map((e) => `${e.trialKey}#${e.attempt}`),
    );
    const beats = [...this.beats.entries()].filter(([k]) => !ended.has(k)).map(([, v]) => v);
    this.buffer = [];
    this.beats.clear();
    if (this.fault) {
      // The database cannot be written (full, read-only, damaged): reported once, not per event.
      this.dropped += batch.length;
      return;
    }
    if (batch.length) {
      try {
        const stats = this.o.store.applyEvents(batch);
        this.written += batch.length;
        this.applied += stats.applied;
      } catch (batchError) {
        if (this.checkFault(batchError)) {
          this.dropped += batch.length;
          return;
        }
        // One bad event (e.g. an unknown metric phase from a confused child) must not cost the
        // others: apply them one by one and report the ones the store refuses.
        for (const env of batch) {
          try {
            this.applied += this.o.store.applyEvents([env]).applied;
            this.written++;
          } catch (err) {
            if (this.checkFault(err)) return;
            this.report(err, env);
          }
        }
      }
    }
    for (const b of beats) {
      try {
        if (!this.o.store.heartbeat(b.key, b.attempt, this.o.leaseMs)) this.o.onLeaseLost?.(b.key, b.attempt);
      } catch (err) {
        if (this.checkFault(err)) return;
        this.report(err);
      }
    }
  }

  /** A fault of the database file itself: remembered and reported once (true), else false. */
  private checkFault(e: unknown): boolean {
    const fault = databaseFault(e, this.o.store.path);
    if (!fault || fault.code === 'WRITE_REFUSED') return false;
    this.fault = fault;
    this.dropped += this.buffer.length;
    this.buffer = [];
    this.report(fault);
    return true;
  }

  private report(e: unknown, env?: TrialEnvelope): void {
    if (this.o.onError) this.o.onError(e, env);
    else throw e;
  }
}

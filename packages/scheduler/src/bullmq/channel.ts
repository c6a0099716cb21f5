/**
 * The event channel between BullMQ workers and the coordinator: a Redis stream per sweep with
 * at-least-once delivery (see redis.ts for the design).
 */
import type { Redis } from 'ioredis';
import { isTerminalEvent, type TrialEnvelope, type TrialEvent } from '@flatrank/protocol';
import { ackField } from './redis.js';

const CHUNK = 400;

/**
 * Worker side: numbers the attempt's events 0, 1, 2, ... (the child's own seqs may start anywhere),
 * XADDs them in batches, and re-sends everything above the coordinator's ack when the ack stops
 * advancing. Keeps the attempt's events in memory until they are acknowledged.
 */
export class EventPublisher {
  private readonly events: TrialEnvelope[] = [];
  private sentUpTo = -1;
  private acked = -1;
  private lastProgress = Date.now();
  private timer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private closed = false;
  /** Times everything above the ack was sent again. */
  resends = 0;

  constructor(
    private readonly redis: Redis,
    private readonly eventsKey: string,
    private readonly acksKey: string,
    private readonly trialKey: string,
    private readonly attempt: number,
    private readonly opts: { flushMs?: number; resendAfterMs?: number } = {},
  ) {
    this.timer = setInterval(() => void this.tick(), opts.flushMs ?? 100);
  }

  add(event: TrialEvent): void {
    this.events.push({ trialKey: this.trialKey, attempt: this.attempt, seq: this.events.length, event });
    if (isTerminalEvent(event)) void this.flush();
  }

  get lastSeq(): number {
    return this.events.length - 1;
  }

  private async tick(): Promise<void> {
    await this.flush();
    await this.pollAck();
  }

  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    while (!this.closed && this.sentUpTo < this.events.length - 1) {
      const batch = this.events.slice(this.sentUpTo + 1, this.sentUpTo + 1 + CHUNK);
      try {
        await this.redis.xadd(this.eventsKey, '*', 'e', JSON.stringify(batch));
      } catch {
        return; // Redis away: the next tick tries again (events stay in memory).
      }
      this.sentUpTo = batch[batch.length - 1]!.seq;
    }
  }

  private async pollAck(): Promise<void> {
    if (this.closed || this.acked >= this.events.length - 1) return;
    let v: string | null;
    try {
      v = await this.redis.hget(this.acksKey, ackField(this.trialKey, this.attempt));
    } catch {
      return;
    }
    const a = v === null ? -1 : Number(v);
    const now = Date.now();
    if (a > this.acked) {
      this.acked = a;
      this.lastProgress = now;
    } else if (this.sentUpTo > this.acked && now - this.lastProgress > (this.opts.resendAfterMs ?? 2000)) {
      // Sent but not acknowledged for a while: lost (Redis restart) or the coordinator is away.
      this.sentUpTo = this.acked;
      this.lastProgress = now;
      this.resends++;
    }
  }

  /** Resolves once every event is acknowledged; rejects after timeoutMs. */
  async drain(timeoutMs: number): Promise<void> {
    const t0 = Date.now();
    while (this.acked < this.events.length - 1) {
      if (Date.now() - t0 > timeoutMs)
        throw new Error(
          `events of ${this.trialKey.slice(0, 10)} attempt ${this.attempt} not acknowledged within ${timeoutMs / 1000} s (coordinator down?)`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}

/**
 * Coordinator side: the highest contiguous seq received per attempt (what may be acknowledged: a
 * gap means an entry was lost and must be re-sent).
 */
export class AckTracker {
  private readonly state = new Map<string, { next: number; ahead: Set<number> }>();

  /** Records a received seq; returns the new contiguous high-water mark (-1 = nothing yet). */
  receive(trialKey: string, attempt: number, seq: number): number {
    const f = ackField(trialKey, attempt);
    let s = this.state.get(f);
    if (!s) this.state.set(f, (s = { next: 0, ahead: new Set() }));
    if (seq >= s.next) s.ahead.add(seq);
    while (s.ahead.delete(s.next)) s.next++;
    return s.next - 1;
  }

  /**
   * Starts an attempt at an ack already written (by an earlier coordinator): the entries below it
   * were applied and deleted from the stream and will never be read again.
   */
  seed(field: string, acked: number): void {
    const s = this.state.get(field);
    if (!s) this.state.set(field, { next: acked + 1, ahead: new Set() });
    else if (acked + 1 > s.next) {
      s.next = acked + 1;
      for (const x of s.ahead) if (x < s.next) s.ahead.delete(x);
      while (s.ahead.delete(s.next)) s.next++;
    }
  }

  contiguous(trialKey: string, attempt: number): number {
    return (this.state.get(ackField(trialKey, attempt))?.next ?? 0) - 1;
  }

  forget(trialKey: string, attempt: number): void {
    this.state.delete(ackField(trialKey, attempt));
  }
}

import { describe, expect, it } from 'vitest';
import { AckTracker } from '../src/bullmq/channel.js';
import { ackField } from '../src/bullmq/redis.js';

const K = 'f'.repeat(64);

describe('AckTracker (what the coordinator may acknowledge)', () => {
  it('acknowledges only the contiguous prefix: a gap waits for the re-send', () => {
    const a = new AckTracker();
    expect(a.receive(K, 1, 0)).toBe(0);
    expect(a.receive(K, 1, 2)).toBe(0); // 1 is missing (lost entry)
    expect(a.receive(K, 1, 3)).toBe(0);
    expect(a.receive(K, 1, 1)).toBe(3); // re-sent: the prefix closes
    expect(a.receive(K, 1, 2)).toBe(3); // duplicates change nothing
    expect(a.contiguous(K, 2)).toBe(-1); // attempts are separate
  });

  it('continues from an ack written by an earlier coordinator (entries below it are gone)', () => {
    const a = new AckTracker();
    a.seed(ackField(K, 1), 41);
    expect(a.contiguous(K, 1)).toBe(41);
    expect(a.receive(K, 1, 43)).toBe(41);
    expect(a.receive(K, 1, 42)).toBe(43);
    // A re-send from 0 (after a Redis restart emptied the acks) does not move it back.
    expect(a.receive(K, 1, 0)).toBe(43);
  });
});

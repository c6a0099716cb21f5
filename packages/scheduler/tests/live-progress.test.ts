// The pieces both coordinators share (src/logging.ts, src/progress.ts): the live progress snapshot and the logging
// of event writes the store refused.
import { afterEach, describe, expect, it } from 'vitest';
import type { TrialEnvelope } from '@flatrank/protocol';
import { createTempDb, populateTempDb, type TempDb } from '@flatrank/testing';
import { logRefusedWrite } from '../src/logging.js';
import { liveSnapshot } from '../src/progress.js';
import type { Logger } from '../src/logging.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

describe('liveSnapshot', () => {
  it('counts from the store; ETA = mean succeeded duration x trials left / parallel(left)', () => {
    tmp = createTempDb();
    const { sweepId } = populateTempDb(tmp.store!, { sweep: 's', seeds: 2, succeeded: 3 });
    const sweep = { id: sweepId, name: 's' };
    const seen: number[] = [];
    const s = liveSnapshot({
      store: tmp.store!,
      sweep,
      t0: Date.now() - 50,
      durations: [1000, 3000],
      running: [],
      parallel: (left) => {
        seen.push(left);
        return 2;
      },
    });
    expect(s.sweep).toBe('s');
    expect(s.total).toBe(8);
    expect(s.counts.succeeded).toBe(3);
    expect(s.counts.pending).toBe(5);
    expect(seen).toEqual([5]);
    expect(s.etaMs).toBe((2000 * 5) / 2);
    expect(s.elapsedMs).toBeGreaterThanOrEqual(50);
    // Nothing succeeded in this run yet: no estimate while trials are left.
    expect(
      liveSnapshot({ store: tmp.store!, sweep, t0: 0, durations: [], running: [], parallel: () => 1 }).etaMs,
    ).toBe(null);
  });

  it('ETA is 0 once nothing is left', () => {
    tmp = createTempDb();
    const { sweepId } = populateTempDb(tmp.store!, { sweep: 'done', seeds: 1, succeeded: 4 });
    const s = liveSnapshot({
      store: tmp.store!,
      sweep: { id: sweepId, name: 'done' },
      t0: Date.now(),
      durations: [],
      running: [],
      parallel: () => 1,
    });
    expect(s.counts.succeeded).toBe(4);
    expect(s.etaMs).toBe(0);
  });
});

describe('logRefusedWrite', () => {
  it('logs the refused event (or heartbeat) with its trial and sequence number', () => {
    const calls: Array<[Record<string, unknown>, string]> = [];
    const logger = {
      error: (obj: Record<string, unknown>, msg: string) => calls.push([obj, msg]),
    } as unknown as Logger;
    const onError = logRefusedWrite(logger);
    const env = {
      trialKey: 'abcdef0123456789',
      attempt: 1,
      seq: 7,
      event: { type: 'epoch' },
    } as unknown as TrialEnvelope;
    onError(new Error('database is locked'), env);
    onError(new Error('lease lost'));
    expect(calls[0]![0]).toMatchObject({ trial: 'abcdef0123456789', seq: 7 });
    expect(calls[0]![1]).toBe('could not store event epoch #7 of abcdef0123: database is locked');
    expect(calls[1]![1]).toBe('could not store a heartbeat: lease lost');
  });
});

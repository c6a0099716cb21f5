import { afterEach, describe, expect, it } from 'vitest';
import { trialKey, type TrialEnvelope, type TrialEvent } from '@flatrank/protocol';
import { createTempDb, tempDbTrialConfig, type TempDb } from '@flatrank/testing';
import { EventWriter } from '../src/event-writer.js';
import { runUserQuery } from '@flatrank/store';

let db: TempDb | undefined;
afterEach(() => db?.cleanup());

describe('EventWriter', () => {
  it('batches events; a refused event costs only itself; the result lands once', () => {
    db = createTempDb();
    const store = db.store!;
    const config = tempDbTrialConfig({ seed: 7 });
    const key = trialKey(config);
    const { id } = store.upsertSweep({ name: 'w', specText: '', specResolved: {}, specHash: 'h' });
    store.insertTrials(id, [{ key, config }]);
    const claimed = store.claimTrial({ sweepId: id, worker: 'test', leaseMs: 60_000, maxAttempts: 3 })!;
    const errors: Array<number | undefined> = [];
    const w = new EventWriter({
      store,
      leaseMs: 60_000,
      flushMs: 10_000,
      onError: (_e, env) => errors.push(env?.seq),
    });
    let seq = 0;
    const env = (event: TrialEvent): TrialEnvelope => ({
      trialKey: key,
      attempt: claimed.attempt,
      seq: seq++,
      event,
    });
    w.push(env({ type: 'metric', step: 0, epoch: 0, phase: 'train', name: 'loss', value: 2 }));
    w.push(env({ type: 'metric', step: 1, epoch: 0, phase: 'bogus' as 'train', name: 'loss', value: 1 }));
    w.push(env({ type: 'heartbeat', step: 1, epoch: 0 }));
    expect(runUserQuery(db.path, 'SELECT count(*) AS n FROM metrics').rows[0]!['n']).toBe(0); // still buffered
    const summary = {
      accuracyOriginal: null,
      accuracyAfterDecomposition: 0.5,
      accuracyFinal: 0.9,
      paramsBefore: 10,
      paramsAfter: 5,
      macsBefore: 10,
      macsAfter: 5,
      latencyBeforeMs: null,
      latencyAfterMs: null,
      latencyBatch: null,
      wallSeconds: 1,
      steps: 2,
      epochs: 1,
    };
    const finished = env({ type: 'finished', summary });
    w.push(finished); // terminal: flushes at once
    expect(errors).toEqual([1]);
    expect(runUserQuery(db.path, 'SELECT count(*) AS n FROM metrics').rows[0]!['n']).toBe(1);
    expect(store.getTrial(key)!.status).toBe('succeeded');
    // Delivered again (a re-send): nothing changes.
    w.pushAll([finished]);
    expect(runUserQuery(db.path, 'SELECT count(*) AS n FROM results').rows[0]!['n']).toBe(1);
  });
});

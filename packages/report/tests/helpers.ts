/** Writes hand-made sweeps through the real store API (upsert, insert, claim, applyEvents). */
import {
  resolveTrialConfig,
  trialKey,
  type LayerRecord,
  type TrialConfig,
  type TrialConfigInput,
  type TrialEnvelope,
  type TrialSummary,
} from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import { TEMP_DB_ENVIRONMENT } from '@flatrank/testing';

export interface HandTrial {
  config: TrialConfig;
  outcome: 'succeeded' | 'diverged' | 'failed' | 'pending';
  summary?: Partial<TrialSummary>;
  layers?: Array<Partial<LayerRecord> & { name: string }>;
}

export function cfg(input: Partial<TrialConfigInput> & Pick<TrialConfigInput, 'method'>): TrialConfig {
  return resolveTrialConfig({
    model: 'lenet5',
    dataset: { name: 'mnist', trainLimit: 256, testLimit: 128 },
    training: { epochs: input.method === 'posttrain' ? 0 : 1, lr: 0.05, batchSize: 32 },
    compression: null,
    distortion: input.method === 'distort' ? { interval: 200 } : null,
    ...input,
  });
}

export function summary(over: Partial<TrialSummary>): TrialSummary {
  return {
    accuracyOriginal: 0.95,
    accuracyAfterDecomposition: null,
    accuracyFinal: 0.9,
    paramsBefore: 60000,
    paramsAfter: 60000,
    macsBefore: 400000,
    macsAfter: 400000,
    latencyBeforeMs: 2,
    latencyAfterMs: 2,
    latencyBatch: 32,
    wallSeconds: 1,
    steps: 10,
    epochs: 1,
    ...over,
  };
}

export function writeSweep(
  store: ResultsStore,
  name: string,
  specResolved: unknown,
  trials: readonly HandTrial[],
): string[] {
  const { id: sweepId } = store.upsertSweep({
    name,
    specText: `name: ${name}\n`,
    specResolved,
    specHash: 'a'.repeat(64),
  });
  const keys = trials.map((t) => trialKey(t.config));
  const byKey = new Map(trials.map((t, i) => [keys[i]!, t]));
  const run = trials
    .map((t, i) => ({ key: keys[i]!, config: t.config }))
    .filter((t) => byKey.get(t.key)!.outcome !== 'pending');
  store.insertTrials(sweepId, run);
  for (;;) {
    const claim = store.claimTrial({ sweepId, worker: 'w', device: 'cpu', leaseMs: 60_000, maxAttempts: 1 });
    if (!claim) break;
    const t = byKey.get(claim.key)!;
    let seq = 0;
    const env = (event: TrialEnvelope['event']): TrialEnvelope => ({
      trialKey: claim.key,
      attempt: claim.attempt,
      seq: seq++,
      event,
    });
    const events: TrialEnvelope[] = [env({ type: 'started', env: TEMP_DB_ENVIRONMENT })];
    for (const l of t.layers ?? [])
      events.push(
        env({
          type: 'layer',
          layer: {
            decomposition: 'svd',
            scheme: null,
            ranks: [1],
            rawRanks: null,
            tile: null,
            kernelShape: [3, 3, 4, 4],
            paramsBefore: 100,
            paramsAfter: 50,
            macsBefore: 1000,
            macsAfter: 500,
            relativeError: 0.1,
            ...l,
          },
        }),
      );
    if (t.outcome === 'succeeded') events.push(env({ type: 'finished', summary: summary(t.summary ?? {}) }));
    else if (t.outcome === 'diverged') events.push(env({ type: 'diverged', reason: 'loss is NaN', step: 3 }));
    else
      events.push(
        env({
          type: 'failed',
          error: { name: 'Error', code: 'INTERNAL', message: 'boom' },
          retryable: false,
        }),
      );
    store.applyEvents(events);
  }
  const pending = trials
    .map((t, i) => ({ key: keys[i]!, config: t.config }))
    .filter((t) => byKey.get(t.key)!.outcome === 'pending');
  if (pending.length > 0) store.insertTrials(sweepId, pending);
  return keys;
}

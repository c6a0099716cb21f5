// Forked by processes.test.ts: the one writer. Appends metric batches for a running trial, one
// transaction per batch, and after each commit tells the parent how many rows are committed.
// The parent reads concurrently and/or kills this process with SIGKILL mid-writes.
import { ResultsStore } from '../../dist/index.js';

const [file, trialKey, attempt, batchSize, maxBatches] = process.argv.slice(2);
const store = ResultsStore.open(file);
const batch = Number(batchSize);
let seq = 0;
for (let b = 0; b < Number(maxBatches); b++) {
  const envelopes = [];
  for (let i = 0; i < batch; i++, seq++) {
    envelopes.push({
      trialKey,
      attempt: Number(attempt),
      seq,
      event: { type: 'metric', step: seq, epoch: 0, phase: 'train', name: 'loss', value: 1 / (seq + 1) },
    });
  }
  store.applyEvents(envelopes);
  // Synchronous write so the count reaches the parent even if we are killed right after.
  process.send({ committed: seq });
}
store.close();
process.send({ done: true, committed: seq }, () => process.exit(0));

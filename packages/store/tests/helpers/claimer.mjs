// Forked by processes.test.ts: claims trials of one sweep in a loop until none is claimable and
// sends the keys it got to the parent. Imports the built store (dist), since vitest only runs
// TypeScript inside its own process.
import { setTimeout as sleep } from 'node:timers/promises';
import { ResultsStore } from '../../dist/index.js';

const [file, sweepId, worker] = process.argv.slice(2);
const store = ResultsStore.open(file);
const claimed = [];
// Say we are ready, then wait for the go signal so both claimers start together.
const go = new Promise((resolve) => process.once('message', resolve));
process.send('ready');
await go;
for (;;) {
  const c = store.claimTrial({ sweepId: Number(sweepId), worker, leaseMs: 600_000, maxAttempts: 3 });
  if (!c) break;
  claimed.push({ key: c.key, attempt: c.attempt });
  // A real worker does work between claims; without a pause one process can starve the other's
  // busy handler and the test would not exercise contention.
  await sleep(Math.random() < 0.5 ? 0 : 1);
}
store.close();
process.send({ worker, claimed }, () => process.exit(0));

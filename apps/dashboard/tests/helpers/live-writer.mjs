// A writer process for the concurrency test: runs the trials of a new sweep `live` through the
// store's writer API (claim + events, as the scheduler's coordinator does), a few ms apart, until
// they are done or the parent says 'stop'; then reports over IPC how many trials it finished and
// every error it met. Imports the built dist/ of the packages.
import { ResultsStore } from '@flatrank/store';
import { runNextTrial, tempDbTrialConfig } from '@flatrank/testing';
import { trialKey } from '@flatrank/protocol';
import { setTimeout as sleep } from 'node:timers/promises';

const [file, trialsArg] = process.argv.slice(2);
const errors = [];
let finished = 0;
const store = ResultsStore.open(file, { create: true });
try {
  const configs = Array.from({ length: Number(trialsArg) }, (_, seed) =>
    tempDbTrialConfig({
      method: 'distort',
      seed,
      distortion: { interval: 4 },
      compression: { decomposition: 'svd', rank: { kind: 'ratio', ratio: 2 } },
    }),
  );
  const { id: sweepId } = store.upsertSweep({
    name: 'live',
    specText: 'name: live\n',
    specResolved: { name: 'live' },
    specHash: 'd'.repeat(64),
  });
  store.insertTrials(
    sweepId,
    configs.map((config) => ({ key: trialKey(config), config })),
  );
  let stop = false;
  process.on('message', (m) => (stop ||= m === 'stop'));
  process.send({ ready: true });
  const sweep = { name: 'live', sweepId, keys: [], configs };
  while (!stop) {
    await sleep(5);
    try {
      if (runNextTrial(store, sweep, 'live-writer') === null) break;
      finished++;
    } catch (e) {
      errors.push(String(e?.message ?? e));
      if (errors.length > 20) break;
    }
  }
  store.finishSweep(sweepId);
} catch (e) {
  errors.push(String(e?.message ?? e));
} finally {
  store.close();
}
process.send({ finished, errors }, () => process.exit(0));

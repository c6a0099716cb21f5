// A writer process for the concurrency test: runs every trial of a new sweep `live` through the
// store's writer API (claim + events, as the scheduler's coordinator does) and reports over IPC how
// many trials it finished and every error it met. Imports the built dist/ of the packages.
import { ResultsStore } from '@flatrank/store';
import { runNextTrial, tempDbTrialConfig } from '@flatrank/testing';
import { trialKey } from '@flatrank/protocol';

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
  process.send({ ready: true });
  const sweep = { name: 'live', sweepId, keys: [], configs };
  for (;;) {
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

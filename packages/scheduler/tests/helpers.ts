// Shared set-up of the scheduler tests: the sweep sandbox of @flatrank/testing and runSpec with the
// fake trainer.
import { runWithFakeTrainer, type FakeTrainerSettings, type Sandbox } from '@flatrank/testing';
import { ResultsStore } from '@flatrank/store';
import { runSpec, type RunSpecOptions } from '../src/index.js';

export {
  assertNoDuplicates,
  baselineSpec,
  captureStream as capture,
  sandbox,
  sql,
  waitFor,
  type Sandbox,
} from '@flatrank/testing';

/** runSpec in the sandbox with the fake trainer (see runWithFakeTrainer). */
export function runFake(
  sb: Sandbox,
  specFile: string,
  fake: FakeTrainerSettings,
  opts: Partial<RunSpecOptions> & { fakeGpus?: number } = {},
) {
  return runWithFakeTrainer(runSpec, sb, specFile, fake, opts);
}

/** Every trial of the database, read through a read-only store. */
export function trials(db: string) {
  const store = ResultsStore.open(db, { readonly: true });
  try {
    return store.listTrials({});
  } finally {
    store.close();
  }
}

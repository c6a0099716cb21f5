// One attempt lifecycle for both executors (src/attempt.ts): one label per trial from the dry run to
// the run's log lines, and an end message that gives each trial's real reason.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SchedulerError } from '@flatrank/protocol';
import { baselineSpec, runFake, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

const DEPS = `name: deps
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: baseline
methods:
  baseline: {}
  pt: { method: posttrain, compression: { decomposition: svd, rank: 2 } }
resources: { maxAttempts: 1 }
`;

describe('attempt lifecycle', () => {
  it('the dry run and the run name every trial by the same label', async () => {
    const spec = sb.spec('deps', DEPS);
    const dry = await runFake(sb, spec, {}, { gpus: 'none', dryRun: true });
    const labels = dry.out
      .trim()
      .split('\n')
      .slice(0, -1)
      .map((l) => /^([0-9a-f]{12}) {2}(.+?)(?: {2}\[.*\])?(?: {2}\(after .*\))?$/.exec(l)!);
    expect(labels.map((m) => m[2])).toEqual(['baseline seed=0', 'posttrain svd rank=2 seed=0']);
    // The spec's own spelling is shown only where it says more than the label (method id "pt").
    expect(dry.out).toMatch(/posttrain svd rank=2 seed=0 {2}\[pt\]/);
    expect(dry.out).not.toMatch(/baseline seed=0 {2}\[/);
    const run = await runFake(sb, spec, { default: { steps: 2, stepMs: 5 } }, { gpus: 'none' });
    expect(run.error).toBeUndefined();
    for (const m of labels) {
      expect(run.err).toContain(`start ${m[1]!.slice(0, 10)} ${m[2]} on cpu0`);
      expect(run.err).toMatch(new RegExp(`done {2}${m[1]!.slice(0, 10)} ${m[2]}: accuracy`));
    }
  });

  it('the end message gives each trial its own reason: a failure, and a cancellation because of it', async () => {
    const spec = sb.spec('deps', DEPS);
    const r = await runFake(sb, spec, { byMethod: { baseline: { action: 'fail' } } }, { gpus: 'none' });
    expect((r.error as SchedulerError).code).toBe('TRIALS_FAILED');
    const msg = (r.error as SchedulerError).message;
    expect(msg).toMatch(/^sweep deps: 1 failed, 1 cancelled:$/m);
    expect(msg).toMatch(
      /^ {2}[0-9a-f]{10} baseline seed=0: failed at attempt 1: FAKE_FAILURE: fake failure at step 2$/m,
    );
    expect(msg).toMatch(
      /^ {2}[0-9a-f]{10} posttrain svd rank=2 seed=0: cancelled: its start trial [0-9a-f]{10} failed$/m,
    );
  });

  it('no dependency is blamed when none failed', async () => {
    const spec = sb.spec('solo', baselineSpec('solo', [0, 1], 'resources: { maxAttempts: 1 }\n'));
    const r = await runFake(
      sb,
      spec,
      { default: { steps: 2, stepMs: 5 }, bySeed: { '1': { steps: 4, action: 'crash' } } },
      { gpus: 'none' },
    );
    const msg = (r.error as SchedulerError).message;
    expect(msg).toMatch(/^sweep solo: 1 failed:$/m);
    expect(msg).toMatch(
      /baseline seed=1: failed at attempt 1: attempt 1: the trial process \(pid \d+\) exited with code 1/,
    );
    expect(msg).not.toMatch(/dependency/);
  });
});

// Redis faults seen by `flatrank run --executor bullmq` and `flatrank worker` as processes of the
// built CLI: an unreachable Redis is one clear line and exit 8 (no ioredis "Unhandled error event"
// stack trace), and a worker that refuses to start leaves no log file behind.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baselineSpec, fakeTrainerPath, freePort, type ProcessSandbox } from '@flatrank/testing';
import { assertBuilt, cliSandbox, runArgs } from './processes.js';

beforeAll(() => assertBuilt());
let sb: ProcessSandbox;
beforeEach(() => {
  sb = cliSandbox();
});
afterEach(() => sb.cleanup());

function expectClearRefusal(output: string, url: string): void {
  expect(output).toContain(`flatrank: cannot connect to Redis at ${url}: connect ECONNREFUSED`);
  expect(output).not.toMatch(/Unhandled error event/);
  expect(output).not.toMatch(/^\s+at /m); // no stack trace
}

describe('an unreachable Redis', { timeout: 60_000 }, () => {
  it('flatrank worker: exit 8, one clear line, no worker log written', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const p = sb.spawn([
      'worker',
      '--redis',
      url,
      '--gpus',
      'none',
      '--runs-dir',
      sb.runsDir,
      '--child-entry',
      fakeTrainerPath,
    ]);
    expect(await p.exited).toBe(8);
    expectClearRefusal(p.output(), url);
    expect(existsSync(join(sb.runsDir, 'workers'))).toBe(false);
  });

  it('flatrank run --executor bullmq: exit 8, one clear line', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const spec = sb.spec('r', baselineSpec('r', [0]));
    const p = sb.spawn(runArgs(sb, spec, '--executor', 'bullmq', '--redis', url));
    expect(await p.exited).toBe(8);
    expectClearRefusal(p.output(), url);
  });
});

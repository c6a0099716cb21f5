// `flatrank run --executor local|bullmq`; `--backend local|bullmq` is accepted for one more release
// with a notice on stderr (afterwards --backend names only the TensorFlow.js backend).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveExecutor } from '../src/commands/run.js';
import { runCli } from './helpers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-exec-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function sink(): { write(s: string): boolean; text: string } {
  const s = { text: '', write: (t: string) => ((s.text += t), true) };
  return s;
}

describe('run --executor', () => {
  it('resolves --executor, and --backend with a deprecation notice', () => {
    const quiet = sink();
    expect(resolveExecutor({}, quiet as never)).toBe('local');
    expect(resolveExecutor({ executor: 'bullmq' }, quiet as never)).toBe('bullmq');
    expect(quiet.text).toBe('');
    const noisy = sink();
    expect(resolveExecutor({ backend: 'bullmq' }, noisy as never)).toBe('bullmq');
    expect(noisy.text).toMatch(/--backend bullmq is deprecated .* use --executor bullmq/);
    expect(() => resolveExecutor({ executor: 'k8s' }, quiet as never)).toThrow(
      /--executor: unknown value "k8s"; allowed: local, bullmq/,
    );
    expect(() => resolveExecutor({ executor: 'local', backend: 'local' }, quiet as never)).toThrow(
      /--executor only/,
    );
  });

  it('the CLI: an unknown executor exits 2 naming the flag; --backend still works, with the notice', async () => {
    const spec = join(dir, 's.yaml');
    writeFileSync(
      spec,
      'name: s\nmodel: lenet5\ndataset: mnist\ntraining: { epochs: 1 }\nmethods:\n  baseline: {}\n',
    );
    const bad = await runCli(['run', spec, '--db', join(dir, 'db.sqlite'), '--executor', 'k8s']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--executor: unknown value "k8s"/);
    // Without --redis the bullmq executor is refused before anything runs: the flag reached runSpec.
    const old = await runCli(['run', spec, '--db', join(dir, 'db.sqlite'), '--backend', 'bullmq']);
    expect(old.err).toMatch(/--backend bullmq is deprecated/);
    expect(old.code).toBe(2);
    expect(old.err).toMatch(/--redis: the bullmq executor needs a Redis URL/);
  });
});

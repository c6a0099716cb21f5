// start: {checkpoint: <name>}: the lookup rule (relative to the spec file's directory), the
// SpecErrors of a spec whose checkpoint is missing or unusable, and a run in which the trial child
// receives the resolved path.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpecError, resolveTrialConfig } from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { createTempDb, fakeTrainerEnv, fakeTrainerPath, type TempDb } from '@flatrank/testing';
import { startCheckpoint } from '../src/start-checkpoint.js';
import {
  createCoordinatorLogger,
  expandSpec,
  loadSpecFile,
  parseSpecText,
  resolveCheckpointName,
  runLocal,
  writeSweep,
} from '../src/index.js';
import { runFake, sandbox, sql, type Sandbox } from './helpers.js';

const SPY_CHILD = fileURLToPath(new URL('./helpers/spy-child.mjs', import.meta.url));

/** A checkpoint directory as packages/trainers writes it (the contents of the weights do not matter here). */
function writeCheckpoint(
  dir: string,
  meta: Record<string, unknown> = {},
  files: readonly string[] = ['model.json', 'weights.bin'],
): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'flatrank.json'),
    JSON.stringify({
      format: 'flatrank-checkpoint-1',
      trialKey: null,
      config: { model: 'lenet5' },
      architecture: 'base',
      epoch: 2,
      step: 100,
      accuracy: 0.98,
      savedAt: '2026-11-26T00:00:00.000Z',
      ...meta,
    }),
  );
  if (files.includes('model.json')) writeFileSync(join(dir, 'model.json'), '{"modelTopology":{}}');
  if (files.includes('weights.bin')) writeFileSync(join(dir, 'weights.bin'), Buffer.alloc(0));
  return dir;
}

function specText(name: string, start: string): string {
  return `name: ${name}
model: lenet5
dataset: { name: mnist, trainLimit: 64, testLimit: 32 }
training: { epochs: 1, batchSize: 16 }
methods:
  baseline: {}
  ft:
    method: finetune
    compression: { decomposition: tucker2 }
    start: ${start}
grid:
  seed: [0, 1]
  ratio: [2]
`;
}

function specErrorOf(fn: () => unknown): SpecError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return e as SpecError;
  }
  throw new Error('expected a SpecError');
}

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

describe('start: {checkpoint: <name>} lookup', () => {
  it('resolves a name relative to the spec file directory, not the working directory', () => {
    const ckpt = writeCheckpoint(join(sb.dir, 'ckpts', 'lenet5-base'));
    const spec = loadSpecFile(sb.spec('ok', specText('ok', '{ checkpoint: ckpts/lenet5-base }')));
    expect(spec.checkpointDir).toBe(sb.dir);
    expect(spec.checkpoints.get('ckpts/lenet5-base')).toEqual({
      name: 'ckpts/lenet5-base',
      path: ckpt,
      model: 'lenet5',
    });
    // The trial config keeps the name (machine-independent trial key); the path is a run option.
    const ft = expandSpec(spec).filter((p) => p.methodId === 'ft');
    expect(ft).toHaveLength(2);
    for (const p of ft) {
      expect(p.config.start).toEqual({ kind: 'checkpoint', name: 'ckpts/lenet5-base' });
      expect(p.dependsOn).toEqual([]);
    }
    expect(resolveCheckpointName('./ckpts/../ckpts/lenet5-base', sb.dir)).toMatchObject({
      ok: true,
      checkpoint: { path: ckpt },
    });
  });

  it('a missing checkpoint is a SpecError naming the field, the line, the path looked at and what is allowed', () => {
    const file = sb.spec('missing', specText('missing', '{ checkpoint: ckpts/nope }'));
    const e = specErrorOf(() => loadSpecFile(file));
    expect(e.field).toBe('methods.ft.start.checkpoint');
    expect(e.file).toBe(file);
    expect(e.message).toContain(`${file}:10: methods.ft.start.checkpoint: no checkpoint "ckpts/nope": `);
    expect(e.message).toContain(`${join(sb.dir, 'ckpts', 'nope')} does not exist`);
    expect(e.message).toMatch(
      /allowed: a path relative to the spec's directory \(.*\) of a flatrank checkpoint/,
    );
  });

  it('refuses absolute names, plain files, incomplete or foreign directories and factored models', () => {
    const abs = writeCheckpoint(join(sb.dir, 'abs'));
    writeFileSync(join(sb.dir, 'file.ckpt'), 'x');
    writeCheckpoint(join(sb.dir, 'half'), {}, ['model.json']);
    writeCheckpoint(join(sb.dir, 'foreign'), { format: 'keras-3' });
    writeCheckpoint(join(sb.dir, 'factored'), { architecture: 'factored' });
    const cases: Array<[string, RegExp]> = [
      [abs, /is an absolute path; the name is part of the trial key/],
      ['file.ckpt', /is a file, not a checkpoint directory/],
      ['half', /is not a flatrank checkpoint \(no weights\.bin\)/],
      ['foreign', /has format "keras-3", expected flatrank-checkpoint-1/],
      ['factored', /holds a factored model; methods start from an undecomposed \(base\) checkpoint/],
    ];
    for (const [name, message] of cases) {
      const e = specErrorOf(() => loadSpecFile(sb.spec('bad', specText('bad', `{ checkpoint: "${name}" }`))));
      expect(e.field, name).toBe('methods.ft.start.checkpoint');
      expect(e.message, name).toMatch(message);
    }
  });

  it('a sweep-level start names its own field; a checkpoint of another model is refused per grid point', () => {
    writeCheckpoint(join(sb.dir, 'r20'), { config: { model: 'resnet20' } });
    const sweepLevel = `name: top
model: lenet5
dataset: mnist
training: { epochs: 1 }
start: { checkpoint: gone }
methods:
  ft: { method: finetune, compression: { decomposition: svd, rank: 2 } }
`;
    const e = specErrorOf(() => loadSpecFile(sb.spec('top', sweepLevel)));
    expect(e.field).toBe('start.checkpoint');
    expect(e.message).toContain(':5: start.checkpoint: no checkpoint "gone"');

    const spec = loadSpecFile(sb.spec('model', sweepLevel.replace('gone', 'r20')));
    const m = specErrorOf(() => expandSpec(spec));
    expect(m.field).toBe('start.checkpoint');
    expect(m.message).toMatch(
      /checkpoint "r20" \(.*r20\) holds a resnet20 model, but grid point "ft" trains lenet5; allowed: a checkpoint of the model the point trains/,
    );
  });

  it('spec text parsed without a directory is not looked up (and a run could not resolve it)', () => {
    const spec = parseSpecText(specText('text', '{ checkpoint: anywhere }'));
    expect(spec.checkpointDir).toBeNull();
    expect(spec.checkpoints.size).toBe(0);
    expect(expandSpec(spec)).toHaveLength(4);
  });
});

describe('startCheckpoint (what the coordinator hands a claimed trial)', () => {
  let tmp: TempDb;
  beforeEach(() => {
    tmp = createTempDb();
  });
  afterEach(() => tmp.cleanup());

  const config = resolveTrialConfig({
    model: 'lenet5',
    dataset: { name: 'mnist' },
    training: { epochs: 1 },
    method: 'finetune',
    compression: { decomposition: 'svd', rank: { kind: 'rank', rank: 2 } },
    start: { kind: 'checkpoint', name: 'ckpts/base' },
  });

  it('resolves the name again at claim time: the path, or an error when it has gone since the spec was loaded', () => {
    const dir = writeCheckpoint(join(sb.dir, 'ckpts', 'base'));
    expect(startCheckpoint(tmp.store!, config, sb.dir)).toEqual({ path: dir });
    rmSync(dir, { recursive: true });
    expect(startCheckpoint(tmp.store!, config, sb.dir)).toEqual({
      path: null,
      error: `start checkpoint: no checkpoint "ckpts/base": ${dir} does not exist (looked up in ${sb.dir})`,
    });
    expect(startCheckpoint(tmp.store!, config, null)).toEqual({
      path: null,
      error: expect.stringMatching(/cannot be resolved: this run has no spec directory/),
    });
  });
});

describe('a run with start: {checkpoint: <name>} (fake trainer)', () => {
  it('the trial child receives the resolved absolute path; the run succeeds', async () => {
    const ckpt = writeCheckpoint(join(sb.dir, 'ckpts', 'lenet5-base'));
    const spyFile = join(sb.dir, 'spy.jsonl');
    const file = sb.spec('ckrun', specText('ckrun', '{ checkpoint: ckpts/lenet5-base }'));
    const r = await runFake(
      sb,
      file,
      {},
      {
        gpus: 'none',
        workers: 2,
        childEntry: SPY_CHILD,
        childEnv: {
          ...fakeTrainerEnv({ logFile: sb.logFile, default: { steps: 2, stepMs: 5 } }),
          FLATRANK_SPY_FILE: spyFile,
          FLATRANK_SPY_TARGET: fakeTrainerPath,
        },
      },
    );
    expect(r.error).toBeUndefined();
    const runs = readFileSync(spyFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; start: { kind: string }; startCheckpoint: string | null });
    expect(runs).toHaveLength(4);
    const fromCkpt = runs.filter((x) => x.start.kind === 'checkpoint');
    expect(fromCkpt).toHaveLength(2);
    for (const x of fromCkpt) expect(x.startCheckpoint).toBe(ckpt);
    for (const x of runs.filter((y) => y.start.kind === 'scratch')) expect(x.startCheckpoint).toBeNull();
    expect(sql(sb.db, "SELECT count(*) AS n FROM trials WHERE status = 'succeeded'")[0]!['n']).toBe(4);
    // The trial log says which checkpoint the attempt started from.
    const key = fromCkpt[0]!.key;
    const log = readFileSync(join(sb.runsDir, 'ckrun', key.slice(0, 16), 'trial.log'), 'utf8');
    expect(log).toContain(`"startCheckpoint":${JSON.stringify(ckpt)}`);
  });

  it('a checkpoint deleted after the sweep was written fails its trials for good, saying which', async () => {
    const ckpt = writeCheckpoint(join(sb.dir, 'ckpts', 'lenet5-base'));
    const file = sb.spec('ckgone', specText('ckgone', '{ checkpoint: ckpts/lenet5-base }'));
    // Loaded (and checked) fine; the directory disappears before the trials are handed out.
    const spec = loadSpecFile(file);
    const store = ResultsStore.open(sb.db, { create: true });
    try {
      const sweep = writeSweep(store, spec, expandSpec(spec));
      rmSync(ckpt, { recursive: true });
      const log = createCoordinatorLogger({
        file: join(sb.runsDir, 'ckgone', 'coordinator.log'),
        console: () => {},
        consoleLevel: 'info',
        colorize: false,
      });
      try {
        await runLocal({
          store,
          sweep: { id: sweep.id, name: sweep.name },
          maxAttempts: 3,
          heartbeatMs: 100,
          heartbeatTimeoutMs: 3000,
          trialTimeoutMs: null,
          runsDir: sb.runsDir,
          checkpointDir: spec.checkpointDir,
          dataDir: null,
          backend: 'auto',
          logger: log.logger,
          slots: [{ id: 'cpu0', device: 'cpu', cudaVisibleDevices: '' }],
          childEntry: fakeTrainerPath,
          childEnv: fakeTrainerEnv({ default: { steps: 2, stepMs: 5 } }),
        });
      } finally {
        log.close();
      }
      const ft = store.listTrials({ sweepId: sweep.id }).filter((t) => t.config.start.kind === 'checkpoint');
      expect(ft).toHaveLength(2);
      for (const t of ft) {
        expect(t).toMatchObject({ status: 'failed', attempts: 1, retryable: false });
        expect(t.error).toMatch(/^start checkpoint: no checkpoint "ckpts\/lenet5-base": .* does not exist/);
      }
    } finally {
      store.close();
    }
  });
});

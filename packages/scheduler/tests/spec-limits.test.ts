// Hostile and oversized specs are refused before anything is expanded or written: the grid size
// (computed, not expanded), impossible ranks / tiles / ratios for the model's layers, unavailable
// data, alias bombs and oversized files; long expansions stop on an abort signal.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SchedulerError, SpecError } from '@flatrank/protocol';
import {
  countSpecPoints,
  datasetProblem,
  DEFAULT_MAX_POINTS,
  expandSpec,
  expandSpecInterruptible,
  loadSpecFile,
  MAX_SPEC_BYTES,
  parseSpecText,
} from '../src/index.js';
import { runFake, sandbox, type Sandbox } from './helpers.js';

const HEAD = `name: s
model: lenet5
dataset: mnist
training: { epochs: 1 }
`;
const values = (n: number, f: (i: number) => number): string =>
  `[${Array.from({ length: n }, (_, i) => f(i)).join(', ')}]`;

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
beforeEach(() => (sb = sandbox()));
afterEach(() => sb.cleanup());

describe('grid size', () => {
  // ratio x lr x batchSize with 1,000 values each: 10^9 points.
  const huge = `${HEAD}methods:
  baseline: {}
  d: { method: distort, compression: { decomposition: svd } }
grid:
  ratio: ${values(1000, (i) => 1.5 + i / 100)}
  lr: ${values(1000, (i) => 0.001 * (i + 1))}
  batchSize: ${values(1000, (i) => i + 1)}
`;

  it('counts the points of a 10^9 grid without expanding it and refuses it, naming the axes and sizes', () => {
    const spec = parseSpecText(huge, 'huge.yaml');
    const size = countSpecPoints(spec);
    expect(size.total).toBe(1e9 + 1e6);
    expect(size.methods.find((m) => m.id === 'd')!.axes).toEqual([
      { name: 'ratio', size: 1000 },
      { name: 'lr', size: 1000 },
      { name: 'batchSize', size: 1000 },
    ]);
    const t0 = Date.now();
    const e = specErrorOf(() => expandSpec(spec));
    // Expanding even 1% of the grid would take minutes; refusing is a count.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(e.field).toBe('grid');
    expect(e.message).toMatch(
      /^huge\.yaml:\d+: grid: the grid has 1,001,000,000 points, over the limit of 100,000/,
    );
    expect(e.message).toContain('d: ratio (1,000) x lr (1,000) x batchSize (1,000) = 1,000,000,000');
    expect(e.message).toContain('baseline: lr (1,000) x batchSize (1,000) = 1,000,000');
    expect(e.message).toContain('--max-points');
  });

  it('counts zip and points blocks as one axis each; --max-points moves the limit', () => {
    const spec = parseSpecText(
      `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  seed: [0, 1, 2]\n  zip: { rank: [1, 2], sd: [10, 20] }\n  points: [{ lr: 0.1 }, { lr: 0.2 }]\n`,
      'z.yaml',
    );
    expect(countSpecPoints(spec).methods[0]!.axes).toEqual([
      { name: 'seed', size: 3 },
      { name: 'rank+sd', size: 2 },
      { name: 'lr', size: 2 },
    ]);
    expect(specErrorOf(() => expandSpec(spec, { maxPoints: 11 })).message).toContain(
      '12 points, over the limit of 11',
    );
    expect(expandSpec(spec, { maxPoints: 12 })).toHaveLength(12);
    expect(DEFAULT_MAX_POINTS).toBe(100_000);
  });

  it('runSpec refuses an oversized grid in a dry run too, before opening the database', async () => {
    const file = sb.spec('huge', huge);
    const r = await runFake(sb, file, {}, { dryRun: true });
    expect(r.error).toBeInstanceOf(SpecError);
    expect((r.error as Error).message).toContain('over the limit of 100,000');
    const small = await runFake(sb, file, {}, { dryRun: true, maxPoints: 10 });
    expect((small.error as Error).message).toContain('over the limit of 10 ');
  });

  it('an aborted signal stops a long expansion with nothing written', async () => {
    const spec = parseSpecText(
      `${HEAD}methods:\n  baseline: {}\ngrid:\n  seed: ${values(200, (i) => i)}\n  lr: ${values(100, (i) => 0.001 * (i + 1))}\n`,
      'big.yaml',
    );
    const ac = new AbortController();
    let seen = 0;
    const p = expandSpecInterruptible(spec, {
      signal: ac.signal,
      onProgress: (done) => {
        seen = done;
        if (done >= 1000) ac.abort();
      },
    });
    await expect(p).rejects.toThrow(SchedulerError);
    await expect(p).rejects.toThrow(
      /interrupted while expanding the grid of big\.yaml \(1000 of 20000 points\); nothing was written/,
    );
    expect(seen).toBe(1000);
  });
});

describe('compression checked against the model layer shapes at spec time', () => {
  const cases: Array<[string, string, string, RegExp]> = [
    [
      'a rank of 1e12',
      `methods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  rank: [4, 1000000000000]\n`,
      'grid.rank',
      /^x\.yaml:8: grid\.rank: grid point "d rank=1000000000000" \(lenet5 on mnist\): layer conv2 \(conv 5x5x6x16\): rank for svd scheme lowered must be an integer in \[1, 16\], got 1000000000000/,
    ],
    [
      'a Tucker pair above the channels, in the method',
      `methods:\n  t: { method: finetune, compression: { decomposition: tucker2, rank: [8, 32] } }\n`,
      'methods.t.compression.rank',
      /^x\.yaml:6: methods\.t\.compression\.rank: .*layer conv2 .*R_S for tucker2 must be an integer in \[1, 6\], got 8/,
    ],
    [
      'a tile that does not divide the lowered matrix (zip)',
      `methods:\n  d: { method: distort, compression: { decomposition: tiled-svd } }\ngrid:\n  zip: { tile: [[4, 10], [64, 64]], rank: [2, 8] }\n`,
      'grid.zip.tile',
      /^x\.yaml:8: grid\.zip\.tile: grid point "d tile=\[64,64\] rank=8".*tile 64x64 does not divide the lowered 16x150 matrix/,
    ],
    [
      'a per-layer ratio out of reach',
      `methods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  ratio: [2, 1000]\n`,
      'grid.ratio',
      /^x\.yaml:8: grid\.ratio: .*compression ratio 1000 is out of reach for svd/,
    ],
    [
      'a whole-model ratio out of reach',
      `methods:\n  d: { method: distort, compression: { decomposition: tucker2 } }\ngrid:\n  modelRatio: [50]\n`,
      'grid.modelRatio',
      /model ratio 50 is out of reach/,
    ],
    [
      'a layer the model does not have',
      `methods:\n  d: { method: distort, compression: { decomposition: svd, rank: 2, layers: { kind: names, names: [conv7] } } }\n`,
      'methods.d.compression.layers',
      /unknown value "conv7"; allowed: conv1, conv2, fc1, fc2, fc3/,
    ],
  ];
  it.each(cases)('%s', (_what, body, field, message) => {
    const e = specErrorOf(() => expandSpec(parseSpecText(`${HEAD}${body}`, 'x.yaml')));
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message);
  });

  it('valid ranks pass, and a resnet model is planned on its own layers', () => {
    const spec = parseSpecText(
      `name: r\nmodel: resnet20\ndataset: cifar10\ntraining: { epochs: 1 }\nmethods:\n  d: { method: distort, compression: { decomposition: tucker2 } }\ngrid:\n  rank: [[16, 16], [8, 8]]\n`,
      'r.yaml',
    );
    expect(expandSpec(spec)).toHaveLength(2);
    // R_S 32 is fine for the 32- and 64-channel stages but not for the first stage's 16 channels.
    const bad = parseSpecText(spec.text.replace('[8, 8]', '[32, 32]'), 'r.yaml');
    expect(specErrorOf(() => expandSpec(bad)).message).toMatch(/layer s1b1_conv1 \(conv 3x3x16x16\)/);
  });
});

describe('data availability at spec time (dry run included)', () => {
  const cifar = `name: c\nmodel: resnet8\ndataset: cifar10\ntraining: { epochs: 1 }\nmethods:\n  baseline: {}\n`;

  it('cifar10 without --data-dir: exit-2 error at the dataset line naming --data-dir', async () => {
    const r = await runFake(sb, sb.spec('c', cifar), {}, { dryRun: true });
    expect(r.error).toBeInstanceOf(SpecError);
    expect((r.error as SpecError).field).toBe('dataset');
    expect((r.error as Error).message).toMatch(
      /c\.yaml:3: dataset: cifar10: cifar10 needs the CIFAR-10 binary files and no --data-dir was given/,
    );
  });

  it('a --data-dir that does not exist, and one with only part of CIFAR-10', async () => {
    const fashion = `name: f\nmodel: lenet5\ndataset: { name: fashion-mnist, trainLimit: 100 }\ntraining: { epochs: 1 }\nmethods:\n  baseline: {}\n`;
    const gone = join(sb.dir, 'nope');
    const r = await runFake(sb, sb.spec('f', fashion), {}, { dryRun: true, dataDir: gone });
    expect((r.error as Error).message).toContain(
      `f.yaml:3: dataset: fashion-mnist: --data-dir ${gone} does not exist`,
    );
    const dir = join(sb.dir, 'data', 'cifar-10-batches-bin');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'data_batch_1.bin'), '');
    expect(datasetProblem('cifar10', join(sb.dir, 'data'))).toBe(
      `${dir} lacks data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin of the CIFAR-10 binary version`,
    );
    for (const f of [
      'data_batch_2.bin',
      'data_batch_3.bin',
      'data_batch_4.bin',
      'data_batch_5.bin',
      'test_batch.bin',
    ])
      writeFileSync(join(dir, f), '');
    const ok = await runFake(sb, sb.spec('c', cifar), {}, { dryRun: true, dataDir: join(sb.dir, 'data') });
    expect(ok.error).toBeUndefined();
    expect(ok.result!.points).toBe(1);
  });

  it('the embedded MNIST needs nothing; a dataset axis is blamed at the axis', () => {
    expect(datasetProblem('mnist', null)).toBeNull();
    const spec = `${HEAD}methods:\n  baseline: {}\ngrid:\n  dataset: [mnist, cifar10]\n`;
    return runFake(sb, sb.spec('a', spec), {}, { dryRun: true }).then((r) => {
      expect((r.error as SpecError).field).toBe('grid.dataset');
      expect((r.error as Error).message).toMatch(/a\.yaml:8: grid\.dataset: cifar10:/);
    });
  });
});

describe('hostile spec files', () => {
  it('a YAML alias bomb is a SpecError naming the file', () => {
    const levels = ['a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (const [i, c] of [...'bcdefghi'].entries()) {
      const prev = 'abcdefghi'[i]!;
      levels.push(`${c}: &${c} [${Array(9).fill(`*${prev}`).join(', ')}]`);
    }
    const file = sb.spec('bomb', `${HEAD}${levels.join('\n')}\nmethods: { baseline: {} }\n`);
    const e = specErrorOf(() => loadSpecFile(file));
    expect(e.field).toBe('(yaml)');
    expect(e.message).toMatch(
      new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the YAML expands too many aliases`),
    );
  });

  it('a spec over 1 MB is refused before it is read', () => {
    const file = sb.spec(
      'large',
      `${HEAD}description: "${'x'.repeat(MAX_SPEC_BYTES)}"\nmethods: { baseline: {} }\n`,
    );
    const e = specErrorOf(() => loadSpecFile(file));
    expect(e.message).toMatch(/large\.yaml: the spec is 1\.0 MB, over the limit of 1 MB/);
    expect(specErrorOf(() => parseSpecText('#'.repeat(MAX_SPEC_BYTES + 1), 't.yaml')).message).toContain(
      'over the limit of 1 MB',
    );
  });
});

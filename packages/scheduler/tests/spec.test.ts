import { existsSync, readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpecError } from '@flatrank/protocol';
import { fakeTrainerPath } from '@flatrank/testing';
import { expandSpec, loadSpecFile, parseSpecText, runSpec } from '../src/index.js';
import { capture, sandbox, type Sandbox } from './helpers.js';

const HEAD = `name: s
model: lenet5
dataset: mnist
training: { epochs: 1 }
`;
const KEY = 'a'.repeat(64);

/** [what, spec text, expected field, expected message] — each must be rejected before any DB write. */
const MALFORMED: Array<[string, string, string, RegExp]> = [
  ['empty file', '', '(root)', /the spec is empty/],
  ['a list at the top', '- a\n- b\n', '(root)', /must be a mapping .* got a list/],
  ['YAML syntax error', `${HEAD}methods: { baseline: {}\n`, '(yaml)', /:\d+:\d+: invalid YAML/],
  [
    'duplicate key',
    `${HEAD}model: vgg-small\nmethods: { baseline: {} }\n`,
    '(yaml)',
    /invalid YAML: Map keys must be unique/,
  ],
  ['missing name', HEAD.replace('name: s\n', '') + 'methods: { baseline: {} }\n', 'name', /name: Required/],
  [
    'bad sweep name',
    HEAD.replace('name: s', 'name: my sweep') + 'methods: { baseline: {} }\n',
    'name',
    /name: must start with a letter or digit/,
  ],
  [
    'unknown top-level field',
    `${HEAD}epochs: 3\nmethods: { baseline: {} }\n`,
    '(root)',
    /:5: \(root\): unknown field epochs/,
  ],
  [
    'unknown model',
    HEAD.replace('lenet5', 'resnet18') + 'methods: { baseline: {} }\n',
    'model',
    /model: unknown value "resnet18"; allowed: lenet5, resnet8/,
  ],
  [
    'unknown dataset',
    HEAD.replace('dataset: mnist', 'dataset: imagenet') + 'methods: { baseline: {} }\n',
    'dataset.name',
    /dataset.name: unknown value "imagenet"; allowed: mnist, fashion-mnist, cifar10/,
  ],
  [
    'negative trainLimit',
    HEAD.replace('dataset: mnist', 'dataset: { name: mnist, trainLimit: -5 }') +
      'methods: { baseline: {} }\n',
    'dataset.trainLimit',
    /dataset.trainLimit: Number must be greater than 0/,
  ],
  [
    'missing training',
    HEAD.replace('training: { epochs: 1 }\n', '') + 'methods: { baseline: {} }\n',
    'training',
    /training: Required/,
  ],
  [
    'negative lr',
    HEAD.replace('{ epochs: 1 }', '{ epochs: 1, lr: -0.1 }') + 'methods: { baseline: {} }\n',
    'training.lr',
    /training.lr: Number must be greater than 0/,
  ],
  [
    'unknown training field',
    HEAD.replace('{ epochs: 1 }', '{ epochs: 1, momentum: 0.9 }') + 'methods: { baseline: {} }\n',
    'training',
    /training: unknown field momentum/,
  ],
  [
    'unknown lr schedule',
    HEAD.replace('{ epochs: 1 }', '{ epochs: 1, schedule: { kind: exp } }') + 'methods: { baseline: {} }\n',
    'training.schedule.kind',
    /unknown kind; allowed: constant, step, cosine/,
  ],
  ['no methods', `${HEAD}methods: {}\n`, 'methods', /methods: must define at least one method/],
  [
    'unknown method name',
    `${HEAD}methods:\n  x: { method: prune }\n`,
    'methods.x.method',
    /methods.x.method: unknown value "prune"; allowed: baseline, distort, finetune, posttrain/,
  ],
  [
    'method id without method',
    `${HEAD}methods:\n  tucker: { compression: { decomposition: tucker2, rank: 2 } }\n`,
    'methods.tucker',
    /:6: methods.tucker: needs a "method" field/,
  ],
  [
    'unknown decomposition',
    `${HEAD}methods:\n  f: { method: finetune, compression: { decomposition: tt, rank: 2 } }\n`,
    'methods.f.compression.decomposition',
    /unknown value "tt"; allowed: svd, tiled-svd, tucker2, cp/,
  ],
  [
    'baseline with compression',
    `${HEAD}methods:\n  baseline: { compression: { decomposition: svd, rank: 2 } }\n`,
    'methods.baseline.compression',
    /grid point "baseline": compression: must be null for method 'baseline'/,
  ],
  [
    'finetune without decomposition',
    `${HEAD}methods:\n  f: { method: finetune, compression: { rank: 2 } }\n`,
    'methods.f',
    /compression.decomposition: Required/,
  ],
  [
    'tiled-svd without tile',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: tiled-svd, rank: 2 } }\n`,
    'methods.d',
    /compression.tile: is required for decomposition 'tiled-svd'/,
  ],
  [
    'rank pair for svd',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: svd, rank: [2, 3] } }\n`,
    'methods.d.compression.rank',
    /compression.rank: kind 'ranks' \(\[R_S, R_T\]\) is only allowed for tucker2/,
  ],
  [
    'distortion on finetune',
    `${HEAD}methods:\n  f: { method: finetune, compression: { decomposition: cp, rank: 2 }, distortion: { interval: 10 } }\n`,
    'methods.f.distortion',
    /distortion: is only allowed for method 'distort'/,
  ],
  [
    'S_D of 0',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: svd, rank: 2 }, distortion: { interval: 0 } }\n`,
    'methods.d.distortion.interval',
    /Number must be greater than 0/,
  ],
  [
    'unknown start',
    `${HEAD}start: pretrained\nmethods:\n  baseline: {}\n`,
    'start',
    /unknown start "pretrained"; allowed: scratch, a method id of this sweep \(baseline\)/,
  ],
  [
    'start from itself',
    `${HEAD}methods:\n  f: { method: finetune, start: f, compression: { decomposition: cp, rank: 2 } }\n`,
    'methods.f.start',
    /cannot start from itself/,
  ],
  [
    'start cycle',
    `${HEAD}methods:\n  a: { method: finetune, start: b, compression: { decomposition: cp, rank: 2 } }\n  b: { method: finetune, start: a, compression: { decomposition: cp, rank: 3 } }\n`,
    'methods.a.start',
    /form a cycle: a -> b -> a/,
  ],
  [
    'bad trial key',
    `${HEAD}start: { trial: abc123 }\nmethods:\n  baseline: {}\n`,
    'start.trial',
    /must be a full 64-hex-digit trial key/,
  ],
  [
    'unknown grid axis',
    `${HEAD}methods:\n  baseline: {}\ngrid:\n  learningrate: [0.1]\n`,
    'grid.learningrate',
    /unknown grid axis "learningrate"; allowed: seed, model, .* training.lr/,
  ],
  [
    'axis not a list',
    `${HEAD}methods:\n  baseline: {}\ngrid:\n  seed: 3\n`,
    'grid.seed',
    /must be a list of values \(write \[x\] for a single value\)/,
  ],
  [
    'empty axis',
    `${HEAD}methods:\n  baseline: {}\ngrid:\n  seed: []\n`,
    'grid.seed',
    /must list at least one value/,
  ],
  [
    'zip of unequal lengths',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: tiled-svd } }\ngrid:\n  zip: { tile: [[8, 8], [16, 16]], rank: [1] }\n`,
    'grid.zip.rank',
    /zipped lists must have equal lengths: "tile" has 2 values, "rank" has 1/,
  ],
  [
    'two axes on one field',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  ratio: [2]\n  rank: [4]\n`,
    'grid.rank',
    /axes "ratio" and "rank" both set compression.rank/,
  ],
  [
    'ratio below 1',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  ratio: [2, 0.5]\n`,
    'methods.d',
    /grid point "d ratio=0.5": compression.rank.ratio: Number must be greater than 1/,
  ],
  [
    'S_D axis on baseline',
    `${HEAD}methods:\n  baseline: { grid: { sd: [100, 200] } }\n`,
    'methods.baseline.grid.sd',
    /axis "sd" sets distortion.interval, which does not apply to method 'baseline'/,
  ],
  [
    'the same trial twice',
    `${HEAD}methods:\n  baseline: {}\ngrid:\n  seed: [0, 1, 0]\n`,
    'methods.baseline',
    /"baseline seed=0" is the same trial as "baseline seed=0"/,
  ],
  [
    'posttrain that trains',
    `${HEAD}methods:\n  p: { method: posttrain, compression: { decomposition: svd, rank: 2 }, training: { epochs: 2 } }\n`,
    'methods.p.training.epochs',
    /must be 0 for method 'posttrain'/,
  ],
  [
    'bad gpus',
    `${HEAD}methods: { baseline: {} }\nresources: { gpus: all }\n`,
    'resources.gpus',
    /resources.gpus: must be auto, none, or a list of distinct GPU indices such as \[0, 1\]; got "all"/,
  ],
  [
    'bad duration',
    `${HEAD}methods: { baseline: {} }\nresources: { trialTimeout: 5 minutes }\n`,
    'resources.trialTimeout',
    /must be a duration such as "500ms", "90s", "30m", "2h"/,
  ],
  [
    'heartbeat timeout too short',
    `${HEAD}methods: { baseline: {} }\nresources: { heartbeatInterval: 10s, heartbeatTimeout: 15s }\n`,
    'resources.heartbeatTimeout',
    /must be at least twice heartbeatInterval/,
  ],
  [
    'unknown reproduces',
    `${HEAD}reproduces: paper-fig9\nmethods: { baseline: {} }\n`,
    'reproduces',
    /unknown value "paper-fig9"; allowed: paper-fig3, paper-table1/,
  ],
  [
    'start match on a missing axis',
    `${HEAD}start: baseline\nmethods:\n  baseline: {}\n  f: { method: finetune, compression: { decomposition: cp, rank: 2 }, start: { method: baseline, match: [lr] } }\n`,
    'methods.f.start.match',
    /"lr" is not an axis of both 'f' and 'baseline'/,
  ],
  [
    'ambiguous start trial',
    `${HEAD}methods:\n  baseline: { grid: { lr: [0.1, 0.01] } }\n  f: { method: finetune, start: baseline, compression: { decomposition: cp, rank: 2 } }\n`,
    'methods.f.start',
    /starts from method 'baseline', which has 2 trials; match on more axes/,
  ],
  [
    'no start trial',
    `${HEAD}start: baseline\nmethods:\n  baseline: { grid: { seed: [0] } }\n  f: { method: finetune, compression: { decomposition: cp, rank: 2 }, grid: { seed: [0, 1] } }\n`,
    'start',
    /"f seed=1" starts from method 'baseline', which has no trial with seed=1/,
  ],
  [
    'points with different axes',
    `${HEAD}methods:\n  d: { method: distort, compression: { decomposition: tiled-svd } }\ngrid:\n  points: [{ tile: [8, 8], rank: 1 }, { tile: [16, 16], sd: 100 }]\n`,
    'grid.points[1]',
    /every point must set the same axes/,
  ],
  [
    'negative seed',
    `${HEAD}methods: { baseline: {} }\ngrid: { seed: [-1] }\n`,
    'methods.baseline',
    /seed: Number must be greater than or equal to 0/,
  ],
  [
    'infinite lr',
    HEAD.replace('{ epochs: 1 }', '{ epochs: 1, lr: .inf }') + 'methods: { baseline: {} }\n',
    'training.lr',
    /:4: training.lr: must be a finite number, got Infinity/,
  ],
];

describe('experiment specs', () => {
  let sb: Sandbox;
  beforeEach(() => {
    sb = sandbox();
  });
  afterEach(() => sb.cleanup());

  it(`rejects ${MALFORMED.length} malformed specs, each with a precise message and no database write`, async () => {
    expect(MALFORMED.length).toBeGreaterThanOrEqual(30);
    for (const [what, text, field, message] of MALFORMED) {
      const file = sb.spec('bad', text);
      const out = capture();
      let error: unknown;
      try {
        await runSpec({
          specFile: file,
          db: sb.db,
          runsDir: sb.runsDir,
          childEntry: fakeTrainerPath,
          stdout: out.stream,
          stderr: out.stream,
          tty: false,
        });
      } catch (e) {
        error = e;
      }
      expect(error, what).toBeInstanceOf(SpecError);
      const e = error as SpecError;
      expect(e.code, what).toBe('SPEC_INVALID');
      expect(e.field, what).toBe(field);
      expect(e.file, what).toBe(file);
      expect(e.message, what).toMatch(message);
      expect(e.message.startsWith(file), what).toBe(true);
      expect(existsSync(sb.db), `${what}: no database`).toBe(false);
      expect(existsSync(sb.runsDir), `${what}: no runs dir`).toBe(false);
    }
  });

  it('reports a missing spec file', () => {
    expect(() => loadSpecFile(`${sb.dir}/nope.yaml`)).toThrow(
      /nope.yaml: cannot read the spec: no such file/,
    );
  });

  it('expands cartesian axes, zips and explicit points, method axes overriding sweep axes', () => {
    const spec = parseSpecText(`name: g
model: resnet32
dataset: cifar10
training: { epochs: 2, lr: 0.1 }
start: baseline
methods:
  baseline:
    grid: { seed: [0] }
  tiled:
    method: distort
    compression: { decomposition: tiled-svd, layers: { kind: filter, inChannels: 64, outChannels: 64 } }
    start: { method: baseline, match: [] }
    grid:
      zip: { tile: [[64, 64], [32, 32]], rank: [16, 8] }
      sd: [100, 200]
  tucker:
    method: finetune
    compression: { decomposition: tucker2 }
    training: { lr: 0.001 }
    start: { method: baseline, match: [] }
    grid:
      points: [{ rank: [8, 8] }, { rank: [4, 4] }]
grid:
  seed: [0, 1]
`);
    const pts = expandSpec(spec);
    const baseline = pts.filter((p) => p.methodId === 'baseline');
    expect(baseline).toHaveLength(1); // the method's seed axis replaces the sweep's
    const tiled = pts.filter((p) => p.methodId === 'tiled');
    expect(tiled).toHaveLength(2 * 2 * 2); // seed x zip x sd
    expect(tiled.map((p) => [p.config.compression!.tile, p.config.compression!.rank])).toContainEqual([
      [32, 32],
      { kind: 'rank', rank: 8 },
    ]);
    expect(tiled.every((p) => p.config.compression!.scheme === 'lowered')).toBe(true);
    expect(new Set(tiled.map((p) => p.config.distortion!.interval))).toEqual(new Set([100, 200]));
    const tucker = pts.filter((p) => p.methodId === 'tucker');
    expect(tucker.map((p) => p.config.compression!.rank)).toEqual([
      { kind: 'ranks', ranks: [8, 8] },
      { kind: 'ranks', ranks: [4, 4] },
      { kind: 'ranks', ranks: [8, 8] },
      { kind: 'ranks', ranks: [4, 4] },
    ]);
    // Recipe override merged over the sweep recipe; dependency on the one baseline trial.
    expect(tucker.every((p) => p.config.training.lr === 0.001 && p.config.training.epochs === 2)).toBe(true);
    for (const p of [...tiled, ...tucker]) {
      expect(p.config.start).toEqual({ kind: 'trial', trialKey: baseline[0]!.key });
      expect(p.dependsOn).toEqual([baseline[0]!.key]);
    }
    // Keys are the protocol's keys of the resolved configs, all distinct.
    expect(new Set(pts.map((p) => p.key)).size).toBe(pts.length);
  });

  it('sweep-level compression axes skip the baseline; posttrain trains 0 epochs; start by trial key', () => {
    const spec = parseSpecText(`name: g2
model: lenet5
dataset: { name: fashion-mnist, trainLimit: 100 }
training: { epochs: 3 }
start: { trial: ${KEY} }
methods:
  baseline: {}
  post: { method: posttrain, compression: { decomposition: cp } }
grid:
  ratio: [2, 4]
  seed: [0, 1]
`);
    const pts = expandSpec(spec);
    expect(pts.filter((p) => p.methodId === 'baseline')).toHaveLength(2);
    const post = pts.filter((p) => p.methodId === 'post');
    expect(post).toHaveLength(4);
    expect(post.every((p) => p.config.training.epochs === 0)).toBe(true);
    expect(pts.every((p) => p.dependsOn[0] === KEY)).toBe(true);
    expect(pts[0]!.label).toBe('baseline seed=0');
    expect(post[0]!.label).toBe('posttrain cp ratio=2 seed=0');
  });

  it('the README examples are valid specs', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const full = parseSpecText(blocks[0]!, 'README.md');
    expect(expandSpec(full)).toHaveLength(14);
    expect(full.parsed.reproduces).toBe('paper-fig3');
    // The zip / points fragment (paper Table 1: the 64->64 convs of ResNet-32), inside a minimal spec.
    const head = HEAD.replace('lenet5', 'resnet32').replace('mnist', 'cifar10');
    const grid = parseSpecText(
      `${head}methods:\n  d: { method: distort, compression: { decomposition: tiled-svd, layers: { kind: filter, inChannels: 64, outChannels: 64 } } }\n${blocks[1]!}`,
      'README.md',
    );
    expect(expandSpec(grid)).toHaveLength(8);
  });

  it('the example spec and its hash are stable; the same text gives the same keys', () => {
    const a = loadSpecFile(new URL('../../../experiments/example-small.yaml', import.meta.url).pathname);
    const b = loadSpecFile(new URL('../../../experiments/example-small.yaml', import.meta.url).pathname);
    expect(a.hash).toBe(b.hash);
    const pa = expandSpec(a);
    expect(pa.map((p) => p.key)).toEqual(expandSpec(b).map((p) => p.key));
    expect(pa).toHaveLength(14);
  });
});

describe('method trp in a spec', () => {
  it('expands with its own block and axes; its labels name the scheme, m and lambda; other methods get no trp block', () => {
    const spec = parseSpecText(`${HEAD}start: baseline
methods:
  baseline: {}
  trp:
    compression: { decomposition: svd }
    trp: { interval: 20 }
    grid:
      scheme: [lowered, spatial]
      lambda: [0, 0.0003]
  distort:
    compression: { decomposition: svd }
grid:
  energy: [0.9]
  trp.nuclearEvery: [step]
`);
    const pts = expandSpec(spec);
    const trp = pts.filter((p) => p.methodId === 'trp');
    expect(trp).toHaveLength(4);
    expect(trp.map((p) => p.config.trp)).toContainEqual({
      interval: 20,
      lambda: 0.0003,
      nuclearEvery: 'step',
    });
    expect(trp.every((p) => p.config.compression?.rank.kind === 'energy')).toBe(true);
    expect(trp.map((p) => p.label)).toContain('trp svd spatial energy=0.9 m=20 lambda=0.0003 seed=0');
    // the sweep-level trp axis skipped distort and the baseline, whose configs have no trp block
    for (const p of pts.filter((x) => x.methodId !== 'trp')) expect(p.config).not.toHaveProperty('trp');
    expect(pts.find((p) => p.methodId === 'distort')!.label).toBe('distort svd energy=0.9 sd=200 seed=0');
  });

  it('refuses a trp axis in another method, and trp without lambda naming the field', () => {
    expect(() =>
      expandSpec(
        parseSpecText(`${HEAD}methods:
  d:
    method: distort
    compression: { decomposition: svd, rank: 2 }
    grid:
      lambda: [0.1]
`),
      ),
    ).toThrow(
      /methods\.d\.grid\.lambda: axis "lambda" sets trp\.lambda, which does not apply to method 'distort'/,
    );
    try {
      expandSpec(
        parseSpecText(`${HEAD}methods:
  trp:
    compression: { decomposition: svd, rank: { kind: energy, threshold: 0.9 } }
    trp: { interval: 20 }
`),
      );
      expect.unreachable('the spec was accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(SpecError);
      expect((e as SpecError).message).toMatch(
        /^spec:6: methods\.trp: grid point "trp": trp\.lambda: Required$/,
      );
    }
  });
});

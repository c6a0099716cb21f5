// `flatrank train` (one config) and `flatrank run --dry-run` (a spec) refuse the same combinations
// with the same message: both resolve configs through the protocol's trial-config schema.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-config-rules-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Case {
  what: string;
  /** Lines of a trial config for flatrank train. */
  config: string[];
  /** The method entry of a spec (under methods:, after a baseline) for flatrank run. */
  method: string[];
  field: string;
  /** Line of the spec the run error points at. */
  line: number;
  message: RegExp;
}

const CASES: Case[] = [
  {
    what: 'posttrain that trains',
    config: [
      'method: posttrain',
      'training: { epochs: 2 }',
      'compression: { decomposition: svd, rank: { kind: ratio, ratio: 2 } }',
    ],
    method: [
      '  post:',
      '    method: posttrain',
      '    start: baseline',
      '    compression: { decomposition: svd, rank: { kind: ratio, ratio: 2 } }',
      '    training: { epochs: 2 }',
    ],
    field: 'training.epochs',
    line: 11,
    message: /^must be 0 for method 'posttrain' .*, got 2$/,
  },
  {
    what: 'finetune with tiled-svd',
    config: [
      'method: finetune',
      'training: { epochs: 1 }',
      'compression: { decomposition: tiled-svd, tile: [5, 5], rank: { kind: rank, rank: 1 } }',
    ],
    method: [
      '  ft:',
      '    method: finetune',
      '    start: baseline',
      '    compression: { decomposition: tiled-svd, tile: [5, 5], rank: { kind: rank, rank: 1 } }',
    ],
    field: 'compression.decomposition',
    line: 10,
    message: /^'tiled-svd' cannot be fine-tuned/,
  },
];

describe('config rules: flatrank train and flatrank run --dry-run agree', () => {
  it.each(CASES)('$what', async (c) => {
    const configFile = join(dir, `${c.field}.yaml`);
    writeFileSync(configFile, ['model: lenet5', 'dataset: { name: mnist }', ...c.config, ''].join('\n'));
    const train = await runCli(['train', configFile, '--backend', 'cpu']);
    expect(train.code).toBe(2);
    const trainPrefix = `flatrank: config.${c.field}: `;
    expect(train.err.startsWith(trainPrefix)).toBe(true);
    const message = train.err.split('\n')[0]!.slice(trainPrefix.length);
    expect(message).toMatch(c.message);

    const specFile = join(dir, `${c.field}.spec.yaml`);
    writeFileSync(
      specFile,
      [
        'name: rules',
        'model: lenet5',
        'dataset: mnist',
        'training: { epochs: 1 }',
        'methods:',
        '  baseline: {}',
        ...c.method,
        '',
      ].join('\n'),
    );
    const db = join(dir, `${c.field}.sqlite`);
    const run = await runCli(['run', specFile, '--dry-run', '--db', db]);
    expect(run.code).toBe(2);
    const specField = `methods.${c.method[0]!.trim().replace(':', '')}.${c.field}`;
    expect(run.err.split('\n')[0]).toBe(
      `flatrank: ${specFile}:${c.line}: ${specField}: grid point "${c.method[0]!.trim().replace(':', '')}": ${c.field}: ${message}`,
    );
    expect(existsSync(db)).toBe(false);
  });
});

// Every rank choice read back through the CLI: `show` prints a trial's allocation, `query` selects
// allocations per trial and per layer, `report` and `plot --ranks` show the rank profile of a sweep
// with known ranks (packages/testing rank-db.ts); and the committed study reports regenerate byte
// for byte from their databases (no allocations there, so no profile is added).
import { copyFileSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RANK_DB_LAYERS,
  createTempDb,
  populateRankDb,
  rankDbAllocation,
  type TempDb,
} from '@flatrank/testing';
import { runCli, type CliResult } from './helpers.js';

let tmp: TempDb;
let keys: ReturnType<typeof populateRankDb>;
beforeAll(() => {
  tmp = createTempDb();
  keys = populateRankDb(tmp.store!);
  tmp.store!.close();
});
afterAll(() => tmp.cleanup());

const cli = (...args: string[]): Promise<CliResult> => runCli(args);
const json = async (sql: string) => {
  const r = await cli('query', '--db', tmp.path, '--format', 'json', sql);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as Array<Record<string, unknown>>;
};

describe('reading rank choices back', () => {
  it('show prints the allocation: policy, budget, reached ratios, what it measured, each layer', async () => {
    const r = await cli('show', keys.allocated[1]!.slice(0, 12), '--db', tmp.path);
    expect(r.code, r.err).toBe(0);
    const section = r.out.slice(r.out.indexOf('allocation (attempt 1):'), r.out.indexOf('\nmetrics ('));
    expect(section.split('\n').slice(0, 5)).toEqual([
      'allocation (attempt 1):',
      '  policy         energy=0.9',
      '  budget         params 2x',
      '  reached        params 1.99x, MACs 1.7x',
      '  measured       {"fixture":true,"seed":1}',
    ]);
    expect(section).toMatch(/index\s+layer\s+ranks\s+error/);
    expect(section).toMatch(/\n\s+1\s+conv2\s+10\s+0\.2\n/);
    const detail = JSON.parse(
      (await cli('show', keys.allocated[1]!, '--db', tmp.path, '--format', 'json')).out,
    ) as {
      allocation: unknown;
    };
    expect(detail.allocation).toEqual({ attempt: 1, ...rankDbAllocation(1) });
    // A trial without a record has no section (and null in JSON).
    const uniform = await cli('show', keys.uniform[0]!, '--db', tmp.path);
    expect(uniform.out).not.toContain('allocation (');
  });

  it('query selects every recorded rank choice: per trial (trial_allocations) and per layer (allocation_layers)', async () => {
    expect(
      await json(
        'SELECT seed, policy, budget_kind, budget_ratio, achieved_params_ratio, layers FROM trial_allocations ORDER BY seed',
      ),
    ).toEqual([
      {
        seed: 0,
        policy: 'energy=0.9',
        budget_kind: 'params',
        budget_ratio: 2,
        achieved_params_ratio: 2.01,
        layers: 4,
      },
      {
        seed: 1,
        policy: 'energy=0.9',
        budget_kind: 'params',
        budget_ratio: 2,
        achieved_params_ratio: 1.99,
        layers: 4,
      },
    ]);
    const perLayer = await json(
      'SELECT seed, layer_index, layer, ranks FROM allocation_layers ORDER BY seed, layer_index',
    );
    expect(perLayer).toEqual(
      [0, 1].flatMap((seed) =>
        RANK_DB_LAYERS.map((layer, i) => ({
          seed,
          layer_index: i,
          layer,
          ranks: JSON.stringify(rankDbAllocation(seed).layers[i]!.ranks),
        })),
      ),
    );
    // And the ranks of every compressed layer of every trial, allocated or not.
    const all = await json("SELECT count(*) AS n FROM trial_layers WHERE method != 'baseline'");
    expect(all).toEqual([{ n: 2 * 4 + 2 * 4 + 2 * 2 }]);
  });
});

describe('report and plot of the rank profile', () => {
  it('report: the profile follows the table when the sweep recorded allocations; csv only with --ranks', async () => {
    const md = await cli('report', 'ranks', '--db', tmp.path);
    expect(md.code, md.err).toBe(0);
    expect(md.out).toContain('## Rank profile');
    expect(md.out).toContain('| 1 | conv2 | 6 | 6 | 9.0 * |');
    const ratio = await cli('report', 'ranks', '--db', tmp.path, '--rank-values', 'ratio');
    expect(ratio.out).toContain('| 1 | conv2 | 16.67 | 16.67 | 11.25 * |');
    const csv = await cli('report', 'ranks', '--db', tmp.path, '--format', 'csv');
    expect(csv.out.split('\n')[0]).toMatch(/^sweep,best,baseline,method/);
    const profileCsv = await cli('report', 'ranks', '--db', tmp.path, '--format', 'csv', '--ranks');
    expect(profileCsv.out.split('\n')[0]).toMatch(
      /^sweep,group,method,decomposition,rank,variant,bucket,layer_index,layer,/,
    );
    expect(profileCsv.out.trim().split('\n')).toHaveLength(11);
    const bad = await cli('report', 'ranks', '--db', tmp.path, '--rank-values', 'rank');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--rank-values: unknown value "rank"; allowed: ranks, ratio/);
  });

  it('plot --ranks writes SVG and PNG with one line per configuration; the option errors are usage errors', async () => {
    const svg = join(tmp.dir, 'ranks.svg');
    const r = await cli('plot', 'ranks', '--db', tmp.path, '--ranks', '--out', svg);
    expect(r.code, r.err).toBe(0);
    const text = readFileSync(svg, 'utf8');
    expect(text.match(/<polyline class="series-line"/g)).toHaveLength(3);
    expect(text).toContain('<title>ranks: rank per layer</title>');
    const at = join(tmp.dir, 'ratio.svg');
    expect(
      (
        await cli(
          'plot',
          'ranks',
          '--db',
          tmp.path,
          '--ranks',
          '--rank-values',
          'ratio',
          '--at',
          '2',
          '--out',
          at,
        )
      ).code,
    ).toBe(0);
    expect(readFileSync(at, 'utf8')).toContain('<title>ranks: compression ratio per layer at 2x</title>');
    const png = join(tmp.dir, 'ranks.png');
    expect((await cli('plot', 'ranks', '--db', tmp.path, '--ranks', '--out', png)).code).toBe(0);
    expect(readFileSync(png).subarray(0, 4).toString('latin1')).toBe('\x89PNG');
    const errors = [
      [['--at', '2'], /--at: only with --ranks/],
      [['--ranks', '--at', '8'], /bucket: no configuration of ranks at compression ratio 8/],
      [['--ranks', '--at', 'x'], /--at: a compression ratio > 0 is required/],
      [['--ranks', '--y-range', '80:90'], /--y-range: zooms the accuracy plot; not with --ranks/],
    ] as const;
    for (const [args, message] of errors) {
      const e = await cli('plot', 'ranks', '--db', tmp.path, '--out', join(tmp.dir, 'e.svg'), ...args);
      expect(e.code, args.join(' ')).toBe(2);
      expect(e.err).toMatch(message);
    }
  });

  it('the accuracy plot draws the uniform and the allocated fine-tuning as two lines', async () => {
    const svg = join(tmp.dir, 'acc.svg');
    expect((await cli('plot', 'ranks', '--db', tmp.path, '--out', svg)).code).toBe(0);
    const text = readFileSync(svg, 'utf8');
    expect(text).toContain('data-label="finetune svd ratio"');
    expect(text).toContain('data-label="finetune svd energy"');
  });
});

describe('committed study results', () => {
  const ROOT = resolve(__dirname, '../../..');
  // The commands of docs/results/<name>.md, on a copy of the committed database.
  const STUDIES: Array<[name: string, plotArgs: string[]]> = [
    ['fashion-mnist-full', []],
    ['fashion-mnist-long', []],
    ['fashion-mnist-resnet20', ['--y-range', '91:94']],
  ];
  it.each(STUDIES)('%s: report, CSV and SVG regenerate byte for byte', async (name, plotArgs) => {
    const db = join(tmp.dir, `${name}.sqlite`);
    copyFileSync(join(ROOT, 'docs/results', name, 'study.sqlite'), db);
    const committed = (ext: string) => readFileSync(join(ROOT, 'docs/results', `${name}${ext}`), 'utf8');
    const md = join(tmp.dir, `${name}.report.md`);
    const csv = join(tmp.dir, `${name}.csv`);
    const svg = join(tmp.dir, `${name}.svg`);
    expect((await cli('report', name, '--db', db, '--out', md)).code).toBe(0);
    expect((await cli('report', name, '--db', db, '--format', 'csv', '--out', csv)).code).toBe(0);
    expect((await cli('plot', name, '--db', db, '--out', svg, ...plotArgs)).code).toBe(0);
    expect(readFileSync(md, 'utf8')).toBe(committed('.report.md'));
    expect(readFileSync(csv, 'utf8')).toBe(committed('.csv'));
    expect(readFileSync(svg, 'utf8')).toBe(committed('.svg'));
  });

  it('the paper-protocol database: the Fig. 3 report (with paired differences), CSV and SVG and the CP lr probe regenerate byte for byte', async () => {
    const db = join(tmp.dir, 'paper.sqlite');
    copyFileSync(join(ROOT, 'docs/results/fashion-mnist-paper/study.sqlite'), db);
    const committed = (file: string) => readFileSync(join(ROOT, 'docs/results', file), 'utf8');
    const out = (file: string) => join(tmp.dir, file);
    const fig3 = 'fashion-mnist-fig3';
    expect((await cli('report', fig3, '--db', db, '--paired', '--out', out(`${fig3}.report.md`))).code).toBe(
      0,
    );
    expect((await cli('report', fig3, '--db', db, '--format', 'csv', '--out', out(`${fig3}.csv`))).code).toBe(
      0,
    );
    expect((await cli('plot', fig3, '--db', db, '--out', out(`${fig3}.svg`))).code).toBe(0);
    const probe = 'fashion-mnist-fig3-cp-lr';
    expect((await cli('report', probe, '--db', db, '--out', out(`${probe}.report.md`))).code).toBe(0);
    for (const file of [`${fig3}.report.md`, `${fig3}.csv`, `${fig3}.svg`, `${probe}.report.md`])
      expect(readFileSync(out(file), 'utf8')).toBe(committed(file));
  });
});

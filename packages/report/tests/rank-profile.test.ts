// The rank profile of a sweep with known ranks (packages/testing rank-db.ts): table cells, the
// allocation columns, the long CSV, the rank plot, and the accuracy plot's separate lines for
// uniform and allocated rows of one method.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError, resolveTrialConfig } from '@flatrank/protocol';
import { createTempDb, populateRankDb, type TempDb } from '@flatrank/testing';
import {
  buildRankProfile,
  buildReport,
  formatReport,
  loadSweep,
  loadSweepRanks,
  parseRankValues,
  plotData,
  rankCellText,
  rankFamily,
  rankPlotData,
  renderRankPlotSvg,
  targetRatioOf,
  type RankProfile,
  type Report,
} from '../src/index.js';

let tmp: TempDb;
let report: Report;
let profile: RankProfile;
beforeEach(() => {
  tmp = createTempDb();
  populateRankDb(tmp.store!);
  report = buildReport(loadSweep(tmp.path, 'ranks').trials, { sweep: 'ranks' });
  profile = buildRankProfile(report, loadSweepRanks(tmp.path, 'ranks'));
});
afterEach(() => tmp.cleanup());

const LABELS = ['distort svd ratio 2x', 'finetune svd ratio 2x', 'finetune svd energy=0.9'];

describe('rank profile', () => {
  it('has one column per compressed configuration and the layers in model order', () => {
    expect(profile.columns.map((c) => c.label)).toEqual(LABELS);
    expect(profile.columns.map((c) => [c.bucket, c.seeds, c.paramsRatio])).toEqual([
      [2, [0, 1], 2],
      [2, [0, 1], 2],
      [2, [0, 1], 2],
    ]);
    // The allocated trials reported fc2 first: the allocation's order (model order) wins.
    expect(profile.layers.map((l) => [l.index, l.name])).toEqual([
      [0, 'conv1'],
      [1, 'conv2'],
      [2, 'fc1'],
      [3, 'fc2'],
    ]);
  });

  it("cells: the seeds' common rank, or their mean with min / max when they differ", () => {
    const cell = (layer: number, column: number) => profile.layers[layer]!.cells[column]!;
    expect(profile.layers[0]!.cells[0]).toBeNull(); // distort left conv1 alone
    expect(cell(0, 1)).toMatchObject({ n: 2, ranksVary: false, ratioVaries: false });
    expect(cell(0, 1).ranks).toEqual([{ n: 2, mean: 3, std: 0, min: 3, max: 3 }]);
    expect(cell(1, 2).ranks[0]).toMatchObject({ n: 2, mean: 9, min: 8, max: 10 });
    expect(cell(1, 2).ranksVary).toBe(true);
    // Layer ratio 1000 / (10 x rank): 12.5 and 10.
    expect(cell(1, 2).ratio).toMatchObject({ mean: 11.25, min: 10, max: 12.5 });
    expect(cell(1, 2).ratioVaries).toBe(true);
    const text = (values: 'ranks' | 'ratio') =>
      profile.layers.map((l) => l.cells.map((c) => rankCellText(c, values)));
    expect(text('ranks')).toEqual([
      ['-', '3', '2'],
      ['6', '6', '9.0 *'],
      ['40', '40', '30'],
      ['-', '10', '12'],
    ]);
    expect(text('ratio')).toEqual([
      ['-', '33.33', '50.00'],
      ['16.67', '16.67', '11.25 *'],
      ['2.50', '2.50', '3.33'],
      ['-', '10.00', '8.33'],
    ]);
  });

  it('the allocation column carries the budget and the mean reached ratios; the uniform ones none', () => {
    expect(profile.columns.map((c) => c.allocation?.policy ?? null)).toEqual([null, null, 'energy=0.9']);
    const a = profile.columns[2]!.allocation!;
    expect(a.budget).toEqual({ kind: 'params', ratio: 2 });
    expect(a.n).toBe(2);
    expect(a.achievedParams.mean).toBeCloseTo(2, 12);
    expect(a.achievedMacs.mean).toBeCloseTo(1.6, 12);
  });

  it('markdown: a table per ratio, layers as rows, and the budget rows', () => {
    const md = formatReport(report, 'md', { profile });
    expect(md.startsWith('# flatrank report: ranks\n')).toBe(true);
    const section = md.slice(md.indexOf('## Rank profile'));
    expect(section).toBe(
      [
        '## Rank profile',
        '',
        'The rank each configuration chose per layer (rows: layers in model order; Tucker-2: R_S x R_T), one table per compression ratio.',
        '',
        '### 2x',
        '',
        '| # | layer | distort svd ratio 2x | finetune svd ratio 2x | finetune svd energy=0.9 |',
        '|---|---|---|---|---|',
        '| 0 | conv1 | - | 3 | 2 |',
        '| 1 | conv2 | 6 | 6 | 9.0 * |',
        '| 2 | fc1 | 40 | 40 | 30 |',
        '| 3 | fc2 | - | 10 | 12 |',
        '|  | _seeds_ | 2 | 2 | 2 |',
        '|  | _params × (whole model)_ | 2 | 2 | 2 |',
        '|  | _budget_ | - | - | params 2x |',
        '|  | _reached params × / MACs ×_ | - | - | 2 / 1.6 |',
        '',
        '\\* mean over seeds that chose different ranks for the layer (min and max in the CSV / JSON). budget / reached: the whole-model target of the allocation and the ratios (params, MACs) its ranks reached, mean over seeds.',
        '',
      ].join('\n'),
    );
    expect(formatReport(report, 'md')).not.toContain('Rank profile');
  });

  it('CSV: one line per configuration and layer it compressed; JSON: the profile beside the rows', () => {
    const lines = formatReport(report, 'csv', { profile }).trim().split('\n');
    expect(lines).toHaveLength(1 + 2 + 4 + 4);
    const head = lines[0]!.split(',');
    const row = (i: number) => Object.fromEntries(lines[i]!.split(',').map((v, j) => [head[j], v]));
    expect(row(1)).toMatchObject({
      method: 'distort',
      rank: 'ratio 2x',
      layer_index: '1',
      layer: 'conv2',
      ranks_mean: '6',
    });
    expect(row(8)).toMatchObject({
      method: 'finetune',
      rank: 'energy=0.9',
      layer: 'conv2',
      n: '2',
      ranks_mean: '9',
      ranks_min: '8',
      ranks_max: '10',
      ranks_vary: 'true',
      layer_ratio_mean: '11.25',
      allocation_policy: 'energy=0.9',
      budget_kind: 'params',
      budget_ratio: '2',
    });
    const json = JSON.parse(formatReport(report, 'json', { profile })) as {
      rows: unknown[];
      rankProfile: RankProfile;
    };
    expect(json.rows).toHaveLength(4);
    expect(json.rankProfile.columns.map((c) => c.label)).toEqual(LABELS);
  });

  it('plot: one polyline per configuration, x = layer index, y = rank (or layer ratio)', () => {
    const data = rankPlotData(profile);
    expect(data.series).toEqual([
      {
        label: LABELS[0],
        points: [
          { x: 1, y: 6 },
          { x: 2, y: 40 },
        ],
      },
      {
        label: LABELS[1],
        points: [
          { x: 0, y: 3 },
          { x: 1, y: 6 },
          { x: 2, y: 40 },
          { x: 3, y: 10 },
        ],
      },
      {
        label: LABELS[2],
        points: [
          { x: 0, y: 2 },
          { x: 1, y: 9 },
          { x: 2, y: 30 },
          { x: 3, y: 12 },
        ],
      },
    ]);
    const svg = renderRankPlotSvg(data);
    expect(svg).toMatch(/^<\?xml[^>]*>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg.match(/<polyline class="series-line"/g)).toHaveLength(3);
    for (const label of LABELS) expect(svg).toContain(`data-label="${label}"`);
    // Each series line has as many vertices as layers it compressed.
    const vertices = [...svg.matchAll(/<polyline class="series-line"[^>]* points="([^"]*)"/g)].map(
      (m) => m[1]!.split(' ').length,
    );
    expect(vertices).toEqual([2, 4, 4]);
    expect(svg).toContain('>layer (index in model order)<');
    const ratio = rankPlotData(profile, { values: 'ratio' });
    expect(ratio.yLabel).toBe('layer compression ratio (params before / after)');
    expect(ratio.series[2]!.points[1]).toEqual({ x: 1, y: 11.25 });
    expect(rankPlotData(profile, { bucket: 2 }).series).toHaveLength(3);
    expect(() => rankPlotData(profile, { bucket: 8 })).toThrow(ValidationError);
    expect(() => rankPlotData(profile, { bucket: 8 })).toThrow(
      /no configuration of ranks at compression ratio 8; ratios there: 2/,
    );
    expect(() => parseRankValues('rank')).toThrow(
      /--rank-values: unknown value "rank"; allowed: ranks, ratio/,
    );
  });
});

describe('accuracy vs compression beside rank choices', () => {
  it('uniform and allocated rows of one method are separate lines, named by their kind of rank choice', () => {
    expect(plotData(report).series.map((s) => [s.label, s.points.length])).toEqual([
      ['distort svd', 1],
      ['finetune svd ratio', 1],
      ['finetune svd energy', 1],
    ]);
    expect(
      ['ratio 2x', 'model-ratio 2.5x', 'ranks=4x8', 'energy=0.9', 'vbmf', 'alloc-error:params=4', null].map(
        rankFamily,
      ),
    ).toEqual(['ratio', 'model-ratio', 'ranks', 'energy', 'vbmf', 'alloc-error:params', '']);
  });
});

describe('allocated rows beside uniform ones in the report', () => {
  const allocate = (target: { params: number } | { macs: number }) =>
    resolveTrialConfig({
      model: 'lenet5',
      dataset: { name: 'mnist' },
      training: { epochs: 1 },
      method: 'finetune',
      compression: { decomposition: 'tucker2', rank: { kind: 'allocate', by: 'error', target } },
    });
  it("a whole-model params budget is the row's target ratio (bucketed with model-ratio rows); a MACs budget states none", () => {
    expect(targetRatioOf(allocate({ params: 4 }))).toEqual({ ratio: 4, basis: 'model' });
    expect(targetRatioOf(allocate({ macs: 4 }))).toBeNull();
  });
});

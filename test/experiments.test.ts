/**
 * The experiment files validate and expand to the grids their comments promise (the same code path
 * as `flatrank run <file> --dry-run`), and the paper reproductions cover the published rows.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expandSpec, loadSpecFile, type GridPoint } from '@flatrank/scheduler';
import { publishedRows, targetRatioOf } from '@flatrank/report';

const expand = (name: string): { points: GridPoint[]; reproduces: string | undefined } => {
  const spec = loadSpecFile(resolve(__dirname, '../experiments', name));
  return { points: expandSpec(spec), reproduces: spec.parsed.reproduces };
};
const count = (points: GridPoint[], pred: (p: GridPoint) => boolean) => points.filter(pred).length;

describe('experiments/', () => {
  it('quickstart: LeNet-5 on embedded MNIST, baseline + 5 compressed methods at 2 ratios, 1 seed', () => {
    const { points } = expand('quickstart.yaml');
    expect(points).toHaveLength(11);
    expect(new Set(points.map((p) => p.config.model))).toEqual(new Set(['lenet5']));
    expect(new Set(points.map((p) => p.config.dataset.name))).toEqual(new Set(['mnist']));
    expect(new Set(points.map((p) => p.config.seed))).toEqual(new Set([0]));
    const kinds = new Set(
      points.map((p) => `${p.config.method}/${p.config.compression?.decomposition ?? '-'}`),
    );
    expect(kinds).toEqual(
      new Set([
        'baseline/-',
        'distort/svd',
        'distort/tucker2',
        'finetune/tucker2',
        'finetune/cp',
        'posttrain/svd',
      ]),
    );
    // every compressed trial starts from the baseline trial
    const base = points.find((p) => p.config.method === 'baseline')!;
    for (const p of points) if (p !== base) expect(p.dependsOn).toEqual([base.key]);
  });

  it('fashion-mnist-study: ResNet-8, 3 seeds, 2x/4x/8x, S_D 50/200/1000, all methods', () => {
    const { points } = expand('fashion-mnist-study.yaml');
    expect(points).toHaveLength(57);
    expect(new Set(points.map((p) => p.config.dataset.name))).toEqual(new Set(['fashion-mnist']));
    expect(new Set(points.map((p) => p.config.seed))).toEqual(new Set([0, 1, 2]));
    const distort = points.filter((p) => p.config.method === 'distort');
    expect(new Set(distort.map((p) => p.config.distortion!.interval))).toEqual(new Set([50, 200, 1000]));
    expect(new Set(distort.map((p) => targetRatioOf(p.config)!.ratio))).toEqual(new Set([2, 4, 8]));
    expect(count(points, (p) => p.config.method === 'finetune')).toBe(18);
    expect(count(points, (p) => p.config.method === 'posttrain')).toBe(9);
  });

  it('paper-fig3-tucker: declares paper-fig3; Tucker-2 distort (S_D 200) / fine-tune, CP, SVD at the 5 figure ratios', () => {
    const { points, reproduces } = expand('paper-fig3-tucker.yaml');
    expect(reproduces).toBe('paper-fig3');
    expect(new Set(points.map((p) => p.config.model))).toEqual(new Set(['resnet32']));
    const figRatios = [...new Set(publishedRows('paper-fig3').map((r) => r.ratio))].sort();
    for (const kind of ['distort/tucker2', 'finetune/tucker2', 'finetune/cp', 'posttrain/svd']) {
      const ps = points.filter((p) => `${p.config.method}/${p.config.compression?.decomposition}` === kind);
      expect(ps.map((p) => p.config.compression!.rank).every((r) => r.kind === 'model-ratio')).toBe(true);
      expect(ps.map((p) => targetRatioOf(p.config)!.ratio).sort()).toEqual(figRatios);
    }
    for (const p of points.filter((x) => x.config.method === 'distort'))
      expect(p.config.distortion!.interval).toBe(200);
    expect(points.find((p) => p.config.method === 'baseline')!.config.training).toMatchObject({
      lr: 0.1,
      batchSize: 128,
      weightDecay: 1e-4,
      augment: true,
    });
  });

  it('paper-table1-tiled-svd: declares paper-table1; one trial per published row (tile, 2x / 4x of the nine 64->64 convs)', () => {
    const { points, reproduces } = expand('paper-table1-tiled-svd.yaml');
    expect(reproduces).toBe('paper-table1');
    const tiled = points.filter((p) => p.config.compression?.decomposition === 'tiled-svd');
    expect(tiled).toHaveLength(8);
    for (const p of tiled) {
      expect(p.config.compression!.layers).toEqual({
        kind: 'filter',
        inChannels: 64,
        outChannels: 64,
        kernelSize: 3,
        stride: 1,
      });
      expect(p.config.distortion!.interval).toBe(200);
    }
    for (const row of publishedRows('paper-table1')) {
      const hits = tiled.filter(
        (p) => p.config.compression!.tile![0] === row.tile && targetRatioOf(p.config)!.ratio === row.ratio,
      );
      expect(hits, `${row.tile}x${row.tile} at ${row.ratio}x`).toHaveLength(1);
      expect(hits[0]!.config.compression!.rank).toEqual({ kind: 'rank', rank: row.rank });
    }
  });
});

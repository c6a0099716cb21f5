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

  it('example-allocate: LeNet-5, uniform vs allocated ranks at 4x params, fine-tuned and distortion-trained, 2 seeds', () => {
    const { points } = expand('example-allocate.yaml');
    expect(points).toHaveLength(2 + 8 + 6);
    const policies = new Set(
      points.filter((p) => p.config.compression).map((p) => `${p.config.method} ${p.label.split(' ')[2]}`),
    );
    expect(policies).toEqual(
      new Set([
        'finetune model-ratio=4',
        'finetune alloc-error:params=4',
        'finetune alloc-vbmf:params=4',
        'finetune alloc-sensitivity:params=4',
        'distort model-ratio=4',
        'distort alloc-error:params=4',
        'distort alloc-sensitivity:params=4',
      ]),
    );
    // by sensitivity starts from the baseline (the schema refuses it from scratch), with its defaults filled
    for (const p of points.filter((x) => x.config.compression?.rank.kind === 'allocate'))
      expect(p.dependsOn).toHaveLength(1);
    const s = points.find((p) => p.label.includes('alloc-sensitivity'))!.config.compression!.rank;
    expect(s).toMatchObject({ sensitivity: { validationSize: 500, validationSeed: 0 } });
  });

  it('example-trp: LeNet-5, TRP channel-wise and spatial-wise at two energies beside distortion training, 2 seeds', () => {
    const { points } = expand('example-trp.yaml');
    expect(points).toHaveLength(2 + 8 + 4);
    const trp = points.filter((p) => p.config.method === 'trp');
    expect(trp).toHaveLength(8);
    expect(new Set(trp.map((p) => p.config.compression!.scheme))).toEqual(new Set(['lowered', 'spatial']));
    expect(new Set(trp.map((p) => JSON.stringify(p.config.compression!.rank)))).toEqual(
      new Set([
        JSON.stringify({ kind: 'energy', threshold: 0.9 }),
        JSON.stringify({ kind: 'energy', threshold: 0.97 }),
      ]),
    );
    expect(trp.every((p) => p.config.trp?.interval === 20 && p.config.trp.lambda === 0.0003)).toBe(true);
    expect(trp.every((p) => p.dependsOn.length === 1)).toBe(true);
    for (const p of points.filter((x) => x.config.method !== 'trp'))
      expect(p.config).not.toHaveProperty('trp');
  });

  it('fashion-mnist-ranks: 4 rank choices x distort / finetune + TRP, 3 seeds; baselines and uniform rows are the Fig. 3 trials', () => {
    const { points } = expand('fashion-mnist-ranks.yaml');
    expect(points).toHaveLength(3 + 12 + 12 + 6);
    const policies = new Set(
      points
        .filter((p) => p.config.method === 'finetune')
        .map((p) => JSON.stringify(p.config.compression!.rank)),
    );
    expect(policies).toEqual(
      new Set([
        JSON.stringify({ kind: 'model-ratio', ratio: 4.28 }),
        JSON.stringify({ kind: 'allocate', by: 'error', target: { params: 4.28 } }),
        JSON.stringify({ kind: 'allocate', by: 'vbmf', target: { params: 4.28 } }),
        JSON.stringify({
          kind: 'allocate',
          by: 'sensitivity',
          target: { params: 4.28 },
          sensitivity: {
            candidates: [0.0625, 0.125, 0.25, 0.375, 0.5, 0.75],
            validationSize: 1000,
            validationSeed: 0,
          },
        }),
      ]),
    );
    // Run into the Fig. 3 database, the baselines and the uniform 4.28x rows are trained once.
    const fig3 = new Set(expand('fashion-mnist-fig3.yaml').points.map((p) => p.key));
    const shared = points.filter((p) => fig3.has(p.key));
    expect(shared.map((p) => `${p.config.method}:${p.config.seed}`).sort()).toEqual(
      ['baseline', 'distort', 'finetune'].flatMap((m) => [0, 1, 2].map((s) => `${m}:${s}`)),
    );
    expect(
      shared.every(
        (p) => p.config.method === 'baseline' || p.config.compression!.rank.kind === 'model-ratio',
      ),
    ).toBe(true);
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
  it('fashion-mnist-fig3 (+ its CP lr probe): the Fig. 3 protocol on ResNet-20, shared baselines, S_D 200 / 50, Kim et al. fine-tuning, EVBMF, CP', () => {
    const { points, reproduces } = expand('fashion-mnist-fig3.yaml');
    expect(reproduces).toBe('paper-fig3');
    expect(points).toHaveLength(72);
    expect(new Set(points.map((p) => `${p.config.model}/${p.config.dataset.name}`))).toEqual(
      new Set(['resnet20/fashion-mnist']),
    );
    expect(new Set(points.map((p) => p.config.seed))).toEqual(new Set([0, 1, 2]));
    const base = points.filter((p) => p.config.method === 'baseline' && p.config.start.kind === 'scratch');
    expect(base).toHaveLength(3);
    // every other trial starts from the baseline of its own seed
    for (const p of points)
      if (!base.includes(p))
        expect(p.dependsOn).toEqual([base.find((b) => b.config.seed === p.config.seed)!.key]);
    const kind = (p: GridPoint) => `${p.config.method}/${p.config.compression?.decomposition ?? '-'}`;
    const figRatios = [...new Set(publishedRows('paper-fig3').map((r) => r.ratio))].sort();
    const distort = points.filter(
      (p) => kind(p) === 'distort/tucker2' && p.config.compression!.rank.kind === 'model-ratio',
    );
    expect(new Set(distort.map((p) => p.config.distortion!.interval))).toEqual(new Set([200, 50]));
    expect([...new Set(distort.map((p) => targetRatioOf(p.config)!.ratio))].sort()).toEqual(figRatios);
    const kim = points.filter((p) => kind(p) === 'finetune/tucker2');
    expect(kim).toHaveLength(18);
    for (const p of kim) {
      expect(p.config.training.lr).toBe(0.001);
      expect(p.config.training.schedule).toEqual({ kind: 'step', milestones: [0.5, 0.75], gamma: 0.1 });
    }
    expect(count(points, (p) => p.config.compression?.rank.kind === 'vbmf')).toBe(6);
    expect(count(points, (p) => kind(p) === 'finetune/cp')).toBe(15);
    // the ceiling: the baseline trained on from itself for the compressed trials' length (1 epoch)
    const ceiling = points.filter((p) => p.config.method === 'baseline' && p.config.start.kind === 'trial');
    expect(ceiling.map((p) => p.config.training.epochs)).toEqual([1, 1, 1]);
    // the probe's baseline is fig3's seed-0 baseline: the same trial
    const probe = expand('fashion-mnist-fig3-cp-lr.yaml').points;
    expect(probe.find((p) => p.config.method === 'baseline')!.key).toBe(
      base.find((b) => b.config.seed === 0)!.key,
    );
    expect(
      new Set(probe.filter((p) => p.config.method === 'finetune').map((p) => p.config.training.lr)),
    ).toEqual(new Set([1e-5, 1e-4, 1e-3, 1e-2]));
  });

  it('fashion-mnist-table1: tiled SVD of the five 64->64 convs, 4 tiles x 2 ratios x both lowering orders, floor and ceiling', () => {
    const { points, reproduces } = expand('fashion-mnist-table1.yaml');
    expect(reproduces).toBe('paper-table1');
    expect(points).toHaveLength(126);
    const fig3 = expand('fashion-mnist-fig3.yaml').points;
    const baseKeys = (ps: GridPoint[]) =>
      ps.filter((p) => p.config.method === 'baseline' && p.config.start.kind === 'scratch').map((p) => p.key);
    expect(baseKeys(points)).toEqual(baseKeys(fig3)); // the same baselines as the Fig. 3 analog
    const tiled = points.filter((p) => p.config.compression?.decomposition === 'tiled-svd');
    const orderOf = (p: GridPoint) => p.config.compression!.order ?? 'hwc';
    for (const method of ['distort', 'posttrain'])
      for (const order of ['hwc', 'chw']) {
        const ps = tiled.filter(
          (p) => p.config.method === method && orderOf(p) === order && p.config.distortion?.interval !== 50,
        );
        expect(ps).toHaveLength(24);
        expect(
          new Set(
            ps.map(
              (p) =>
                `${p.config.compression!.tile!.join('x')} r=${(p.config.compression!.rank as { rank: number }).rank}`,
            ),
          ),
        ).toEqual(
          new Set([
            '64x64 r=16',
            '32x32 r=8',
            '16x16 r=4',
            '8x8 r=2',
            '64x64 r=8',
            '32x32 r=4',
            '16x16 r=2',
            '8x8 r=1',
          ]),
        );
      }
    expect(count(tiled, (p) => p.config.distortion?.interval === 50 && orderOf(p) === 'chw')).toBe(24);
    for (const p of tiled)
      expect(p.config.compression!.layers).toEqual({
        kind: 'filter',
        inChannels: 64,
        outChannels: 64,
        kernelSize: 3,
        stride: 1,
      });
  });
});

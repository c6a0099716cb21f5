/**
 * The published numbers of Lee et al. 2019 (docs/paper-tables.md) as typed data: what a sweep that
 * declares `reproduces: paper-fig3 | paper-table1` is compared with. Accuracies in percent.
 */
import type { Decomposition, Method } from '@flatrank/protocol';

export const PAPER_REFERENCES = ['paper-fig3', 'paper-table1'] as const;
export type PaperReference = (typeof PAPER_REFERENCES)[number];

/** The pre-trained ResNet-32 / CIFAR-10 model all of the paper's runs start from. */
export const PAPER_BASELINE_ACCURACY = 92.63;

/**
 * Which compression ratio a published row is stated in:
 * - 'model': parameters of the whole model before / after (Fig. 3);
 * - 'layers': parameters of the compressed layers only (Table 1: the nine 64->64 convs).
 */
export type RatioBasis = 'model' | 'layers';

export interface PublishedRow {
  reference: PaperReference;
  method: Method;
  decomposition: Decomposition;
  /** tiled-svd only: the square tile edge (64, 32, 16, 8). */
  tile: number | null;
  /** tiled-svd only: the per-tile rank printed in the table. */
  rank: number | null;
  ratio: number;
  ratioBasis: RatioBasis;
  /** Test accuracy in percent. */
  accuracy: number;
  /** Where the number comes from and how exact it is. */
  note: string;
}

/** Fig. 3 ratios are read off the figure's axis (about +-0.02); the accuracies are printed in it. */
const FIG3: ReadonlyArray<[ratio: number, finetune: number, distort: number]> = [
  [1.57, 92.2, 92.92],
  [2.06, 92.09, 92.62],
  [2.8, 91.75, 92.43],
  [4.28, 90.96, 91.49],
  [6.71, 89.77, 90.43],
];

/** Table 1: [ratio of the nine layers, tile edge, per-tile rank, accuracy]. */
const TABLE1: ReadonlyArray<[ratio: number, tile: number, rank: number, accuracy: number]> = [
  [2, 64, 16, 93.34],
  [2, 32, 8, 93.11],
  [2, 16, 4, 93.01],
  [2, 8, 2, 93.23],
  [4, 64, 8, 92.94],
  [4, 32, 4, 92.97],
  [4, 16, 2, 93.0],
  [4, 8, 1, 92.81],
];

export const PUBLISHED: readonly PublishedRow[] = [
  ...FIG3.flatMap(([ratio, finetune, distort]): PublishedRow[] => [
    {
      reference: 'paper-fig3',
      method: 'finetune',
      decomposition: 'tucker2',
      tile: null,
      rank: null,
      ratio,
      ratioBasis: 'model',
      accuracy: finetune,
      note: 'Fig. 3, decompose + fine-tune (ratio read off the axis, +-0.02)',
    },
    {
      reference: 'paper-fig3',
      method: 'distort',
      decomposition: 'tucker2',
      tile: null,
      rank: null,
      ratio,
      ratioBasis: 'model',
      accuracy: distort,
      note: 'Fig. 3, distortion training, S_D = 200 (ratio read off the axis, +-0.02)',
    },
  ]),
  ...TABLE1.map(([ratio, tile, rank, accuracy]): PublishedRow => ({
    reference: 'paper-table1',
    method: 'distort',
    decomposition: 'tiled-svd',
    tile,
    rank,
    ratio,
    ratioBasis: 'layers',
    accuracy,
    note: `Table 1, ${tile}x${tile} tiles, r = ${rank}, ratio of the nine 64->64 convs`,
  })),
];

export function isPaperReference(v: unknown): v is PaperReference {
  return typeof v === 'string' && (PAPER_REFERENCES as readonly string[]).includes(v);
}

export function publishedRows(reference: PaperReference): PublishedRow[] {
  return PUBLISHED.filter((r) => r.reference === reference);
}

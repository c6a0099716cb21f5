export { loadDataset, FASHION_MNIST_SYSTEM_DIR, type LoadDatasetOptions } from './load.js';
export { batches, batchCount, augmentInto, AUGMENT_PAD, type Batch, type BatchOptions } from './batches.js';
export { DATASET_INFO, type Dataset, type Split } from './types.js';
export { parseIdx, loadIdxPair, IDX_FILES } from './idx.js';
export { parseCifarBatch, CIFAR_RECORD_BYTES, CIFAR_TRAIN_FILES, CIFAR_TEST_FILE } from './cifar.js';
export { loadEmbeddedMnist, EMBEDDED_MNIST_SPLIT_SEED } from './embedded-mnist.js';
export { Rng, mixSeed, permutation } from './rng.js';

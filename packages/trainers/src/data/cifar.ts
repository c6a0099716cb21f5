/**
 * CIFAR-10 binary version: data_batch_1..5.bin and test_batch.bin, records of 3073 bytes (label,
 * then 1024 red, 1024 green, 1024 blue bytes of a 32x32 image, row-major). Converted to HWC.
 */
import { join } from 'node:path';
import { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, DataError, datasetSearchDirs } from '@flatrank/protocol';
import { isFile, readDataFile } from './files.js';

export const CIFAR_RECORD_BYTES = 3073;
export { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES };

/** Parses one batch file into HWC bytes and labels. */
export function parseCifarBatch(
  buf: Buffer,
  file: string,
): { images: Uint8Array; labels: Int32Array; count: number } {
  if (buf.length === 0 || buf.length % CIFAR_RECORD_BYTES !== 0)
    throw new DataError(
      `${file}: ${buf.length} bytes is not a whole number of ${CIFAR_RECORD_BYTES}-byte CIFAR-10 records (truncated or not the binary version)`,
      { file, context: { bytes: buf.length } },
    );
  const n = buf.length / CIFAR_RECORD_BYTES;
  const images = new Uint8Array(n * 3072);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const off = i * CIFAR_RECORD_BYTES;
    const l = buf[off]!;
    if (l > 9)
      throw new DataError(
        `${file}: record ${i} has label ${l} (allowed 0..9): corrupt file or not CIFAR-10`,
        { file, context: { record: i, label: l } },
      );
    labels[i] = l;
    const o = i * 3072;
    for (let p = 0; p < 1024; p++) {
      images[o + 3 * p] = buf[off + 1 + p]!;
      images[o + 3 * p + 1] = buf[off + 1 + 1024 + p]!;
      images[o + 3 * p + 2] = buf[off + 1 + 2048 + p]!;
    }
  }
  return { images, labels, count: n };
}

export function loadCifarFiles(files: readonly string[]): {
  images: Uint8Array;
  labels: Int32Array;
  count: number;
} {
  const parts = files.map((f) => parseCifarBatch(readDataFile(f), f));
  const count = parts.reduce((a, p) => a + p.count, 0);
  const images = new Uint8Array(count * 3072);
  const labels = new Int32Array(count);
  let k = 0;
  for (const p of parts) {
    images.set(p.images, k * 3072);
    labels.set(p.labels, k);
    k += p.count;
  }
  return { images, labels, count };
}

/** The directory under dataDir that holds the CIFAR-10 binary files, or null. */
export function findCifarDir(dataDir: string): string | null {
  for (const d of datasetSearchDirs('cifar10', dataDir).dirs)
    if (isFile(join(d, CIFAR_TEST_FILE)) || isFile(join(d, CIFAR_TRAIN_FILES[0]))) return d;
  return null;
}

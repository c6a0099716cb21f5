/**
 * IDX files (the MNIST / Fashion-MNIST format): magic 0x0000 TT NN (TT = 0x08 unsigned bytes,
 * NN = number of dimensions), NN big-endian uint32 sizes, then the data. Raw or gzipped.
 */
import { join } from 'node:path';
import { DataError, IDX_FILES, idxFileNames } from '@flatrank/protocol';
import { isFile, readDataFile } from './files.js';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export function parseIdx(buf: Buffer, file: string, expectedDims?: number): IdxArray {
  if (buf.length < 4)
    throw new DataError(`${file}: truncated IDX file (${buf.length} bytes, no header)`, { file });
  const magic = buf.readUInt32BE(0);
  const type = buf[2]!;
  const ndim = buf[3]!;
  if (
    buf[0] !== 0 ||
    buf[1] !== 0 ||
    type !== 0x08 ||
    ndim < 1 ||
    ndim > 4 ||
    (expectedDims !== undefined && ndim !== expectedDims)
  ) {
    const want =
      expectedDims === undefined ? '0x0000080N' : `0x${(0x800 + expectedDims).toString(16).padStart(8, '0')}`;
    throw new DataError(
      `${file}: wrong magic number 0x${magic.toString(16).padStart(8, '0')} (expected ${want}: unsigned-byte IDX data)`,
      {
        file,
        context: { magic },
      },
    );
  }
  const header = 4 + 4 * ndim;
  if (buf.length < header) throw new DataError(`${file}: truncated IDX header`, { file });
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.length - header !== size)
    throw new DataError(
      `${file}: ${buf.length - header < size ? 'truncated' : 'wrong size'}: header dims [${dims.join(', ')}] need ${size} data bytes, file has ${buf.length - header}`,
      { file, context: { dims, dataBytes: buf.length - header } },
    );
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + header, size) };
}

/** Images [n, h, w] and labels [n] from a pair of IDX files, checked against each other. */
export function loadIdxPair(
  imagesFile: string,
  labelsFile: string,
  numClasses = 10,
): { images: Uint8Array; labels: Int32Array; count: number; h: number; w: number } {
  const img = parseIdx(readDataFile(imagesFile), imagesFile, 3);
  const lab = parseIdx(readDataFile(labelsFile), labelsFile, 1);
  const [n, h, w] = img.dims as [number, number, number];
  if (lab.dims[0] !== n)
    throw new DataError(`${labelsFile}: ${lab.dims[0]} labels but ${imagesFile} has ${n} images`, {
      file: labelsFile,
      context: { images: n, labels: lab.dims[0] },
    });
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const l = lab.data[i]!;
    if (l >= numClasses)
      throw new DataError(`${labelsFile}: label ${l} at index ${i} is out of range 0..${numClasses - 1}`, {
        file: labelsFile,
      });
    labels[i] = l;
  }
  return { images: img.data, labels, count: n, h, w };
}

export { IDX_FILES };

/** Finds an IDX file by its canonical name in dir, raw or gzipped (also 'train-images.idx3-ubyte'). */
export function findIdxFile(dir: string, base: string): string | null {
  for (const name of idxFileNames(base)) if (isFile(join(dir, name))) return join(dir, name);
  return null;
}

/** True when dir holds all four IDX files. */
export function hasIdxFiles(dir: string): boolean {
  return [IDX_FILES.train.images, IDX_FILES.train.labels, IDX_FILES.test.images, IDX_FILES.test.labels].every(
    (b) => findIdxFile(dir, b) !== null,
  );
}

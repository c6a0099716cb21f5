// NPY format (numpy.lib.format) version 1.0 / 2.0 / 3.0, float32 and float64, C order: the way kernels
// move between flatrank and numpy. Works on bytes so it runs anywhere; callers read/write the file.
import { DataError } from '@flatrank/protocol';
import { Tensor, allocate, checkDType, shapeSize, type DType } from './tensor.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ALLOWED =
  "descr '<f4' (float32) or '<f8' (float64) (big-endian '>f4'/'>f8' are byte-swapped), fortran_order False";
/** numpy >= 1.? aligns the data to 64 bytes and leaves room for the first axis to grow to 21 digits. */
const ARRAY_ALIGN = 64;
const GROWTH_AXIS_MAX_DIGITS = 21;

function where(file: string | undefined): string {
  return file ? `${file}: ` : '';
}

/** Parses an .npy file's bytes into a Tensor of its dtype. Throws DataError naming the file on anything else. */
export function readNpy(bytes: Uint8Array, file?: string): Tensor {
  const fail = (msg: string, context: Record<string, unknown> = {}): DataError =>
    new DataError(`${where(file)}${msg}`, { file, context });
  if (!(bytes instanceof Uint8Array)) throw fail('readNpy expects the file contents as a Uint8Array');
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b))
    throw fail('not an NPY file (missing the \\x93NUMPY magic)');
  const major = bytes[6]!;
  let headerLen: number;
  let headerStart: number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw fail('truncated NPY header');
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw fail(`unsupported NPY format version ${major}.${bytes[7]}; allowed: 1.0, 2.0, 3.0`);
  }
  const dataStart = headerStart + headerLen;
  if (bytes.length < dataStart)
    throw fail(`truncated NPY header (needs ${dataStart} bytes, file has ${bytes.length})`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    bytes.subarray(headerStart, dataStart),
  );
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw fail(`malformed NPY header ${JSON.stringify(header.trim())}: needs descr, fortran_order and shape`);
  }
  if (fortran !== 'False')
    throw fail(
      `fortran_order True is not supported; allowed: ${ALLOWED} (save with numpy.ascontiguousarray)`,
      { descr, fortran },
    );
  let dtype: DType;
  let bigEndian = false;
  switch (descr) {
    case '<f4':
    case '>f4':
      dtype = 'float32';
      bigEndian = descr[0] === '>';
      break;
    case '<f8':
    case '>f8':
      dtype = 'float64';
      bigEndian = descr[0] === '>';
      break;
    default:
      throw fail(
        `dtype ${JSON.stringify(descr)} is not supported; allowed: ${ALLOWED} (convert with .astype(numpy.float32))`,
        { descr },
      );
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim().replace(/L$/, ''))
    .filter((s) => s.length > 0)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : NaN));
  if (shape.some((d) => !Number.isSafeInteger(d)))
    throw fail(`malformed shape (${shapeText}) in the NPY header`);
  const itemSize = dtype === 'float32' ? 4 : 8;
  const size = shapeSize(shape);
  const expected = size * itemSize;
  const available = bytes.length - dataStart;
  if (available < expected) {
    throw fail(
      `truncated NPY data: shape (${shape.join(', ')}) ${dtype} needs ${expected} bytes, file has ${available}`,
      { shape, dtype, expected, available },
    );
  }
  if (available > expected) {
    throw fail(
      `NPY data has ${available - expected} unexpected trailing bytes after shape (${shape.join(', ')}) ${dtype}`,
      { shape, dtype, expected, available },
    );
  }
  // Copy so the result is aligned and does not alias the caller's buffer (Buffer#slice would alias).
  const raw = new Uint8Array(expected);
  raw.set(bytes.subarray(dataStart, dataStart + expected));
  if (bigEndian) {
    for (let i = 0; i < raw.length; i += itemSize) raw.subarray(i, i + itemSize).reverse();
  }
  const data =
    dtype === 'float32' ? new Float32Array(raw.buffer, 0, size) : new Float64Array(raw.buffer, 0, size);
  return new Tensor(data, shape);
}

/** Python repr of a shape tuple: (), (5,), (2, 3). */
function shapeRepr(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/** Serialises a tensor as an .npy file, byte-for-byte as numpy 2 writes it (little-endian, C order). */
export function writeNpy(t: Tensor, dtype: DType = t.dtype): Uint8Array {
  checkDType(dtype);
  let header = `{'descr': '${dtype === 'float32' ? '<f4' : '<f8'}', 'fortran_order': False, 'shape': ${shapeRepr(t.shape)}, }`;
  if (t.shape.length > 0) header += ' '.repeat(GROWTH_AXIS_MAX_DIGITS - String(t.shape[0]).length);
  let version = 1;
  let prefix = 10;
  let padded = pad(header, prefix);
  if (padded.length > 0xffff) {
    version = 2;
    prefix = 12;
    padded = pad(header, prefix);
  }
  const itemSize = dtype === 'float32' ? 4 : 8;
  const outBytes = new Uint8Array(prefix + padded.length + t.size * itemSize);
  outBytes.set(MAGIC, 0);
  outBytes[6] = version;
  outBytes[7] = 0;
  const view = new DataView(outBytes.buffer);
  if (version === 1) view.setUint16(8, padded.length, true);
  else view.setUint32(8, padded.length, true);
  for (let i = 0; i < padded.length; i++) outBytes[prefix + i] = padded.charCodeAt(i);
  const body = allocate(dtype, t.size);
  body.set(t.data);
  // Typed arrays are platform-endian; every platform Node supports is little-endian, but check anyway.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1)
    throw new DataError('writeNpy: big-endian hosts are not supported');
  outBytes.set(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), prefix + padded.length);
  return outBytes;
}

function pad(header: string, prefix: number): string {
  const hlen = header.length + 1;
  const padLen = ARRAY_ALIGN - ((prefix + hlen) % ARRAY_ALIGN); // as numpy: 1..64, never 0
  return `${header}${' '.repeat(padLen)}\n`;
}

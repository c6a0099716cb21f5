import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataError, ValidationError } from '@flatrank/protocol';
import { Tensor, readNpy, writeNpy } from '../src/index.js';
import { randomMatrix } from './helpers.js';

const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

function header(bytes: Uint8Array): string {
  const len = bytes[8]! | (bytes[9]! << 8);
  return new TextDecoder('latin1').decode(bytes.subarray(10, 10 + len));
}

/** A hand-built v1.0 NPY file with the given header dict text and payload. */
function npyWith(dict: string, payload: Uint8Array): Uint8Array {
  let h = dict;
  while ((10 + h.length + 1) % 64 !== 0) h += ' ';
  h += '\n';
  const out = new Uint8Array(10 + h.length + payload.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length & 0xff, h.length >> 8]);
  for (let i = 0; i < h.length; i++) out[10 + i] = h.charCodeAt(i);
  out.set(payload, 10 + h.length);
  return out;
}

describe('NPY', () => {
  it('round-trips float64 and float32 tensors of any rank', () => {
    for (const t of [
      randomMatrix(3, 4, 1),
      randomMatrix(2, 5, 2).astype('float32'),
      Tensor.from([7]).reshape([]),
      Tensor.zeros([0, 3]),
    ]) {
      const back = readNpy(writeNpy(t));
      expect(back.dtype).toBe(t.dtype);
      expect(back.shape).toEqual(t.shape);
      expect(Array.from(back.data)).toEqual(Array.from(t.data));
    }
    const asF32 = readNpy(writeNpy(Tensor.from([1.5, 2.25], [2]), 'float32'));
    expect(asF32.dtype).toBe('float32');
    expect(Array.from(asF32.data)).toEqual([1.5, 2.25]);
  });

  it('writes the numpy 2 header: 64-byte aligned data, growth padding, python tuple repr', () => {
    const b = writeNpy(Tensor.zeros([2, 3]));
    expect(Array.from(b.subarray(0, 8))).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const h = header(b);
    expect(h.startsWith("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }")).toBe(true);
    expect(h.endsWith('\n')).toBe(true);
    expect((10 + h.length) % 64).toBe(0);
    expect(header(writeNpy(Tensor.zeros([5], 'float32')))).toContain("'shape': (5,)");
    expect(header(writeNpy(Tensor.zeros([])))).toContain("'shape': ()");
  });

  it.skipIf(!hasNumpy)('is byte-identical to files numpy writes, and reads them back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flatrank-npy-'));
    try {
      const py = `
import numpy as np
np.save('${dir}/a.npy', (np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 7.5) / 3)
np.save('${dir}/b.npy', np.arange(10, dtype=np.float32).reshape(2, 5) * 0.1)
np.save('${dir}/f.npy', np.asfortranarray(np.ones((3, 2))))
np.save('${dir}/i.npy', np.arange(4, dtype=np.int32))
`;
      const r = spawnSync('python3', ['-c', py], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const a = Tensor.zeros([2, 3, 4]);
      for (let i = 0; i < 24; i++) a.data[i] = (i - 7.5) / 3;
      const b = Tensor.zeros([2, 5], 'float32');
      for (let i = 0; i < 10; i++) b.data[i] = Math.fround(Math.fround(i) * Math.fround(0.1));
      const fileA = readFileSync(join(dir, 'a.npy'));
      const fileB = readFileSync(join(dir, 'b.npy'));
      expect(Buffer.from(writeNpy(a)).equals(fileA)).toBe(true);
      expect(Buffer.from(writeNpy(b)).equals(fileB)).toBe(true);
      expect(Array.from(readNpy(fileA, 'a.npy').data)).toEqual(Array.from(a.data));
      expect(readNpy(fileB, 'b.npy').shape).toEqual([2, 5]);
      expect(() => readNpy(readFileSync(join(dir, 'f.npy')), 'f.npy')).toThrow(
        /f\.npy: fortran_order True is not supported/,
      );
      expect(() => readNpy(readFileSync(join(dir, 'i.npy')), 'i.npy')).toThrow(
        /i\.npy: dtype "<i4" is not supported; allowed: descr '<f4'/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads big-endian floats by swapping bytes', () => {
    const payload = new Uint8Array(16);
    const v = new DataView(payload.buffer);
    v.setFloat64(0, 1.25, false);
    v.setFloat64(8, -3, false);
    const t = readNpy(npyWith("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", payload));
    expect(Array.from(t.data)).toEqual([1.25, -3]);
  });

  it('rejects other dtypes, Fortran order, truncation and junk with DataError naming the file', () => {
    const good = writeNpy(randomMatrix(3, 3, 1));
    const err = (bytes: Uint8Array): DataError => {
      try {
        readNpy(bytes, 'k.npy');
      } catch (e) {
        return e as DataError;
      }
      throw new Error('expected a DataError');
    };
    const truncated = err(good.subarray(0, good.length - 1));
    expect(truncated).toBeInstanceOf(DataError);
    expect(truncated.file).toBe('k.npy');
    expect(truncated.message).toMatch(
      /^k\.npy: truncated NPY data: shape \(3, 3\) float64 needs 72 bytes, file has 71/,
    );
    expect(err(good.subarray(0, 40)).message).toMatch(/truncated NPY header/);
    expect(err(new Uint8Array([1, 2, 3])).message).toMatch(/not an NPY file/);
    expect(
      err(npyWith("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8))).message,
    ).toMatch(/dtype "<i8" is not supported/);
    expect(
      err(npyWith("{'descr': '<f8', 'fortran_order': True, 'shape': (1,), }", new Uint8Array(8))).message,
    ).toMatch(/fortran_order True/);
    expect(err(npyWith("{'descr': '<f8', 'shape': (1,), }", new Uint8Array(8))).message).toMatch(
      /malformed NPY header/,
    );
    expect(
      err(npyWith("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(16))).message,
    ).toMatch(/8 unexpected trailing bytes/);
    expect(() => writeNpy(randomMatrix(2, 2), 'int32' as never)).toThrow(ValidationError);
  });
});

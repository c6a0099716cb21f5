import { describe, expect, it } from 'vitest';
import { ShapeError, ValidationError } from '@flatrank/protocol';
import { Tensor, createRng } from '../src/index.js';

describe('Tensor', () => {
  it('stores row-major data and indexes it', () => {
    const t = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(t.dtype).toBe('float64');
    expect(t.rank).toBe(2);
    expect(t.size).toBe(6);
    expect(t.get(1, 0)).toBe(4);
    expect(t.get(0, 2)).toBe(3);
    t.set(9, 1, 2);
    expect(t.data[5]).toBe(9);
  });

  it('infers the shape of nested rows and converts dtypes', () => {
    const t = Tensor.from(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      undefined,
      'float32',
    );
    expect(t.shape).toEqual([3, 2]);
    expect(t.data).toBeInstanceOf(Float32Array);
    const d = t.astype('float64');
    expect(d.data).toBeInstanceOf(Float64Array);
    expect(Array.from(d.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t.toArray()).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
  });

  it('reshape shares data; clone does not', () => {
    const t = Tensor.zeros([2, 3]);
    const r = t.reshape([3, 2]);
    r.set(7, 2, 1);
    expect(t.get(1, 2)).toBe(7);
    const c = t.clone();
    c.set(1, 0, 0);
    expect(t.get(0, 0)).toBe(0);
  });

  it('rejects bad shapes, sizes, indices and dtypes with typed errors', () => {
    expect(() => new Tensor(new Float64Array(5), [2, 3])).toThrow(ShapeError);
    expect(() => Tensor.zeros([2, -1])).toThrow(ShapeError);
    expect(() => Tensor.zeros([2.5])).toThrow(/non-negative integer/);
    expect(() => Tensor.zeros([2, 2]).get(2, 0)).toThrow(ShapeError);
    expect(() => Tensor.zeros([2, 2]).get(0)).toThrow(/rank 2/);
    expect(() => Tensor.zeros([2], 'int8' as never)).toThrow(ValidationError);
    expect(() => Tensor.from([[1, 2], [3]])).toThrow(ShapeError);
    expect(() => Tensor.zeros([2, 3]).reshape([4, 2])).toThrow(ShapeError);
  });
});

describe('createRng', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const xa = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xa);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xa);
  });

  it('has the right moments: uniform mean 1/2, normal mean 0 and variance 1, ints in range', () => {
    const r = createRng(7);
    const N = 20000;
    let su = 0;
    let sn = 0;
    let sn2 = 0;
    const counts = new Array(5).fill(0);
    for (let i = 0; i < N; i++) {
      const u = r.next();
      expect(u >= 0 && u < 1).toBe(true);
      su += u;
      const z = r.normal();
      sn += z;
      sn2 += z * z;
      counts[r.int(5)]++;
    }
    expect(su / N).toBeCloseTo(0.5, 1);
    expect(Math.abs(sn / N)).toBeLessThan(0.03);
    expect(sn2 / N).toBeGreaterThan(0.95);
    expect(sn2 / N).toBeLessThan(1.05);
    for (const c of counts) expect(Math.abs(c / N - 0.2)).toBeLessThan(0.02);
  });

  it('rejects non-integer seeds and bad int bounds', () => {
    expect(() => createRng(1.5)).toThrow(ValidationError);
    expect(() => createRng(1).int(0)).toThrow(ValidationError);
  });
});

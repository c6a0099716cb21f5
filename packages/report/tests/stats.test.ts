import { describe as suite, expect, it } from 'vitest';
import { describe, ratio } from '../src/stats.js';

suite('describe', () => {
  it('computes mean and sample std (n - 1)', () => {
    const s = describe([0.9, 0.92, 0.94]);
    expect(s.n).toBe(3);
    expect(s.mean).toBeCloseTo(0.92, 12);
    expect(s.std).toBeCloseTo(0.02, 12);
    expect(s.min).toBe(0.9);
    expect(s.max).toBe(0.94);
  });
  it('has no std for one value and nothing for none; skips null and NaN', () => {
    expect(describe([0.5])).toEqual({ n: 1, mean: 0.5, std: null, min: 0.5, max: 0.5 });
    expect(describe([])).toEqual({ n: 0, mean: null, std: null, min: null, max: null });
    expect(describe([null, Number.NaN, 2, 4]).mean).toBe(3);
  });
  it('ratio refuses missing or non-positive denominators', () => {
    expect(ratio(4, 2)).toBe(2);
    expect(ratio(4, 0)).toBeNull();
    expect(ratio(null, 2)).toBeNull();
  });
});

// The bench folder's statistics (bench/lib/stats.ts): medians and spreads over rounds, and the order
// in which peers take turns.
import { describe, expect, test } from 'vitest';
import { median, pairedRatios, roundOrder, significant, spread } from '../bench/lib/stats.js';

describe('median and spread', () => {
  test('median of odd and even lengths, unsorted input left alone', () => {
    const xs = [5, 1, 3];
    expect(median(xs)).toBe(3);
    expect(xs).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(() => median([])).toThrow(RangeError);
  });

  test('spread gives median, min, max, the relative range and the count', () => {
    expect(spread([10, 12, 8, 11])).toEqual({ median: 10.5, min: 8, max: 12, relativeRange: 4 / 10.5, n: 4 });
    expect(spread([0, 0])).toEqual({ median: 0, min: 0, max: 0, relativeRange: 0, n: 2 });
  });

  test('paired ratios are per round, and need lists of equal length', () => {
    expect(pairedRatios([10, 20, 30], [5, 40, 30])).toEqual([2, 0.5, 1]);
    expect(() => pairedRatios([1, 2], [1])).toThrow(/equal length/);
  });

  test('significant rounds to significant digits', () => {
    expect(significant(1234.567)).toBe(1235);
    expect(significant(0.000123456, 3)).toBe(0.000123);
    expect(significant(0)).toBe(0);
  });
});

describe('roundOrder', () => {
  test('two peers alternate', () => {
    const rounds = [0, 1, 2, 3].map((r) => roundOrder(['pytorch', 'native'], r).join(' '));
    expect(rounds).toEqual(['pytorch native', 'native pytorch', 'pytorch native', 'native pytorch']);
  });

  test('over n rounds every peer runs once in every position', () => {
    const peers = ['a', 'b', 'c', 'd'];
    const orders = peers.map((_, r) => roundOrder(peers, r));
    for (let pos = 0; pos < peers.length; pos++)
      expect(new Set(orders.map((o) => o[pos])).size).toBe(peers.length);
    for (const o of orders) expect([...o].sort()).toEqual(peers);
    expect(roundOrder(peers, 5)).toEqual(roundOrder(peers, 1));
  });

  test('no peers, and bad rounds', () => {
    expect(roundOrder([], 3)).toEqual([]);
    expect(() => roundOrder(['a'], -1)).toThrow(RangeError);
    expect(() => roundOrder(['a'], 1.5)).toThrow(RangeError);
  });
});

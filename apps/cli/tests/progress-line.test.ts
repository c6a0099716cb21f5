// What `flatrank train` prints while a trial runs: one line per event a person watches for.
import { describe, expect, it } from 'vitest';
import type { TrialEvent } from '@flatrank/protocol';
import { progressLine } from '../src/commands/train.js';

describe('progressLine', () => {
  it('prints an allocation: policy, budget, achieved ratios and every layer rank', () => {
    const e: TrialEvent = {
      type: 'allocation',
      allocation: {
        policy: 'alloc-error:params=4.28',
        budget: { kind: 'params', ratio: 4.28 },
        achieved: { params: 4.2913, macs: 3.9 },
        layers: [
          { name: 'conv2', ranks: [6, 8], error: 0.2 },
          { name: 'conv3', ranks: [12, 16], error: 0.3 },
        ],
        measured: null,
      },
    };
    expect(progressLine(e)).toBe(
      'allocation alloc-error:params=4.28: budget params 4.28x, achieved params 4.29x macs 3.90x; ranks conv2 [6,8] conv3 [12,16]',
    );
  });

  it('an allocation without a budget (trp) prints no budget', () => {
    const line = progressLine({
      type: 'allocation',
      allocation: {
        policy: 'trp',
        budget: null,
        achieved: { params: 3, macs: 2.5 },
        layers: [],
        measured: null,
      },
    });
    expect(line).toBe('allocation trp: achieved params 3.00x macs 2.50x');
  });
});

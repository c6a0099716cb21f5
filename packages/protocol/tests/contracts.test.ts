import { describe, expect, it } from 'vitest';
import {
  CHECKPOINT_FILES,
  CHECKPOINT_FORMAT,
  RANK_POLICY_KINDS,
  REQUIRED_CHECKPOINT_FILES,
  isTerminalEvent,
  rankPolicyLabel,
  rankPolicySchema,
  type RankPolicy,
  type TrialEvent,
} from '../src/index.js';

describe('rank-policy label', () => {
  // These are stored values (the rank_policy column of every committed database): they must not change.
  const cases: Array<[RankPolicy, string]> = [
    [{ kind: 'rank', rank: 8 }, 'rank=8'],
    [{ kind: 'ranks', ranks: [4, 8] }, 'ranks=4x8'],
    [{ kind: 'fraction', fraction: 0.5 }, 'fraction=0.5'],
    [{ kind: 'ratio', ratio: 4 }, 'ratio=4'],
    [{ kind: 'ratio', ratio: 2.5 }, 'ratio=2.5'],
    [{ kind: 'model-ratio', ratio: 4 }, 'model-ratio=4'],
    [{ kind: 'energy', threshold: 0.9 }, 'energy=0.9'],
    [{ kind: 'vbmf' }, 'vbmf'],
    [{ kind: 'allocate', by: 'error', target: { params: 4 } }, 'alloc-error:params=4'],
  ];

  it.each(cases)('%j -> %s', (policy, label) => {
    expect(rankPolicyLabel(policy)).toBe(label);
  });

  it('spells every allocation by criterion, basis and ratio', () => {
    expect(rankPolicyLabel({ kind: 'allocate', by: 'vbmf', target: { macs: 2.5 } })).toBe(
      'alloc-vbmf:macs=2.5',
    );
    expect(rankPolicyLabel({ kind: 'allocate', by: 'sensitivity', target: { params: 3 } })).toBe(
      'alloc-sensitivity:params=3',
    );
  });

  it('covers every kind of the schema, each with its own spelling', () => {
    const kinds = rankPolicySchema.options.map((o) => o.shape.kind.value);
    expect([...kinds].sort()).toEqual([...RANK_POLICY_KINDS].sort());
    expect(new Set(cases.map(([p]) => p.kind))).toEqual(new Set(RANK_POLICY_KINDS));
    expect(new Set(cases.map(([, l]) => l)).size).toBe(cases.length);
  });
});

describe('checkpoint layout', () => {
  it('names the format and the files readers depend on', () => {
    expect(CHECKPOINT_FORMAT).toBe('flatrank-checkpoint-1');
    expect(REQUIRED_CHECKPOINT_FILES).toEqual(['flatrank.json', 'model.json', 'weights.bin']);
    expect(Object.values(CHECKPOINT_FILES)).toHaveLength(new Set(Object.values(CHECKPOINT_FILES)).size);
  });
});

describe('allocation event', () => {
  it('is plain JSON (it crosses IPC and Redis unchanged) and does not end the attempt', () => {
    const event: TrialEvent = {
      type: 'allocation',
      allocation: {
        policy: rankPolicyLabel({ kind: 'model-ratio', ratio: 4 }),
        budget: { kind: 'params', ratio: 4 },
        achieved: { params: 3.98, macs: 3.1 },
        layers: [{ name: 'conv2', ranks: [3, 8], error: 0.21, measured: { curve: [[2, 0.4]] } }],
        measured: { validation: { size: 5000, seed: 0 }, cacheKey: 'abc' },
      },
    };
    expect(JSON.parse(JSON.stringify(event))).toEqual(event);
    expect(isTerminalEvent(event)).toBe(false);
  });
});

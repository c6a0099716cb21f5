import { describe, expect, it } from 'vitest';
import {
  ValidationError,
  canonicalJson,
  checkTrialConfigRules,
  resolveTrialConfig,
  trialKey,
  type TrialConfig,
} from '../src/index.js';

const base = {
  model: 'lenet5',
  dataset: { name: 'mnist' },
  training: { epochs: 2, batchSize: 64, lr: 0.05 },
  method: 'distort',
  compression: { decomposition: 'tucker2', rank: { kind: 'fraction', fraction: 0.5 } },
  distortion: { interval: 200 },
  seed: 1,
};

describe('trial config', () => {
  it('fills defaults and normalises inapplicable fields', () => {
    const c = resolveTrialConfig(base);
    expect(c.training.optimizer).toEqual({ name: 'sgd', momentum: 0.9, nesterov: false });
    expect(c.compression?.scheme).toBeNull();
    expect(c.compression?.tucker.algorithm).toBe('hooi');
    expect(c.start).toEqual({ kind: 'scratch' });
  });

  it('gives the same key for the same config whatever the key order', () => {
    const reordered = { seed: 1, distortion: { interval: 200 }, method: 'distort', ...base };
    expect(trialKey(resolveTrialConfig(reordered))).toBe(trialKey(resolveTrialConfig(base)));
    expect(trialKey(resolveTrialConfig({ ...base, seed: 2 }))).not.toBe(trialKey(resolveTrialConfig(base)));
    expect(trialKey(resolveTrialConfig(base))).toMatch(/^[0-9a-f]{64}$/);
  });

  it('lowering order: hwc is the default and leaves the key unchanged, chw only for lowered svd / tiled-svd', () => {
    const tiled = { decomposition: 'tiled-svd', tile: [8, 8], rank: { kind: 'rank', rank: 2 } };
    const plain = resolveTrialConfig({ ...base, compression: tiled });
    const hwc = resolveTrialConfig({ ...base, compression: { ...tiled, order: 'hwc' } });
    const chw = resolveTrialConfig({ ...base, compression: { ...tiled, order: 'chw' } });
    expect(plain.compression).not.toHaveProperty('order');
    expect(hwc.compression).not.toHaveProperty('order');
    expect(trialKey(hwc)).toBe(trialKey(plain));
    expect(chw.compression?.order).toBe('chw');
    expect(trialKey(chw)).not.toBe(trialKey(plain));
    const svd = { decomposition: 'svd', rank: { kind: 'rank', rank: 2 } };
    expect(resolveTrialConfig({ ...base, compression: { ...svd, order: 'chw' } }).compression?.order).toBe(
      'chw',
    );
    expect(() =>
      resolveTrialConfig({ ...base, compression: { ...svd, scheme: 'spatial', order: 'chw' } }),
    ).toThrow(/config\.compression\.order: chw/);
    expect(() => resolveTrialConfig({ ...base, compression: { ...base.compression, order: 'chw' } })).toThrow(
      /config\.compression\.order/,
    );
    expect(() => resolveTrialConfig({ ...base, compression: { ...svd, order: 'cwh' } })).toThrow(
      /allowed: hwc, chw/,
    );
  });

  it('sorts keys recursively in canonical JSON', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 2 } })).toBe(
      '{"a":{"c":2,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('names the field and the allowed values on bad input', () => {
    expect(() => resolveTrialConfig({ ...base, model: 'alexnet' })).toThrow(
      /config\.model: unknown value "alexnet"; allowed: lenet5/,
    );
    expect(() =>
      resolveTrialConfig({ ...base, compression: { decomposition: 'qr', rank: { kind: 'rank', rank: 2 } } }),
    ).toThrow(/config\.compression\.decomposition: unknown value "qr"; allowed: svd, tiled-svd, tucker2, cp/);
    expect(() => resolveTrialConfig({ ...base, distortion: null })).toThrow(ValidationError);
    expect(() => resolveTrialConfig({ ...base, method: 'baseline' })).toThrow(/compression: must be null/);
    expect(() =>
      resolveTrialConfig({
        ...base,
        compression: { decomposition: 'tiled-svd', rank: { kind: 'rank', rank: 2 } },
      }),
    ).toThrow(/tile: is required/);
    try {
      resolveTrialConfig({ ...base, seed: -1 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ValidationError);
      expect((e as ValidationError).field).toBe('config.seed');
    }
  });
});

/** The ValidationError resolveTrialConfig throws for `input` (fails the test when none is thrown). */
function refusal(input: unknown): ValidationError {
  try {
    resolveTrialConfig(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return e as ValidationError;
  }
  return expect.unreachable('the config was accepted');
}

describe('rules between fields', () => {
  const post = {
    ...base,
    method: 'posttrain',
    training: { ...base.training, epochs: 0 },
    compression: { decomposition: 'svd', rank: { kind: 'ratio', ratio: 2 } },
    distortion: null,
  };

  it('posttrain trains nothing: epochs must be 0', () => {
    expect(resolveTrialConfig(post).training.epochs).toBe(0);
    const e = refusal({ ...post, training: { ...post.training, epochs: 2 } });
    expect(e.field).toBe('config.training.epochs');
    expect(e.message).toBe(
      "config.training.epochs: must be 0 for method 'posttrain' (it decomposes the start model and trains nothing; use method 'finetune' to train after decomposition), got 2",
    );
    expect(e.context['issues']).toHaveLength(1);
  });

  it('finetune with tiled-svd is refused; distort and posttrain take it', () => {
    const tiled = { decomposition: 'tiled-svd', tile: [8, 8], rank: { kind: 'rank', rank: 2 } };
    const e = refusal({ ...post, method: 'finetune', training: base.training, compression: tiled });
    expect(e.field).toBe('config.compression.decomposition');
    expect(e.message).toMatch(
      /^config\.compression\.decomposition: 'tiled-svd' cannot be fine-tuned .*allowed with method 'finetune': svd, tucker2, cp/,
    );
    expect(resolveTrialConfig({ ...post, compression: tiled }).compression?.scheme).toBe('lowered');
    expect(resolveTrialConfig({ ...base, compression: tiled }).method).toBe('distort');
  });

  it('tiled-svd cuts tiles from the lowered matrix: another scheme is refused, not silently replaced', () => {
    const tiled = { decomposition: 'tiled-svd', tile: [8, 8], rank: { kind: 'rank', rank: 2 } };
    expect(
      resolveTrialConfig({ ...post, compression: { ...tiled, scheme: 'lowered' } }).compression?.scheme,
    ).toBe('lowered');
    const e = refusal({ ...post, compression: { ...tiled, scheme: 'spatial' } });
    expect(e.field).toBe('config.compression.scheme');
    expect(e.message).toMatch(/must be 'lowered' \(or absent\) for decomposition 'tiled-svd'.*got 'spatial'/);
  });

  it('cp takes no fully connected layers', () => {
    const cp = { decomposition: 'cp', rank: { kind: 'rank', rank: 4 } };
    expect(resolveTrialConfig({ ...post, compression: cp }).compression?.layers).toEqual({
      kind: 'all-but-first',
      includeFc: false,
    });
    const e = refusal({
      ...post,
      compression: { ...cp, layers: { kind: 'all-but-first', includeFc: true } },
    });
    expect(e.field).toBe('config.compression.layers.includeFc');
    expect(e.message).toMatch(
      /must be false for decomposition 'cp'.*allowed with includeFc: svd, tiled-svd, tucker2/,
    );
    const svd = { ...post.compression, layers: { kind: 'all-but-first', includeFc: true } };
    expect(resolveTrialConfig({ ...post, compression: svd }).compression?.layers).toMatchObject({
      includeFc: true,
    });
  });

  it('reports every broken rule in context, the first one in the message', () => {
    const e = refusal({
      ...post,
      method: 'finetune',
      training: { ...post.training, epochs: 1 },
      compression: {
        decomposition: 'tiled-svd',
        tile: [4, 4],
        scheme: 'input',
        rank: { kind: 'rank', rank: 1 },
      },
    });
    expect(e.message).toMatch(/^config\.compression\.scheme: .*\(and 1 more problem\)$/);
    expect((e.context['issues'] as Array<{ path: string }>).map((i) => i.path)).toEqual([
      'config.compression.scheme',
      'config.compression.decomposition',
    ]);
  });

  it('checkTrialConfigRules applies the same rules to an already typed config, with the same message', () => {
    const good = resolveTrialConfig(post);
    expect(() => checkTrialConfigRules(good)).not.toThrow();
    const trains: TrialConfig = { ...good, training: { ...good.training, epochs: 2 } };
    const viaSchema = refusal(trains);
    let direct: unknown;
    try {
      checkTrialConfigRules(trains);
    } catch (e) {
      direct = e;
    }
    expect(direct).toBeInstanceOf(ValidationError);
    expect((direct as ValidationError).message).toBe(viaSchema.message);
    expect((direct as ValidationError).field).toBe(viaSchema.field);
    expect(() => checkTrialConfigRules(trains, 'trials[3].config')).toThrow(
      /^trials\[3\]\.config\.training\.epochs: must be 0/,
    );
  });
});

describe('rank policy allocate', () => {
  const started = { ...base, start: { kind: 'checkpoint', name: 'base' } };
  const withRank = (rank: unknown, c: object = base) => ({
    ...c,
    compression: { decomposition: 'tucker2', rank },
  });

  it('leaves the keys of configs without it unchanged (keys computed before the policy existed)', () => {
    expect(trialKey(resolveTrialConfig(base))).toBe(
      'a08e6c604be5ec05dcd3aa89d2516a77437c5c89643617685857c5a77aeb3a39',
    );
    const modelRatio = {
      model: 'resnet20',
      dataset: { name: 'fashion-mnist' },
      training: { epochs: 3 },
      method: 'finetune',
      start: { kind: 'checkpoint', name: 'base' },
      compression: { decomposition: 'svd', rank: { kind: 'model-ratio', ratio: 4 } },
      seed: 0,
    };
    expect(trialKey(resolveTrialConfig(modelRatio))).toBe(
      'b2eb57954f16187ba9854272c31084e606c5d38455a77d7f928a6650f963b75e',
    );
  });

  it('takes a params or macs target; by sensitivity is filled with its defaults, sorted', () => {
    const e = resolveTrialConfig(withRank({ kind: 'allocate', by: 'error', target: { params: 4 } }));
    expect(e.compression?.rank).toEqual({ kind: 'allocate', by: 'error', target: { params: 4 } });
    const s = resolveTrialConfig(
      withRank({ kind: 'allocate', by: 'sensitivity', target: { macs: 2 } }, started),
    );
    expect(s.compression?.rank).toEqual({
      kind: 'allocate',
      by: 'sensitivity',
      target: { macs: 2 },
      sensitivity: {
        candidates: [1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4],
        validationSize: 1000,
        validationSeed: 0,
      },
    });
    const shuffled = resolveTrialConfig(
      withRank(
        {
          kind: 'allocate',
          by: 'sensitivity',
          target: { macs: 2 },
          sensitivity: { candidates: [0.75, 0.5, 0.375, 0.25, 0.125, 0.0625, 0.5] },
        },
        started,
      ),
    );
    expect(trialKey(shuffled)).toBe(trialKey(s));
  });

  it('refuses bad targets and misplaced options, naming the field', () => {
    const bad = (rank: unknown, c: object = base): string => {
      try {
        resolveTrialConfig(withRank(rank, c));
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad({ kind: 'allocate', by: 'error', target: { params: 1 } })).toMatch(
      /^config\.compression\.rank\.target\.params: must be a whole-model compression ratio > 1/,
    );
    expect(bad({ kind: 'allocate', by: 'error', target: { params: 2, macs: 2 } })).toMatch(
      /^config\.compression\.rank\.target: give exactly one of params: X or macs: X/,
    );
    expect(bad({ kind: 'allocate', by: 'error', target: {} })).toMatch(/rank\.target: give exactly one/);
    expect(bad({ kind: 'allocate', by: 'size', target: { params: 2 } })).toMatch(
      /rank\.by: unknown value "size"; allowed: error, sensitivity, vbmf/,
    );
    expect(
      bad({ kind: 'allocate', by: 'error', target: { params: 2 }, sensitivity: { validationSize: 10 } }),
    ).toMatch(/^config\.compression\.rank\.sensitivity: is only allowed with by: sensitivity/);
    expect(bad({ kind: 'allocate', by: 'sensitivity', target: { params: 2 } })).toMatch(
      /^config\.compression\.rank\.by: sensitivity measures accuracy curves of a trained model: it needs start/,
    );
    expect(
      bad(
        { kind: 'allocate', by: 'sensitivity', target: { params: 2 }, sensitivity: { candidates: [0] } },
        started,
      ),
    ).toMatch(/rank\.sensitivity\.candidates\[0\]/);
  });
});

describe('method trp', () => {
  const trp = {
    ...base,
    method: 'trp',
    compression: { decomposition: 'svd', scheme: 'spatial', rank: { kind: 'energy', threshold: 0.95 } },
    distortion: null,
    trp: { interval: 20, lambda: 3e-4 },
  };

  it('resolves with the energy rank rule and its own block; nuclearEvery defaults to step', () => {
    const c = resolveTrialConfig(trp);
    expect(c.trp).toEqual({ interval: 20, lambda: 3e-4, nuclearEvery: 'step' });
    expect(c.compression?.rank).toEqual({ kind: 'energy', threshold: 0.95 });
    expect(c.compression?.scheme).toBe('spatial');
    const lowered = resolveTrialConfig({ ...trp, compression: { ...trp.compression, scheme: undefined } });
    expect(lowered.compression?.scheme).toBe('lowered');
    expect(trialKey(lowered)).not.toBe(trialKey(c));
    const atProjection = resolveTrialConfig({ ...trp, trp: { ...trp.trp, nuclearEvery: 'projection' } });
    expect(trialKey(atProjection)).not.toBe(trialKey(c));
  });

  it('leaves the configs and keys of the other methods as they were', () => {
    // Keys computed before the method existed: the trp block is absent, not null, elsewhere.
    const distort = resolveTrialConfig(base);
    expect(distort).not.toHaveProperty('trp');
    expect(trialKey(distort)).toBe('a08e6c604be5ec05dcd3aa89d2516a77437c5c89643617685857c5a77aeb3a39');
    const baseline = resolveTrialConfig({ ...base, method: 'baseline', compression: null, distortion: null });
    expect(trialKey(baseline)).toBe('c890490d27c628e3e781d98b25de4cc0420a24161b95520c855cb1ddd709747c');
  });

  it('needs its block, and the block belongs to trp alone', () => {
    const missing = refusal({ ...trp, trp: undefined });
    expect(missing.field).toBe('config.trp');
    expect(missing.message).toBe("config.trp: is required for method 'trp'");
    const elsewhere = refusal({ ...base, trp: trp.trp });
    expect(elsewhere.field).toBe('config.trp');
    expect(elsewhere.message).toBe("config.trp: is only allowed for method 'trp'");
    expect(refusal({ ...trp, distortion: { interval: 200 } }).field).toBe('config.distortion');
  });

  it('names the trp field that is out of range', () => {
    expect(refusal({ ...trp, trp: { lambda: 1e-4 } }).field).toBe('config.trp.interval');
    expect(refusal({ ...trp, trp: { interval: 0, lambda: 1e-4 } }).field).toBe('config.trp.interval');
    expect(refusal({ ...trp, trp: { interval: 2.5, lambda: 1e-4 } }).field).toBe('config.trp.interval');
    const negative = refusal({ ...trp, trp: { interval: 20, lambda: -1 } });
    expect(negative.field).toBe('config.trp.lambda');
    expect(refusal({ ...trp, trp: { interval: 20 } }).field).toBe('config.trp.lambda');
    const schedule = refusal({ ...trp, trp: { ...trp.trp, nuclearEvery: 'epoch' } });
    expect(schedule.field).toBe('config.trp.nuclearEvery');
    expect(schedule.message).toMatch(/unknown value "epoch"; allowed: step, projection/);
    expect(refusal({ ...trp, trp: { ...trp.trp, energy: 0.9 } }).message).toMatch(
      /^config\.trp: unknown field energy/,
    );
    const threshold = refusal({
      ...trp,
      compression: { ...trp.compression, rank: { kind: 'energy', threshold: 1.5 } },
    });
    expect(threshold.field).toBe('config.compression.rank.threshold');
  });

  it('projects onto a plain SVD whose rank comes from the energy rule', () => {
    const tucker = refusal({
      ...trp,
      compression: { decomposition: 'tucker2', rank: { kind: 'energy', threshold: 0.9 } },
    });
    expect(tucker.field).toBe('config.compression.decomposition');
    expect(tucker.message).toMatch(/must be 'svd' for method 'trp'.*got 'tucker2'/);
    const tiled = refusal({
      ...trp,
      compression: { decomposition: 'tiled-svd', tile: [8, 8], rank: { kind: 'energy', threshold: 0.9 } },
    });
    expect(tiled.field).toBe('config.compression.decomposition');
    const ratio = refusal({ ...trp, compression: { ...trp.compression, rank: { kind: 'ratio', ratio: 4 } } });
    expect(ratio.field).toBe('config.compression.rank');
    expect(ratio.message).toMatch(
      /must be \{kind: energy, threshold: e\} for method 'trp'.*got kind 'ratio'/,
    );
    expect(refusal({ ...trp, compression: null }).field).toBe('config.compression');
    const good = resolveTrialConfig(trp);
    expect(() => checkTrialConfigRules({ ...good, trp: undefined })).toThrow(/^config\.trp: is required/);
  });
});

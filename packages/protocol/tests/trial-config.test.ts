import { describe, expect, it } from 'vitest';
import { ValidationError, canonicalJson, resolveTrialConfig, trialKey } from '../src/index.js';

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

// The trial-config rules live in the protocol's schema; the spec layer reports a refused grid point
// as a SpecError at the line that set the field, with the protocol's own message.
import { describe, expect, it } from 'vitest';
import { resolveTrialConfig, SpecError, ValidationError } from '@flatrank/protocol';
import { expandSpec, parseSpecText } from '../src/index.js';

/** The protocol's message for a config (what flatrank train prints after "config.<field>: "). */
function protocolMessage(config: unknown): string {
  try {
    resolveTrialConfig(config);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as ValidationError).message.replace(/^config\.[^:]*: /, '');
  }
  return expect.unreachable('the config was accepted');
}

function specRefusal(text: string): SpecError {
  try {
    expandSpec(parseSpecText(text, 'rules.yaml'));
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return e as SpecError;
  }
  return expect.unreachable('the spec was accepted');
}

const HEAD = `name: rules
model: lenet5
dataset: mnist
training: { epochs: 1 }
methods:
  baseline: {}
`;

describe('trial-config rules seen from a spec', () => {
  it('posttrain with epochs: the line of the method training.epochs', () => {
    const e = specRefusal(`${HEAD}  post:
    method: posttrain
    start: baseline
    compression: { decomposition: svd, rank: 2 }
    training:
      epochs: 3
`);
    const expected = protocolMessage({
      model: 'lenet5',
      dataset: { name: 'mnist' },
      training: { epochs: 3 },
      method: 'posttrain',
      compression: { decomposition: 'svd', rank: { kind: 'rank', rank: 2 } },
    });
    expect(expected).toMatch(/^must be 0 for method 'posttrain'/);
    expect(e.field).toBe('methods.post.training.epochs');
    expect(e.message).toBe(
      `rules.yaml:12: methods.post.training.epochs: grid point "post": training.epochs: ${expected}`,
    );
    expect(e.context['line']).toBe(12);
    expect(e.cause).toBeInstanceOf(ValidationError);
  });

  it('finetune with tiled-svd: the line of the method compression', () => {
    const e = specRefusal(`${HEAD}  ft:
    method: finetune
    start: baseline
    compression: { decomposition: tiled-svd, tile: [5, 5], rank: 1 }
`);
    expect(e.field).toBe('methods.ft.compression.decomposition');
    expect(e.message).toMatch(
      /^rules\.yaml:10: methods\.ft\.compression\.decomposition: grid point "ft": compression\.decomposition: 'tiled-svd' cannot be fine-tuned/,
    );
  });

  it('a rule broken through a grid axis points at the field the point cannot take', () => {
    const e = specRefusal(`${HEAD}  ft:
    method: finetune
    start: baseline
    compression: { tile: [5, 5], rank: 1 }
    grid:
      decomposition: [svd, tiled-svd]
`);
    expect(e.field).toBe('methods.ft.compression.tile');
    expect(e.message).toMatch(
      /^rules\.yaml:10: methods\.ft\.compression\.tile: grid point "ft decomposition=svd": compression\.tile: is only allowed for decomposition 'tiled-svd'/,
    );
  });

  it('cp over the fully connected layers: the line of the method layers.includeFc', () => {
    const e = specRefusal(`${HEAD}  cp:
    method: finetune
    start: baseline
    compression:
      decomposition: cp
      rank: 2
      layers: { kind: all-but-first, includeFc: true }
`);
    expect(e.field).toBe('methods.cp.compression.layers.includeFc');
    expect(e.message).toMatch(/^rules\.yaml:13: .*includeFc: must be false for decomposition 'cp'/);
  });

  it('trp over tucker2 or with a fixed rank: the line of the method compression field', () => {
    const tucker = specRefusal(`${HEAD}  trp:
    start: baseline
    compression: { decomposition: tucker2, rank: { kind: energy, threshold: 0.9 } }
    trp: { interval: 10, lambda: 0.001 }
`);
    expect(tucker.field).toBe('methods.trp.compression.decomposition');
    expect(tucker.message).toMatch(
      /^rules\.yaml:9: methods\.trp\.compression\.decomposition: grid point "trp": compression\.decomposition: must be 'svd' for method 'trp'/,
    );
    const ratio = specRefusal(`${HEAD}  trp:
    start: baseline
    compression: { decomposition: svd, rank: { kind: ratio, ratio: 4 } }
    trp: { interval: 10, lambda: 0.001 }
`);
    expect(ratio.field).toBe('methods.trp.compression.rank');
    expect(ratio.message).toMatch(
      /compression\.rank: must be \{kind: energy, threshold: e\} for method 'trp'/,
    );
  });
});

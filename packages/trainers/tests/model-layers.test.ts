// The decomposers' TF.js-free table of layer shapes (what spec-time checks plan against) must be
// exactly what the built TF.js models have, and plan the same targets and ranks as the engine.
import { beforeAll, describe, expect, test } from 'vitest';
import { Tensor } from '@flatrank/core';
import { modelLayers, planDecomposition, planModelCompression } from '@flatrank/decomposers';
import {
  DATASETS,
  MODELS,
  compressionSchema,
  type CompressionConfig,
  type DatasetName,
  type ModelName,
} from '@flatrank/protocol';
import { initBackend } from '../src/backend/index.js';
import { planCompression } from '../src/compression/index.js';
import { trainableParams } from '../src/compression/engine.js';
import { DATASET_INFO } from '../src/data/index.js';
import { buildModel, convLayers } from '../src/models/index.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

function built(model: ModelName, dataset: DatasetName) {
  const { imageShape, numClasses } = DATASET_INFO[dataset];
  return buildModel(model, { inputShape: imageShape, numClasses, seed: 0 });
}

describe('modelLayers (decomposers) equals the built TF.js models', () => {
  const cases = MODELS.flatMap((m) => DATASETS.map((d) => [m, d] as const));
  test.each(cases)('%s on %s', (model, dataset) => {
    const m = built(model, dataset);
    const fromTfjs = convLayers(m).map((l) => ({
      name: l.name,
      kind: l.kind,
      kernelShape: l.kernelShape,
      strides: l.strides,
      padding: l.padding,
      inputSize: l.inputShape,
      isFirst: l.isFirst,
    }));
    const trainable = trainableParams(m);
    m.dispose();
    const table = modelLayers(model, dataset);
    expect(table.map(({ trainableParams: _t, ...l }) => l)).toEqual(fromTfjs);
    // Every trainable weight belongs to one of these layers (the whole-model ratio's basis).
    expect(table.reduce((s, l) => s + l.trainableParams, 0)).toBe(trainable);
  });
});

describe('planModelCompression plans what the engine plans', () => {
  const comp = (c: Record<string, unknown>): CompressionConfig => compressionSchema.parse(c);
  const configs: Array<[ModelName, DatasetName, CompressionConfig]> = [
    ['lenet5', 'mnist', comp({ decomposition: 'svd', rank: { kind: 'rank', rank: 4 } })],
    ['resnet20', 'cifar10', comp({ decomposition: 'tucker2', rank: { kind: 'ratio', ratio: 3 } })],
    ['resnet8', 'fashion-mnist', comp({ decomposition: 'cp', rank: { kind: 'model-ratio', ratio: 4 } })],
    [
      'lenet5',
      'mnist',
      comp({
        decomposition: 'tiled-svd',
        tile: [2, 10],
        rank: { kind: 'rank', rank: 2 },
        layers: { kind: 'all-but-first', includeFc: true },
      }),
    ],
    [
      'resnet8',
      'cifar10',
      comp({
        decomposition: 'tucker2',
        rank: { kind: 'ranks', ranks: [4, 8] },
        layers: { kind: 'names', names: ['conv1', 's2b1_conv1', 'fc'] },
      }),
    ],
  ];
  configs.push(['lenet5', 'mnist', comp({ decomposition: 'svd', rank: { kind: 'rank', rank: 1e12 } })]);
  configs.push(['resnet20', 'cifar10', comp({ decomposition: 'svd', rank: { kind: 'ratio', ratio: 1e6 } })]);
  test.each(configs)('%s on %s: %j', (model, dataset, c) => {
    const m = built(model, dataset);
    const attempt = <T>(f: () => T): { value?: T; error?: Error } => {
      try {
        return { value: f() };
      } catch (e) {
        return { error: e as Error };
      }
    };
    const engine = attempt(() => planCompression(m, c, 0));
    m.dispose();
    const ours = attempt(() => planModelCompression(modelLayers(model, dataset), c));
    if (engine.error) {
      // Same class and code; our message adds the layer.
      expect(ours.error?.constructor).toBe(engine.error.constructor);
      expect((ours.error as { code?: string }).code).toBe((engine.error as { code?: string }).code);
      expect(ours.error!.message).toContain(engine.error.message);
      return;
    }
    expect(ours.error).toBeUndefined();
    const targets = engine.value!.targets;
    expect(ours.value!.map((p) => p.layer.name)).toEqual(targets.map((t) => t.layer.name));
    for (const [i, t] of targets.entries()) {
      const zeros = new Tensor(new Float32Array(t.kernelShape.reduce((a, b) => a * b, 1)), t.kernelShape);
      expect(ours.value![i]!.ranks).toEqual(planDecomposition(zeros, t.options).ranks);
    }
  });
});

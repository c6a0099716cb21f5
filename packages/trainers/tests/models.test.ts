import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { loadLayersModel, type LayersModel } from '@tensorflow/tfjs-layers';
import { UnknownNameError, ValidationError } from '@flatrank/protocol';
import { initBackend } from '../src/backend/index.js';
import { buildModel, convLayers, modelMacs, ShortcutA } from '../src/models/index.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

const cifar = { inputShape: [32, 32, 3] as [number, number, number], numClasses: 10, seed: 0 };

function trainableParams(m: LayersModel): number {
  return m.trainableWeights.reduce((a, w) => a + (w.shape as number[]).reduce((x, y) => x * y, 1), 0);
}

describe('parameter counts', () => {
  test.each([
    // [model, input, total (incl. BN moving stats), trainable]
    ['lenet5', [28, 28, 1], 61_706, 61_706],
    ['lenet5', [32, 32, 1], 61_706, 61_706],
    ['resnet8', [32, 32, 3], 75_770, 75_290], // 240 BN channels: 480 moving statistics
    ['resnet20', [32, 32, 3], 271_098, 269_722],
    ['resnet32', [32, 32, 3], 466_426, 464_154],
    ['resnet56', [32, 32, 3], 857_082, 853_018],
    ['vgg-small', [32, 32, 3], 4_663_690, 4_660_106], // 1,792 BN channels
  ] as const)('%s on %j: %i parameters', (name, inputShape, total, trainable) => {
    const m = buildModel(name, { inputShape: [...inputShape], numClasses: 10, seed: 0 });
    expect(m.countParams()).toBe(total);
    expect(trainableParams(m)).toBe(trainable);
    m.dispose();
  });

  test('the papers’ figures: ResNet-20 ~0.27 M, ResNet-32 ~0.46 M, ResNet-56 ~0.85 M, LeNet-5 ~61.7 k', () => {
    const around = (n: number, want: number) => expect(Math.abs(n - want) / want).toBeLessThan(0.02);
    around(trainableParams(buildModel('resnet20', cifar)), 0.27e6);
    around(trainableParams(buildModel('resnet32', cifar)), 0.46e6);
    around(trainableParams(buildModel('resnet56', cifar)), 0.85e6);
    around(
      trainableParams(buildModel('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 })),
      61.7e3,
    );
  });
});

describe('seeded initialisation', () => {
  const weights = (seed: number) =>
    buildModel('resnet8', { ...cifar, seed })
      .getWeights()
      .map((w) => Array.from(w.dataSync()));
  test('same seed, same weights; another seed, other weights', () => {
    const a = weights(7);
    expect(weights(7)).toEqual(a);
    const b = weights(8);
    expect(b[0]).not.toEqual(a[0]);
  });

  test('He-normal conv kernels (std ~ sqrt(2 / fan_in)), BN gamma 1 / beta 0', () => {
    const m = buildModel('resnet56', cifar);
    const k = m.getLayer('s3b5_conv2').getWeights()[0]!; // 3x3x64x64: fan_in 576
    const v = Array.from(k.dataSync());
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
    expect(Math.abs(mean)).toBeLessThan(0.005);
    // tfjs draws He-normal from a truncated normal: std within ~15 % of sqrt(2 / 576) = 0.059.
    expect(std).toBeGreaterThan(0.05);
    expect(std).toBeLessThan(0.062);
    const [gamma, beta] = m.getLayer('s3b5_bn2').getWeights();
    expect(Array.from(gamma!.dataSync()).every((x) => x === 1)).toBe(true);
    expect(Array.from(beta!.dataSync()).every((x) => x === 0)).toBe(true);
  });
});

describe('convLayers', () => {
  test('ResNet-20: 19 convs + fc, shapes, strides and multiply-adds', () => {
    const m = buildModel('resnet20', cifar);
    const ls = convLayers(m);
    expect(ls).toHaveLength(20);
    expect(ls.filter((l) => l.kind === 'conv')).toHaveLength(19);
    expect(ls[0]).toMatchObject({
      name: 'conv1',
      kind: 'conv',
      kernelShape: [3, 3, 3, 16],
      isFirst: true,
      index: 0,
      hasBias: false,
      padding: 'same',
    });
    expect(ls.filter((l) => l.isFirst)).toHaveLength(1);
    const down = ls.find((l) => l.name === 's2b1_conv1')!;
    expect(down).toMatchObject({
      kernelShape: [3, 3, 16, 32],
      strides: [2, 2],
      inputShape: [32, 32],
      outputShape: [16, 16],
      macs: 16 * 16 * 9 * 16 * 32,
    });
    expect(ls.at(-1)).toMatchObject({
      name: 'fc',
      kind: 'dense',
      kernelShape: [1, 1, 64, 10],
      hasBias: true,
      params: 650,
      macs: 640,
    });
    expect(m.getLayer(down.name).getWeights()[0]!.shape).toEqual(down.kernelShape);
    expect(modelMacs(m)).toBe(40_551_040);
    expect(ls.filter((l) => l.kernelShape[2] === 64 && l.kernelShape[3] === 64)).toHaveLength(5);
  });

  test('LeNet-5 on 28x28: the first conv pads same, 416,520 multiply-adds', () => {
    const ls = convLayers(buildModel('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 }));
    expect(ls.map((l) => l.name)).toEqual(['conv1', 'conv2', 'fc1', 'fc2', 'fc3']);
    expect(ls[0]).toMatchObject({
      padding: 'same',
      inputShape: [28, 28],
      outputShape: [28, 28],
      hasBias: true,
    });
    expect(ls[1]).toMatchObject({
      padding: 'valid',
      inputShape: [14, 14],
      outputShape: [10, 10],
      kernelShape: [5, 5, 6, 16],
    });
    expect(ls.reduce((a, l) => a + l.macs, 0)).toBe(416_520);
  });
});

describe('option-A shortcut', () => {
  test('subsamples at the strided conv centres and zero-pads channels on both sides', () => {
    const x = tf.tensor4d(
      Float32Array.from({ length: 4 * 4 * 2 }, (_, i) => i + 1),
      [1, 4, 4, 2],
    );
    const layer = new ShortcutA({ stride: 2, outChannels: 4, offset: 1 });
    const y = layer.apply(x) as tf.Tensor4D;
    expect(y.shape).toEqual([1, 2, 2, 4]);
    const xv = x.arraySync()[0]!;
    const yv = y.arraySync()[0]!;
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 2; j++)
        expect(yv[i]![j]).toEqual([0, xv[1 + 2 * i]![1 + 2 * j]![0]!, xv[1 + 2 * i]![1 + 2 * j]![1]!, 0]);
    // Gradient: ones at the sampled pixels, zero elsewhere.
    const g = tf
      .grad((t: tf.Tensor) => tf.sum(layer.apply(t) as tf.Tensor))(x)
      .arraySync() as number[][][][];
    expect(g[0]![1]![3]).toEqual([1, 1]);
    expect(g[0]![0]![1]).toEqual([0, 0]);
  });

  test('odd sizes (7 -> 4) and non-square inputs line up with the strided conv, so the adds build', () => {
    const m = buildModel('resnet8', { inputShape: [14, 14, 1], numClasses: 10, seed: 0 });
    expect(m.getLayer('s3b1_shortcut').outputShape).toEqual([null, 4, 4, 64]);
    expect((m.predict(tf.zeros([1, 14, 14, 1])) as tf.Tensor).shape).toEqual([1, 10]);
    const r = buildModel('resnet8', { inputShape: [16, 13, 3], numClasses: 10, seed: 0 });
    expect(r.getLayer('s2b1_shortcut').outputShape).toEqual([null, 8, 7, 32]);
    expect(r.getLayer('s2b1_conv1').outputShape).toEqual([null, 8, 7, 32]);
    expect((r.predict(tf.zeros([1, 16, 13, 3])) as tf.Tensor).shape).toEqual([1, 10]);
  });

  test('models with the custom layer save and load (tf.serialization) with identical outputs', async () => {
    const m = buildModel('resnet8', cifar);
    let saved: tf.io.ModelArtifacts | null = null;
    await m.save(
      tf.io.withSaveHandler(
        async (a) => (
          (saved = a),
          { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
        ),
      ),
    );
    expect(JSON.stringify(saved!.modelTopology)).toContain('FlatrankShortcutA');
    const loaded = await loadLayersModel(tf.io.fromMemory(saved!));
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 3);
    const a = (m.predict(x) as tf.Tensor).dataSync();
    const b = (loaded.predict(x) as tf.Tensor).dataSync();
    expect(Array.from(b)).toEqual(Array.from(a));
  });
});

test('bad names and options are validation errors', () => {
  expect(() => buildModel('resnet18' as never, cifar)).toThrow(UnknownNameError);
  expect(() => buildModel('lenet5', { ...cifar, inputShape: [32, 32] as never })).toThrow(ValidationError);
  expect(() => buildModel('lenet5', { ...cifar, numClasses: 1 })).toThrow(/numClasses/);
  expect(() => buildModel('lenet5', { ...cifar, seed: -1 })).toThrow(/seed/);
});

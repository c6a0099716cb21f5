/** One SGD-with-momentum step of every model on every installed backend (tiny batch, small images). */
import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { MODELS, type BackendName, type ModelName } from '@flatrank/protocol';
import { initBackend, installedBackends } from '../src/backend/index.js';
import { buildModel } from '../src/models/index.js';

// webgpu trains in tests/webgpu.test.ts (here only a software adapter, and its reads are async).
const installed = (await installedBackends()).filter((b) => b !== 'webgpu');

/** The cpu backend's convs are slow (~0.07 ResNet-20 images/s at 32x32): use 8x8 images there. */
function inputShape(model: ModelName, backend: BackendName): [number, number, number] {
  if (model === 'lenet5') return [28, 28, 1];
  return backend === 'cpu' ? [8, 8, 3] : [16, 16, 3];
}

describe.each(installed)('backend %s', (backend) => {
  test.each([...MODELS])(
    '%s: one training step lowers the loss on its batch',
    async (name) => {
      await initBackend({ backend });
      const shape = inputShape(name, backend);
      const model = buildModel(name, { inputShape: shape, numClasses: 10, seed: 1 });
      const before = tf.memory().numTensors;
      const n = backend === 'cpu' ? 2 : 4;
      const x = tf.randomNormal([n, ...shape], 0, 1, 'float32', 5);
      const y = tf.oneHot(tf.tensor1d([1, 3, 5, 7].slice(0, n), 'int32'), 10);
      const lossFn = () =>
        tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar;
      const opt = tf.train.momentum(0.01, 0.9);
      const { value, grads } = tf.variableGrads(lossFn);
      const loss0 = (await value.data())[0]!;
      expect(Number.isFinite(loss0)).toBe(true);
      // Every trainable weight gets a finite gradient, and the kernels a non-zero one.
      expect(Object.keys(grads).length).toBe(model.trainableWeights.length);
      for (const [k, g] of Object.entries(grads)) {
        const v = await g.data();
        expect(
          v.every((t) => Number.isFinite(t)),
          k,
        ).toBe(true);
        if (k.endsWith('kernel'))
          expect(
            v.some((t) => t !== 0),
            k,
          ).toBe(true);
      }
      const w0 = model
        .getLayer(name === 'lenet5' ? 'conv2' : 'conv1')
        .getWeights()[0]!
        .dataSync()
        .slice();
      opt.applyGradients(grads as tf.NamedTensorMap as Record<string, tf.Variable>);
      tf.dispose([value, ...Object.values(grads)]);
      const w1 = model
        .getLayer(name === 'lenet5' ? 'conv2' : 'conv1')
        .getWeights()[0]!
        .dataSync();
      expect(Array.from(w1)).not.toEqual(Array.from(w0));
      const loss1 = tf.tidy(() => lossFn().dataSync()[0]!);
      expect(loss1).toBeLessThan(loss0);
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
      // The step leaves no tensors behind (optimizer state disposed with it).
      expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
    },
    120_000,
  );
});

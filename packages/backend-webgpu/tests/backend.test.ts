import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '@flatrank/protocol';
import {
  activeWebgpuAdapter,
  listAdapters,
  loadWebgpuBackend,
  probeWebgpu,
  releaseWebgpuBackend,
} from '../src/index.js';

const probe = await probeWebgpu();
const skipReason = probe.ok ? null : probe.reason;
if (skipReason) console.warn(`webgpu backend tests skipped: ${skipReason}`);

describe.skipIf(skipReason !== null)(
  `loading webgpu on Dawn's adapter${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    afterAll(() => releaseWebgpuBackend());

    it('lists adapters with their info and flags software ones', async () => {
      const adapters = await listAdapters();
      expect(adapters.length).toBeGreaterThan(0);
      for (const a of adapters) {
        expect(a.name).not.toBe('');
        expect(typeof a.description).toBe('string');
        expect(a.index).toBe(adapters.indexOf(a));
        if (/llvmpipe|lavapipe|swiftshader/i.test(a.name)) expect(a.software).not.toBeNull();
      }
    });

    it('never takes a software adapter unless allowed; forced, it registers and computes', async () => {
      const adapters = await listAdapters();
      const onlySoftware = adapters.every((a) => a.software);
      if (onlySoftware)
        await expect(loadWebgpuBackend({ allowSoftware: false })).rejects.toThrow(BackendUnavailableError);
      const info = await loadWebgpuBackend({ allowSoftware: true });
      expect(tf.getBackend()).toBe('webgpu');
      expect(info.version).toMatch(/^@tensorflow\/tfjs-backend-webgpu@4\.22\.0 on Dawn \(webgpu@/);
      expect(info.device).toContain(info.adapter.name);
      expect(activeWebgpuAdapter()).toEqual(info.adapter);
      if (info.adapter.software) expect(info.device).toMatch(/software/);
      const y = tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2]));
      expect(Array.from(await y.data())).toEqual([19, 22, 43, 50]);
      // Loading again re-activates the same backend and adapter.
      await tf.setBackend('cpu');
      expect((await loadWebgpuBackend({ allowSoftware: true })).adapter).toEqual(info.adapter);
      expect(tf.getBackend()).toBe('webgpu');
    });

    it('a synchronous read of a GPU tensor says what to do; after an async read it is served', async () => {
      await loadWebgpuBackend({ allowSoftware: true });
      // Large enough that TF.js does not hand the add to its CPU fallback for small tensors.
      const t = tf.add(tf.range(0, 8192), 1);
      expect(() => t.dataSync()).toThrow(/await tensor\.data\(\) first/);
      await t.data();
      expect(t.dataSync()[8191]).toBe(8192);
    });

    it('an adapter name that matches nothing is a typed error listing the adapters', async () => {
      releaseWebgpuBackend();
      await expect(loadWebgpuBackend({ allowSoftware: true, adapter: 'No Such GPU 9000' })).rejects.toThrow(
        /no WebGPU adapter named "No Such GPU 9000"/,
      );
    });
  },
);

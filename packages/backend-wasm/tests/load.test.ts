/**
 * Loading the backend from the package's own .wasm files: it becomes the active TF.js backend,
 * reports SIMD, its threads, flatrank's kernels and the 4 GiB heap cap, and loading again is
 * harmless (selection switches back and forth).
 */
import { expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BATCH_NORM_TRAINING_GRAD_KERNEL, BATCH_NORM_TRAINING_KERNEL } from '@flatrank/protocol';
import {
  CUSTOM_WASM_KERNELS,
  WASM_HEAP_LIMIT_BYTES,
  loadWasmBackend,
  wasmBackendInstalled,
  wasmHeapBytes,
} from '../src/index.js';

test('loads, activates and reports the wasm backend with flatrank kernels', async () => {
  expect(wasmBackendInstalled()).toBe(true);
  const loaded = await loadWasmBackend();
  expect(tf.getBackend()).toBe('wasm');
  expect(loaded.version).toBe('4.22.0');
  expect(typeof loaded.simd).toBe('boolean');
  expect(loaded.threads).toBeGreaterThanOrEqual(1);
  expect(loaded.heapLimitBytes).toBe(WASM_HEAP_LIMIT_BYTES);
  expect(loaded.customKernels).toEqual([...CUSTOM_WASM_KERNELS]);
  for (const name of [BATCH_NORM_TRAINING_KERNEL, BATCH_NORM_TRAINING_GRAD_KERNEL, 'Conv2DBackpropFilter'])
    expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
  expect(wasmHeapBytes()).toBeGreaterThan(0);

  await tf.setBackend('cpu');
  expect(wasmHeapBytes()).toBeNull();
  await expect(loadWasmBackend()).resolves.toMatchObject({ version: loaded.version });
  expect(tf.getBackend()).toBe('wasm');
});

/**
 * Backend selection with and without the addon: 'auto' picks native when it loads; when the addon
 * is switched off (FLATRANK_NATIVE=0) or missing, native reports unavailable with the reason,
 * 'auto' falls back to wasm, and forcing 'native' is a BackendUnavailableError.
 */
import { afterEach, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError } from '@flatrank/protocol';
import { initBackend } from '../src/backend/index.js';
import { nativeBackendStatus, registerNativeBackend, resetNativeAddonCache } from '../src/native/index.js';
import { nativeExpected } from './native-helpers.js';

const saved = { ...process.env };
afterEach(() => {
  for (const k of ['FLATRANK_NATIVE', 'FLATRANK_NATIVE_ADDON']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  resetNativeAddonCache();
});

test.skipIf(!nativeExpected)("'auto' selects the native backend when the addon loads", async () => {
  resetNativeAddonCache();
  const info = await initBackend({ env: {} });
  expect(info.name).toBe('native');
  expect(tf.getBackend()).toBe('native');
  expect(info.threads).toBeGreaterThanOrEqual(1);
  expect(info.heapLimitBytes).toBeNull();
  expect(info.customKernels).toContain('Conv2DBackpropFilter');
});

test('FLATRANK_NATIVE=0: native is unavailable and selection falls back to wasm', async () => {
  process.env['FLATRANK_NATIVE'] = '0';
  resetNativeAddonCache();
  expect(nativeBackendStatus()).toEqual({ available: false, detail: 'disabled by FLATRANK_NATIVE=0' });
  expect(await registerNativeBackend()).toBe(false);
  const info = await initBackend({ env: {} });
  expect(info.name).toBe('wasm');
  expect(tf.getBackend()).toBe('wasm');
  expect(info.skipped).toContainEqual({ name: 'native', reason: 'not installed' });
  await expect(initBackend({ backend: 'native', env: {} })).rejects.toBeInstanceOf(BackendUnavailableError);
});

test('a missing addon build is reported with the reason and skipped', async () => {
  process.env['FLATRANK_NATIVE_ADDON'] = '/nonexistent/flatrank_native.node';
  resetNativeAddonCache();
  const st = nativeBackendStatus();
  expect(st.available).toBe(false);
  expect(st.detail).toMatch(/not built.*nonexistent/);
  const info = await initBackend({ env: {} });
  expect(info.name).toBe('wasm');
});

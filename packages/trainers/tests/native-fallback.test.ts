/**
 * Backend selection with and without the addon: 'auto' picks native when it loads; when the addon
 * is switched off (FLATRANK_NATIVE=0) or missing, 'auto' falls back to wasm and forcing 'native'
 * is a BackendUnavailableError giving the reason. (The addon's own status and load errors are
 * tested in @flatrank/backend-native.)
 */
import { afterEach, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError } from '@flatrank/protocol';
import { initBackend } from '../src/backend/index.js';
import { resetNativeAddonCache } from '@flatrank/backend-native';
import { nativeExpected } from '@flatrank/backend-native/testing';

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
  const info = await initBackend({ env: {} });
  expect(info.name).toBe('wasm');
  expect(tf.getBackend()).toBe('wasm');
  expect(info.skipped).toContainEqual({ name: 'native', reason: 'not installed' });
  const forced = initBackend({ backend: 'native', env: {} });
  await expect(forced).rejects.toBeInstanceOf(BackendUnavailableError);
  await expect(forced).rejects.toThrow(/backend 'native' is not installed \(disabled by FLATRANK_NATIVE=0\)/);
});

test('a missing addon build is reported with the reason and skipped', async () => {
  process.env['FLATRANK_NATIVE_ADDON'] = '/nonexistent/flatrank_native.node';
  resetNativeAddonCache();
  const info = await initBackend({ env: {} });
  expect(info.name).toBe('wasm');
  await expect(initBackend({ backend: 'native', env: {} })).rejects.toThrow(/not built.*nonexistent/);
});

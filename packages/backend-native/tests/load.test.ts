/**
 * Loading the backend: with the addon built it registers 'native', makes it active and reports
 * oneDNN's version, its threads and the kernels it replaces; switched off (FLATRANK_NATIVE=0) or
 * missing, nothing is registered and loadNativeBackend says why in a BackendUnavailableError.
 */
import { afterEach, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BackendUnavailableError } from '@flatrank/protocol';
import {
  addonPath,
  loadNativeBackend,
  nativeBackendStatus,
  registerNativeBackend,
  resetNativeAddonCache,
} from '../src/index.js';
import { nativeExpected } from '../src/testing.js';

const saved = { ...process.env };
afterEach(async () => {
  for (const k of ['FLATRANK_NATIVE', 'FLATRANK_NATIVE_ADDON']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  resetNativeAddonCache();
  await tf.setBackend('cpu');
});

test.skipIf(!nativeExpected)('the built addon loads and becomes the active backend', async () => {
  resetNativeAddonCache();
  const st = nativeBackendStatus();
  expect(st.available, st.detail).toBe(true);
  expect(st.detail).toContain(addonPath());
  const loaded = await loadNativeBackend();
  expect(tf.getBackend()).toBe('native');
  expect(loaded.version).toMatch(/^flatrank-native \(oneDNN \d+\.\d+/);
  expect(loaded.threads).toBeGreaterThanOrEqual(1);
  // The recorded version says how many threads ran (two trials on two cores run one each).
  expect(loaded.version).toContain(`, ${loaded.threads} thread${loaded.threads === 1 ? '' : 's'})`);
  expect(loaded.heapLimitBytes).toBeNull();
  expect(loaded.customKernels).toEqual(expect.arrayContaining(['Conv2D', 'Conv2DBackpropFilter']));
  // Loading again (selection switching back) is harmless.
  await expect(loadNativeBackend()).resolves.toMatchObject({ version: loaded.version });
});

test('FLATRANK_NATIVE=0: unavailable with the reason, nothing registered, a typed error', async () => {
  process.env['FLATRANK_NATIVE'] = '0';
  resetNativeAddonCache();
  expect(nativeBackendStatus()).toEqual({ available: false, detail: 'disabled by FLATRANK_NATIVE=0' });
  expect(await registerNativeBackend()).toBe(false);
  const err = await loadNativeBackend().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BackendUnavailableError);
  expect((err as BackendUnavailableError).message).toContain('disabled by FLATRANK_NATIVE=0');
  expect((err as BackendUnavailableError).context).toMatchObject({ backend: 'native' });
});

test('a missing addon build is reported with its path and the command that builds it', async () => {
  process.env['FLATRANK_NATIVE_ADDON'] = '/nonexistent/flatrank_native.node';
  resetNativeAddonCache();
  const st = nativeBackendStatus();
  expect(st.available).toBe(false);
  expect(st.detail).toMatch(/not built.*nonexistent.*build:native -w @flatrank\/backend-native/);
  await expect(loadNativeBackend()).rejects.toBeInstanceOf(BackendUnavailableError);
});

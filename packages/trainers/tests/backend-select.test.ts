import { afterEach, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, ResourceExhaustedError, UnknownNameError } from '@flatrank/protocol';
import {
  checkTrainingMemory,
  currentBackend,
  estimateTrainingMemory,
  initBackend,
  installedBackends,
  isOutOfMemoryError,
  registerBackendCandidate,
  runEnvironment,
  withMemoryGuard,
  type BackendCandidate,
} from '../src/backend/index.js';
import { buildModel } from '../src/models/index.js';

const restore: Array<() => void> = [];
afterEach(() => {
  while (restore.length) restore.pop()!();
});
function swapCandidate(name: 'tensorflow' | 'webgpu' | 'native', c: BackendCandidate): void {
  const prev = registerBackendCandidate(name, c);
  restore.push(() => registerBackendCandidate(name, prev!));
}

describe('backend selection', () => {
  test('wasm and cpu are installed here; tfjs-node is not', async () => {
    const installed = await installedBackends();
    expect(installed).toContain('wasm');
    expect(installed).toContain('cpu');
    expect(installed).not.toContain('tensorflow');
  });

  test("'auto' takes the first installed backend that loads, in preference order", async () => {
    const installed = await installedBackends();
    const info = await initBackend({ backend: 'auto', env: {} });
    // Installed backends before it were skipped with a reason (webgpu here: no GPU, only llvmpipe).
    expect(installed).toContain(info.name);
    for (const earlier of installed.slice(0, installed.indexOf(info.name)))
      expect(info.skipped.map((s) => s.name)).toContain(earlier);
    expect(info.requested).toBe('auto');
    expect(info.skipped.map((s) => s.name)).toContain('tensorflow');
    expect(tf.getBackend()).toBe(info.name);
    expect(currentBackend()).toBe(info);
  });

  test('forcing wasm reports SIMD, the custom kernels and the 4 GiB cap', async () => {
    const info = await initBackend({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
    expect(info).toMatchObject({
      name: 'wasm',
      version: '4.22.0',
      simd: true,
      threads: 1,
      heapLimitBytes: 4 * 1024 ** 3,
      requestedBy: 'option',
    });
    expect(info.customKernels).toEqual(
      expect.arrayContaining(['Conv2DBackpropFilter', 'Conv2DBackpropInput']),
    );
    expect(info.device.length).toBeGreaterThan(0);
  });

  test('FLATRANK_BACKEND forces a backend unless the option names one', async () => {
    expect((await initBackend({ env: { FLATRANK_BACKEND: 'cpu' } })).name).toBe('cpu');
    expect((await initBackend({ backend: 'auto', env: { FLATRANK_BACKEND: 'cpu' } })).requestedBy).toBe(
      'env',
    );
    expect((await initBackend({ backend: 'wasm', env: { FLATRANK_BACKEND: 'cpu' } })).name).toBe('wasm');
  });

  test('forcing an uninstalled backend is a BackendUnavailableError naming what is installed', async () => {
    const err = await initBackend({ backend: 'tensorflow' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(
      /backend 'tensorflow' is not installed.*tfjs-node.*installed backends: .*wasm, cpu/,
    );
    const viaEnv = await initBackend({ env: { FLATRANK_BACKEND: 'tensorflow' } }).catch((e: unknown) => e);
    expect(viaEnv).toBeInstanceOf(BackendUnavailableError);
  });

  test('unknown names are rejected with the allowed list', async () => {
    await expect(initBackend({ backend: 'gpu' as never })).rejects.toBeInstanceOf(UnknownNameError);
    await expect(initBackend({ env: { FLATRANK_BACKEND: 'webgl' } })).rejects.toThrow(
      /FLATRANK_BACKEND: unknown value "webgl"; allowed: tensorflow, webgpu, native, wasm, cpu, auto/,
    );
  });

  test("a candidate that is installed but fails to load is skipped by 'auto' and an error when forced", async () => {
    swapCandidate('tensorflow', {
      isInstalled: () => true,
      load: () => Promise.reject(new Error('libtensorflow.so: cannot open shared object file')),
    });
    swapCandidate('webgpu', { isInstalled: () => false, load: () => Promise.reject(new Error('absent')) });
    swapCandidate('native', { isInstalled: () => false, load: () => Promise.reject(new Error('absent')) });
    const info = await initBackend({ backend: 'auto', env: {} });
    expect(info.name).toBe('wasm');
    expect(info.skipped).toEqual([
      { name: 'tensorflow', reason: 'failed to load: libtensorflow.so: cannot open shared object file' },
      { name: 'webgpu', reason: 'not installed' },
      { name: 'native', reason: 'not installed' },
    ]);
    const err = await initBackend({ backend: 'tensorflow' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(/installed but failed to load: libtensorflow\.so/);
    expect((err as Error & { cause: unknown }).cause).toBeInstanceOf(Error);
  });

  test("'auto' prefers webgpu on a hardware adapter to native; candidates learn whether they were forced", async () => {
    const seen: boolean[] = [];
    const { MathBackendCPU } = await import('@tensorflow/tfjs-backend-cpu');
    swapCandidate('webgpu', {
      isInstalled: () => true,
      async load(ctx) {
        seen.push(ctx?.forced ?? false);
        // A stand-in for a hardware adapter: the cpu kernels under the name 'webgpu'.
        if (!tf.findBackend('webgpu')) {
          tf.registerBackend('webgpu', () => new MathBackendCPU());
          for (const k of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...k, backendName: 'webgpu' });
        }
        await tf.setBackend('webgpu');
        return { version: 'fake-webgpu', threads: 1, device: 'WebGPU Fake GPU [vulkan, nvidia/ampere]' };
      },
    });
    swapCandidate('native', {
      isInstalled: () => true,
      load: () => Promise.reject(new Error('not reached')),
    });
    const auto = await initBackend({ backend: 'auto', env: {} });
    expect(auto).toMatchObject({ name: 'webgpu', device: 'WebGPU Fake GPU [vulkan, nvidia/ampere]' });
    await initBackend({ backend: 'webgpu' });
    expect(seen).toEqual([false, true]);
    expect(runEnvironment()).toMatchObject({
      backend: 'webgpu',
      backendVersion: 'fake-webgpu',
      device: 'WebGPU Fake GPU [vulkan, nvidia/ampere]',
    });
  });

  test('a registered candidate plugs in without editing the registry', async () => {
    // A stand-in 'native' backend: the cpu kernels under another TF.js backend name.
    const { MathBackendCPU } = await import('@tensorflow/tfjs-backend-cpu');
    swapCandidate('native', {
      isInstalled: () => true,
      async load() {
        if (!tf.findBackend('native')) {
          tf.registerBackend('native', () => new MathBackendCPU());
          for (const k of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...k, backendName: 'native' });
        }
        await tf.setBackend('native');
        return { version: 'fake-1', threads: 1, device: 'test device' };
      },
    });
    const info = await initBackend({ backend: 'native' });
    expect(info).toMatchObject({ name: 'native', version: 'fake-1', device: 'test device' });
    expect(tf.getBackend()).toBe('native');
    expect(tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0]).toBe(3);
  });
});

test('runEnvironment records git, versions, backend and host', async () => {
  const info = await initBackend({ backend: 'wasm' });
  const env = runEnvironment();
  expect(env.backend).toBe('wasm');
  expect(env.backendVersion).toBe(info.version);
  expect(env.device).toBe(info.device);
  expect(env.gitCommit).toMatch(/^[0-9a-f]{40}$/); // the tests run inside the flatrank checkout
  expect(typeof env.gitDirty).toBe('boolean');
  expect(env.packageVersions).toMatchObject({
    flatrank: '0.1.0',
    '@tensorflow/tfjs-core': '4.22.0',
    '@tensorflow/tfjs-backend-wasm': '4.22.0',
  });
  expect(env.nodeVersion).toBe(process.version);
  expect(env.pid).toBe(process.pid);
  expect(env.host.length).toBeGreaterThan(0);
  expect(env.cudaVisibleDevices).toBe(process.env['CUDA_VISIBLE_DEVICES'] ?? null);
});

describe('wasm memory cap', () => {
  test('ResNet-56 at batch 128 is refused with a smaller batch suggested; ResNet-20 fits', async () => {
    await initBackend({ backend: 'wasm' });
    const r56 = buildModel('resnet56', { inputShape: [32, 32, 3], numClasses: 10, seed: 0 });
    const err = (() => {
      try {
        checkTrainingMemory(r56, 128, { modelName: 'resnet56' });
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as Error).message).toMatch(
      /resnet56 at batch size 128 .* 4\.00 GiB wasm heap .*training\.batchSize <= 64/,
    );
    expect(checkTrainingMemory(r56, 64).batchSize).toBe(64);
    const r20 = buildModel('resnet20', { inputShape: [32, 32, 3], numClasses: 10, seed: 0 });
    expect(checkTrainingMemory(r20, 128).bytes).toBeLessThan(3 * 1024 ** 3);
    // No cap on other backends.
    expect(() => checkTrainingMemory(r56, 4096, { backend: 'cpu' })).not.toThrow();
    expect(estimateTrainingMemory(r56, 256).bytes).toBeCloseTo(
      2 * estimateTrainingMemory(r56, 128).bytes,
      -8,
    );
    r56.dispose();
    r20.dispose();
  });

  test('wasm out-of-memory traps become ResourceExhaustedError suggesting a smaller batch', async () => {
    await initBackend({ backend: 'wasm' });
    const trap = Object.assign(new Error('memory access out of bounds'), { name: 'RuntimeError' });
    const err = await withMemoryGuard(
      () => {
        throw trap;
      },
      { batchSize: 128, model: 'resnet56' },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as Error).message).toMatch(
      /out of memory on the wasm backend training resnet56 at batch size 128.*training\.batchSize = 64/,
    );
    // A trap far below the cap is a bug, not OOM; ordinary errors pass through untouched.
    const divide = Object.assign(new Error('divide by zero'), { name: 'RuntimeError' });
    expect(isOutOfMemoryError(divide, 64 * 1024 ** 2)).toBe(false);
    expect(isOutOfMemoryError(divide, 3.5 * 1024 ** 3)).toBe(true);
    const plain = new Error('shape mismatch');
    await expect(withMemoryGuard(() => Promise.reject(plain))).rejects.toBe(plain);
    await expect(withMemoryGuard(() => 42)).resolves.toBe(42);
  });
});

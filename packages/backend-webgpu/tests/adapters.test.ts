import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, ValidationError } from '@flatrank/protocol';
import {
  chooseAdapter,
  dawnBackendsFor,
  noGpuDeviceReason,
  parseAvailableAdapters,
  vulkanLoaderPresent,
  softwareAdapterReason,
  type WebgpuAdapter,
} from '../src/index.js';

function adapter(name: string, over: Partial<WebgpuAdapter> = {}): WebgpuAdapter {
  const a = {
    index: 0,
    dawnBackend: 'vulkan' as const,
    name,
    vendor: '',
    architecture: '',
    device: '',
    description: '',
    isFallbackAdapter: false,
    selectableByName: true,
    ...over,
  };
  return { ...a, software: softwareAdapterReason(a) };
}

describe('Dawn adapter list parsing', () => {
  it("reads dawn.node's 'Available adapters' lines", () => {
    const msg = [
      "no adapter with backend 'opengles' and name 'x' found",
      'Available adapters:',
      " * backend: 'opengles', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'",
      " * backend: 'vulkan', name: 'NVIDIA GeForce RTX 4090'",
    ].join('\n');
    expect(parseAvailableAdapters(msg)).toEqual([
      { backend: 'opengles', name: 'llvmpipe (LLVM 15.0.6, 256 bits)' },
      { backend: 'vulkan', name: 'NVIDIA GeForce RTX 4090' },
    ]);
    expect(parseAvailableAdapters('no suitable backends found')).toEqual([]);
  });
});

describe('software adapters', () => {
  it.each([
    ['llvmpipe (LLVM 15.0.6, 256 bits)', /llvmpipe/],
    ['lavapipe', /lavapipe/],
    ['SwiftShader Device (Subzero)', /SwiftShader/],
    ['Microsoft Basic Render Driver', /WARP/],
  ])('%s is software', (name, why) => {
    expect(softwareAdapterReason({ name })).toMatch(why);
  });
  it('hardware names are not, fallback adapters and the null backend are', () => {
    expect(softwareAdapterReason({ name: 'NVIDIA GeForce RTX 4090', vendor: 'nvidia' })).toBeNull();
    expect(softwareAdapterReason({ name: 'AMD Radeon RX 7900 XTX (RADV NAVI31)', vendor: 'amd' })).toBeNull();
    expect(softwareAdapterReason({ name: 'Something', isFallbackAdapter: true })).toMatch(/fallback/);
    expect(softwareAdapterReason({ name: 'Null backend', dawnBackend: 'null' })).toMatch(/null/);
  });
});

describe('adapter choice', () => {
  const sw = adapter('llvmpipe (LLVM 15.0.6, 256 bits)', { index: 0, dawnBackend: 'opengles' });
  const hw0 = adapter('NVIDIA GeForce RTX 4090', { index: 1 });
  const hw1 = adapter('NVIDIA GeForce RTX 4090', { index: 2, selectableByName: false });

  it('prefers hardware, never takes software unless allowed', () => {
    expect(chooseAdapter([sw, hw0, hw1], { allowSoftware: false })).toBe(hw0);
    expect(() => chooseAdapter([sw], { allowSoftware: false })).toThrow(BackendUnavailableError);
    expect(() => chooseAdapter([sw], { allowSoftware: false })).toThrow(
      /only software.*llvmpipe.*--backend webgpu/,
    );
    expect(chooseAdapter([sw], { allowSoftware: true })).toBe(sw);
  });
  it('a named adapter is taken by substring, as Dawn does; unknown names say what exists', () => {
    expect(chooseAdapter([sw, hw0], { allowSoftware: false, adapter: '4090' })).toBe(hw0);
    expect(() => chooseAdapter([sw, hw0], { allowSoftware: false, adapter: 'A100' })).toThrow(
      /no WebGPU adapter named "A100".*RTX 4090/,
    );
    expect(() => chooseAdapter([sw], { allowSoftware: false, adapter: 'llvmpipe' })).toThrow(/software/);
  });
  it('no adapter at all names the Dawn backends tried and what Linux needs', () => {
    expect(() => chooseAdapter([], { allowSoftware: true, dawnBackends: ['vulkan', 'opengles'] })).toThrow(
      /no WebGPU adapter found on Dawn backend\(s\) vulkan, opengles.*libvulkan1.*EGL_PLATFORM=surfaceless/,
    );
  });
});

describe('Dawn backends', () => {
  it('default per platform, overridable, validated', () => {
    const vulkan = vulkanLoaderPresent({});
    expect(dawnBackendsFor({}, 'linux')).toEqual(vulkan ? ['vulkan', 'opengles'] : ['opengles']);
    expect(dawnBackendsFor({}, 'darwin')).toEqual(['metal']);
    expect(dawnBackendsFor({ FLATRANK_DAWN_BACKENDS: 'opengles' }, 'linux')).toEqual(['opengles']);
    expect(() => dawnBackendsFor({ FLATRANK_DAWN_BACKENDS: 'cuda' }, 'linux')).toThrow(ValidationError);
    expect(() => dawnBackendsFor({ FLATRANK_DAWN_BACKENDS: 'cuda' }, 'linux')).toThrow(
      /allowed: vulkan, opengles/,
    );
  });
});

describe('cheap checks before Dawn loads', () => {
  it('a Linux machine without DRM render nodes or NVIDIA device nodes has no hardware adapter', () => {
    const dev = mkdtempSync(join(tmpdir(), 'flatrank-dev-'));
    try {
      expect(noGpuDeviceReason('linux', dev)).toMatch(/no GPU device node/);
      mkdirSync(join(dev, 'dri'));
      writeFileSync(join(dev, 'dri', 'card0'), '');
      expect(noGpuDeviceReason('linux', dev)).not.toBeNull();
      writeFileSync(join(dev, 'dri', 'renderD128'), '');
      expect(noGpuDeviceReason('linux', dev)).toBeNull();
      rmSync(join(dev, 'dri'), { recursive: true });
      writeFileSync(join(dev, 'nvidia0'), '');
      expect(noGpuDeviceReason('linux', dev)).toBeNull();
      expect(noGpuDeviceReason('darwin', dev)).toBeNull();
    } finally {
      rmSync(dev, { recursive: true, force: true });
    }
  });
  it('Vulkan is tried only when its loader is installed', () => {
    const lib = mkdtempSync(join(tmpdir(), 'flatrank-lib-'));
    try {
      writeFileSync(join(lib, 'libvulkan.so.1'), '');
      expect(vulkanLoaderPresent({ LD_LIBRARY_PATH: lib })).toBe(true);
      expect(dawnBackendsFor({ LD_LIBRARY_PATH: lib }, 'linux')).toEqual(['vulkan', 'opengles']);
    } finally {
      rmSync(lib, { recursive: true, force: true });
    }
  });
});

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  fakeWebgpuDiscovery,
  fakeWebgpuGpus,
  installFakeNvidiaSmi,
  readFakeLog,
  maxConcurrency,
} from '@flatrank/testing';
import {
  discoverGpus,
  driPrimeTag,
  listWebgpuGpus,
  parseGpusFlag,
  parseNvidiaSmi,
  planSlots,
  probePinningHost,
  webgpuPinning,
  type PinningHost,
} from '../src/index.js';
import { baselineSpec, runFake, sandbox, type Sandbox } from './helpers.js';

const noLayer: PinningHost = { deviceSelectLayer: false, pciDisplays: [] };
const twoAmd: PinningHost = {
  deviceSelectLayer: true,
  pciDisplays: [
    { address: '0000:03:00.0', vendorId: '1002' },
    { address: '0000:83:00.0', vendorId: '1002' },
    { address: '0000:00:02.0', vendorId: '8086' },
  ],
};

describe('webgpu pinning', () => {
  it('PCI addresses become Mesa DRI_PRIME tags', () => {
    expect(driPrimeTag('0000:03:00.0')).toBe('pci-0000_03_00_0');
    expect(driPrimeTag('00000000:81:00.1')).toBe('pci-0000_81_00_1');
    expect(driPrimeTag('garbage')).toBeNull();
  });

  it('different adapter names pin by name alone', () => {
    const gpus = fakeWebgpuGpus(2, ['Fake GPU A', 'Fake GPU B']);
    const pins = webgpuPinning(gpus, noLayer);
    expect(pins.map((p) => p.env)).toEqual([
      { FLATRANK_WEBGPU_ADAPTER: 'Fake GPU A', FLATRANK_DAWN_BACKENDS: 'vulkan' },
      { FLATRANK_WEBGPU_ADAPTER: 'Fake GPU B', FLATRANK_DAWN_BACKENDS: 'vulkan' },
    ]);
    expect(pins.every((p) => p.warning === null)).toBe(true);
  });

  it("identical Vulkan adapters pin by PCI address through Mesa's device-select layer", () => {
    const pins = webgpuPinning(fakeWebgpuGpus(2), twoAmd);
    expect(
      pins.map((p) => [p.env['DRI_PRIME'], p.env['MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE']]),
    ).toEqual([
      ['pci-0000_03_00_0', '1'],
      ['pci-0000_83_00_0', '1'],
    ]);
    expect(pins.every((p) => p.warning === null)).toBe(true);
  });

  it('say where pinning is not possible: no layer, address count mismatch, GL backends, name prefixes', () => {
    expect(webgpuPinning(fakeWebgpuGpus(2), noLayer)[1]!.warning).toMatch(
      /2 adapters are named "Fake Radeon Pro W7900" and Mesa's Vulkan device-select layer is not installed/,
    );
    expect(webgpuPinning(fakeWebgpuGpus(3), twoAmd)[0]!.warning).toMatch(
      /PCI addresses of 1002 display devices do not match the 3 adapters/,
    );
    expect(webgpuPinning(fakeWebgpuGpus(2, undefined, 'opengles'), twoAmd)[0]!.warning).toMatch(
      /Dawn's opengles backend opens the default device/,
    );
    expect(webgpuPinning(fakeWebgpuGpus(2, ['Fake GPU Ti', 'Fake GPU']), noLayer)[1]!.warning).toMatch(
      /another adapter's name contains "Fake GPU"/,
    );
  });

  it('nvidia-smi GPUs keep CUDA_VISIBLE_DEVICES and pin webgpu by their PCI address when the layer exists', () => {
    const gpus = parseNvidiaSmi('0, T4, GPU-a, 00000000:3B:00.0\n1, T4, GPU-b, 00000000:AF:00.0\n');
    expect(gpus[1]!.pciBusId).toBe('00000000:AF:00.0');
    const withLayer = webgpuPinning(gpus, { deviceSelectLayer: true, pciDisplays: [] });
    expect(withLayer.map((p) => [p.cudaVisibleDevices, p.env['DRI_PRIME']])).toEqual([
      ['0', 'pci-0000_3b_00_0'],
      ['1', 'pci-0000_af_00_0'],
    ]);
    const without = webgpuPinning(gpus, noLayer);
    expect(without.map((p) => p.cudaVisibleDevices)).toEqual(['0', '1']);
    expect(without[0]!.warning).toMatch(
      /webgpu backend cannot be pinned.*device-select layer.*CUDA_VISIBLE_DEVICES/,
    );
    // One GPU needs no pinning.
    expect(webgpuPinning(gpus.slice(0, 1), noLayer)[0]!.warning).toBeNull();
  });

  it('reads the layer manifest and display controllers from sysfs', () => {
    const root = join(sb.dir, 'sys');
    for (const [addr, cls, vendor] of [
      ['0000:03:00.0', '0x030000', '0x1002'],
      ['0000:00:1f.3', '0x040300', '0x8086'],
      ['0000:00:02.0', '0x038000', '0x8086'],
    ] as const) {
      mkdirSync(join(root, addr), { recursive: true });
      writeFileSync(join(root, addr, 'class'), `${cls}\n`);
      writeFileSync(join(root, addr, 'vendor'), `${vendor}\n`);
    }
    const layers = join(sb.dir, 'layers');
    mkdirSync(layers);
    expect(probePinningHost(root, [layers]).deviceSelectLayer).toBe(false);
    writeFileSync(join(layers, 'VkLayer_MESA_device_select.json'), '{}');
    expect(probePinningHost(root, [layers])).toEqual({
      deviceSelectLayer: true,
      pciDisplays: [
        { address: '0000:00:02.0', vendorId: '8086' },
        { address: '0000:03:00.0', vendorId: '1002' },
      ],
    });
  });

  it("Dawn's list without a GPU (llvmpipe only, or no Dawn) gives no GPU slots", async () => {
    const gpus = await listWebgpuGpus();
    expect(Array.isArray(gpus)).toBe(true);
    for (const g of gpus) expect(g.name).not.toMatch(/llvmpipe|lavapipe|swiftshader/i);
  });
});

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

describe('--gpus over WebGPU adapters', () => {
  it('plans one slot per adapter, pinned, named webgpu:<i>', async () => {
    const plan = await planSlots({
      gpus: 'auto',
      workersPerGpu: 1,
      cpuWorkers: 2,
      discover: fakeWebgpuDiscovery(2),
      host: twoAmd,
    });
    expect(plan.reason).toMatch(/Dawn's WebGPU adapter list found 2 GPUs/);
    expect(plan.slots.map((s) => [s.id, s.device, s.env?.['DRI_PRIME']])).toEqual([
      ['gpu0', 'webgpu:0 Fake Radeon Pro W7900', 'pci-0000_03_00_0'],
      ['gpu1', 'webgpu:1 Fake Radeon Pro W7900', 'pci-0000_83_00_0'],
    ]);
    expect(plan.warnings).toEqual([]);
  });

  it('a sweep pins one worker per adapter: every child sees its own adapter, never shared at once', async () => {
    const spec = sb.spec('wgpu', baselineSpec('wgpu', [0, 1, 2, 3, 4, 5]));
    const r = await runFake(
      sb,
      spec,
      { default: { steps: 10, stepMs: 100 } },
      {
        discoverGpus: fakeWebgpuDiscovery(2),
        pinningHost: twoAmd,
      },
    );
    expect(r.error).toBeUndefined();
    const log = readFakeLog(sb.logFile);
    const starts = log.filter((x) => x.kind === 'start');
    expect(starts).toHaveLength(6);
    expect(maxConcurrency(log)).toBe(2);
    expect(new Set(starts.map((s) => s.driPrime))).toEqual(new Set(['pci-0000_03_00_0', 'pci-0000_83_00_0']));
    for (const s of starts) expect(s.webgpuAdapter).toBe('Fake Radeon Pro W7900');
    const spans = starts.map((s) => ({
      pin: s.driPrime,
      t0: s.t,
      t1: log.find((e) => e.kind === 'end' && e.key === s.key && e.attempt === s.attempt)!.t,
    }));
    for (const a of spans)
      for (const b of spans) if (a !== b && a.pin === b.pin) expect(a.t1 <= b.t0 || b.t1 <= a.t0).toBe(true);
  });
});

describe('GPU discovery', () => {
  it('parses nvidia-smi output and plans slots', async () => {
    expect(parseNvidiaSmi('0, NVIDIA A100-SXM4-40GB, GPU-abc\n1, NVIDIA A100-SXM4-40GB, GPU-def\n')).toEqual([
      { index: 0, name: 'NVIDIA A100-SXM4-40GB', uuid: 'GPU-abc' },
      { index: 1, name: 'NVIDIA A100-SXM4-40GB', uuid: 'GPU-def' },
    ]);
    const plan = await planSlots({
      gpus: 'auto',
      workersPerGpu: 2,
      cpuWorkers: 3,
      discover: async () => parseNvidiaSmi('0, T4, x\n1, T4, y\n'),
    });
    expect(plan.slots.map((s) => [s.id, s.cudaVisibleDevices])).toEqual([
      ['gpu0#0', '0'],
      ['gpu0#1', '0'],
      ['gpu1#0', '1'],
      ['gpu1#1', '1'],
    ]);
    const cpu = await planSlots({
      gpus: 'none',
      workersPerGpu: 2,
      cpuWorkers: 3,
      discover: async () => parseNvidiaSmi('0, T4, x\n'),
    });
    expect(cpu.slots.map((s) => [s.id, s.cudaVisibleDevices])).toEqual([
      ['cpu0', ''],
      ['cpu1', ''],
      ['cpu2', ''],
    ]);
    const picked = await planSlots({
      gpus: [1],
      workersPerGpu: 1,
      cpuWorkers: 1,
      discover: async () => parseNvidiaSmi('0, T4, x\n1, V100, y\n'),
    });
    expect(picked.slots).toEqual([{ id: 'gpu1', cudaVisibleDevices: '1', device: 'cuda:1 V100', env: {} }]);
  });

  it('falls back to CPU when nvidia-smi is absent; finds a fake one on PATH', async () => {
    const saved = process.env['PATH'];
    try {
      process.env['PATH'] = join(sb.dir, 'empty');
      expect(await discoverGpus()).toEqual([]);
      process.env['PATH'] = installFakeNvidiaSmi(join(sb.dir, 'bin'), 3);
      expect((await discoverGpus()).map((g) => g.index)).toEqual([0, 1, 2]);
    } finally {
      process.env['PATH'] = saved;
    }
  });

  it('validates --gpus', () => {
    expect(parseGpusFlag('auto')).toBe('auto');
    expect(parseGpusFlag('0, 2')).toEqual([0, 2]);
    expect(() => parseGpusFlag('gpu0')).toThrow(
      /--gpus: must be auto, none, or a comma-separated list of GPU indices/,
    );
    expect(() => parseGpusFlag('1,1')).toThrow(/lists a GPU twice/);
  });
});

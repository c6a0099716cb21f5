/**
 * GPUs as WebGPU adapters (Dawn's list, for machines without nvidia-smi) and the environment that
 * pins a worker's webgpu backend to one GPU.
 *
 * What pins what: Dawn's `adapter=<name>` flag (FLATRANK_WEBGPU_ADAPTER) takes the first adapter
 * whose name contains the string, so it tells different models apart but never two identical GPUs.
 * For those, Mesa's Vulkan device-select layer (an implicit layer, installed with Mesa's Vulkan
 * drivers; it sits in front of every ICD, NVIDIA's included) exposes only the device on one PCI
 * address when DRI_PRIME=pci-DDDD_BB_DD_F and MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 are set.
 * Without that layer, or on Dawn's OpenGL backends (EGL opens the default device), identical GPUs
 * cannot be pinned: every worker's webgpu backend would land on the first one, and planSlots says
 * so. CUDA_VISIBLE_DEVICES does not reach Vulkan or GL; it still pins the tensorflow backend.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A hardware WebGPU adapter (the fields of @flatrank/backend-webgpu's WebgpuAdapter used here). */
export interface WebgpuGpu {
  dawnBackend: string;
  /** Dawn's adapter name (what `adapter=` matches). */
  name: string;
  vendor: string;
  description: string;
  /** False when an earlier adapter's name contains this one (Dawn would take that one). */
  selectableByName: boolean;
}

export interface PinningHost {
  /** Mesa's VK_LAYER_MESA_device_select manifest is installed. */
  deviceSelectLayer: boolean;
  /** PCI display controllers (sysfs class 0x03xxxx): address "0000:01:00.0", vendor id "10de". */
  pciDisplays: Array<{ address: string; vendorId: string }>;
}

export interface WebgpuPin {
  cudaVisibleDevices: string;
  env: Record<string, string>;
  /** Set when the webgpu backend of this GPU's workers cannot be pinned to it. */
  warning: string | null;
}

const LAYER_DIRS = [
  '/usr/share/vulkan/implicit_layer.d',
  '/usr/local/share/vulkan/implicit_layer.d',
  '/etc/vulkan/implicit_layer.d',
];

/** Reads the pinning facts of this machine (sysfs, Vulkan layer manifests). */
export function probePinningHost(sysPci = '/sys/bus/pci/devices', layerDirs = LAYER_DIRS): PinningHost {
  const deviceSelectLayer = layerDirs.some(
    (d) => existsSync(d) && readdirSync(d).some((f) => /device_select/i.test(f)),
  );
  const pciDisplays: PinningHost['pciDisplays'] = [];
  try {
    for (const address of readdirSync(sysPci)) {
      const cls = readFileSync(join(sysPci, address, 'class'), 'utf8').trim();
      if (!/^0x03/.test(cls)) continue;
      const vendor = readFileSync(join(sysPci, address, 'vendor'), 'utf8').trim();
      pciDisplays.push({ address, vendorId: vendor.replace(/^0x/, '').toLowerCase() });
    }
  } catch {
    // no sysfs (not Linux, or a container without it): nothing to pin by address
  }
  pciDisplays.sort((a, b) => a.address.localeCompare(b.address));
  return { deviceSelectLayer, pciDisplays };
}

/** "0000:01:00.0" or nvidia-smi's "00000000:01:00.0" -> Mesa's "pci-0000_01_00_0". */
export function driPrimeTag(address: string): string | null {
  const m = /^([0-9a-f]+):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(address.trim());
  if (!m) return null;
  return `pci-${m[1]!.slice(-4).toLowerCase()}_${m[2]!.toLowerCase()}_${m[3]!.toLowerCase()}_${m[4]}`;
}

/** PCI vendor id of a WebGPU vendor string ('nvidia', 'amd', 'intel'), null when unknown. */
export function pciVendorId(vendor: string): string | null {
  const v = vendor.toLowerCase();
  if (v.includes('nvidia')) return '10de';
  if (v.includes('amd') || v.includes('ati')) return '1002';
  if (v.includes('intel')) return '8086';
  return null;
}

function deviceSelectEnv(address: string): Record<string, string> | null {
  const tag = driPrimeTag(address);
  return tag ? { DRI_PRIME: tag, MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' } : null;
}

interface PinnableGpu {
  index: number;
  name: string;
  pciBusId?: string | null;
  webgpu?: WebgpuGpu | null;
}

/**
 * The child environment of each GPU's workers (same order as gpus). nvidia-smi GPUs: their CUDA
 * index, and the device-select pin by PCI address when the layer is installed. Dawn GPUs: the
 * adapter name and Dawn backend, plus the device-select pin by address for identical names.
 */
export function webgpuPinning(
  gpus: readonly PinnableGpu[],
  host: PinningHost = probePinningHost(),
): WebgpuPin[] {
  const nvidiaOrdinal = new Map<PinnableGpu, number>();
  for (const g of gpus)
    if (g.webgpu && pciVendorId(g.webgpu.vendor) === '10de') nvidiaOrdinal.set(g, nvidiaOrdinal.size);
  return gpus.map((g) => {
    if (!g.webgpu) {
      const pin = host.deviceSelectLayer && g.pciBusId ? deviceSelectEnv(g.pciBusId) : null;
      const warning =
        pin || gpus.length < 2
          ? null
          : `GPU ${g.index} (${g.name}): the webgpu backend cannot be pinned to it (${
              g.pciBusId ? "Mesa's Vulkan device-select layer is not installed" : 'no PCI address'
            }); tensorflow workers are pinned by CUDA_VISIBLE_DEVICES`;
      return { cudaVisibleDevices: String(g.index), env: pin ?? {}, warning };
    }
    const w = g.webgpu;
    const env: Record<string, string> = {
      FLATRANK_WEBGPU_ADAPTER: w.name,
      FLATRANK_DAWN_BACKENDS: w.dawnBackend,
    };
    const cuda = nvidiaOrdinal.has(g) ? String(nvidiaOrdinal.get(g)) : '';
    const twins = gpus.filter(
      (o) => o.webgpu && o.webgpu.dawnBackend === w.dawnBackend && o.webgpu.name === w.name,
    );
    if (twins.length === 1 && w.selectableByName) return { cudaVisibleDevices: cuda, env, warning: null };
    const why =
      twins.length > 1
        ? `${twins.length} adapters are named "${w.name}"`
        : `another adapter's name contains "${w.name}"`;
    const vendorId = pciVendorId(w.vendor);
    const addresses = host.pciDisplays.filter((p) => p.vendorId === vendorId);
    if (
      w.dawnBackend === 'vulkan' &&
      host.deviceSelectLayer &&
      twins.length > 1 &&
      addresses.length === twins.length
    ) {
      const pin = deviceSelectEnv(addresses[twins.indexOf(g)]!.address);
      if (pin) return { cudaVisibleDevices: cuda, env: { ...env, ...pin }, warning: null };
    }
    const need =
      w.dawnBackend === 'vulkan'
        ? host.deviceSelectLayer
          ? `the PCI addresses of ${vendorId ?? w.vendor} display devices do not match the ${twins.length} adapters`
          : "Mesa's Vulkan device-select layer is not installed (Debian: mesa-vulkan-drivers)"
        : `Dawn's ${w.dawnBackend} backend opens the default device`;
    return {
      cudaVisibleDevices: cuda,
      env,
      warning: `GPU ${g.index} (${w.name}): ${why} and ${need}: its workers may share the first such GPU`,
    };
  });
}

/**
 * Hardware WebGPU adapters, listed by @flatrank/backend-webgpu in a child process (Dawn loads GPU
 * drivers and writes warnings to stderr: neither belongs in the coordinator). [] when the package or
 * Dawn is missing, or nothing but software adapters exist.
 */
export async function listWebgpuGpus(timeoutMs = 30_000): Promise<WebgpuGpu[]> {
  let modulePath: string;
  try {
    modulePath = createRequire(import.meta.url).resolve('@flatrank/backend-webgpu/adapters');
  } catch {
    return [];
  }
  const script =
    'const m = await import(process.argv[1]);' +
    // A machine without GPU device nodes has nothing to find: Dawn is not started.
    'const a = m.noGpuDeviceReason() === null ? await m.listAdapters() : [];' +
    'process.stdout.write(JSON.stringify(a.filter((x) => !x.software)));';
  return new Promise((resolve) => {
    let out = '';
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script, pathToFileURL(modulePath).href],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', () => {
      clearTimeout(timer);
      resolve([]);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      try {
        resolve(code === 0 ? (JSON.parse(out) as WebgpuGpu[]) : []);
      } catch {
        resolve([]);
      }
    });
  });
}

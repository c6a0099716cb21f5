/**
 * WebGPU adapters as Dawn sees them: enumeration over Dawn's backends, the adapter info flatrank
 * records, software-adapter detection, and the choice of one adapter. No TensorFlow.js here, so
 * the scheduler can list GPUs through this module.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BackendUnavailableError, ValidationError } from '@flatrank/protocol';
import { loadDawn, type DawnAdapter, type DawnGpu } from './dawn.js';

/** Dawn's backend names (dawn.node's `backend=` flag). */
export const DAWN_BACKENDS = ['vulkan', 'opengles', 'opengl', 'metal', 'd3d12', 'd3d11', 'null'] as const;
export type DawnBackend = (typeof DAWN_BACKENDS)[number];

/** Environment variables the loader reads (the scheduler sets them to pin a worker). */
export const ADAPTER_ENV = 'FLATRANK_WEBGPU_ADAPTER';
export const DAWN_BACKENDS_ENV = 'FLATRANK_DAWN_BACKENDS';

/**
 * Feature level every adapter is requested with. 'compatibility' is what Dawn's OpenGL ES backend
 * offers (the only route to Mesa's llvmpipe here); on a core-capable adapter the device still gets
 * core features, as the loader requires 'core-features-and-limits' when the adapter has it.
 */
export const FEATURE_LEVEL = 'compatibility';

export interface WebgpuAdapter {
  /** Position in flatrank's enumeration: Dawn backends in order, then Dawn's own order. */
  index: number;
  dawnBackend: DawnBackend;
  /** Dawn's adapter name: what its `adapter=` flag matches (as a substring, first match wins). */
  name: string;
  vendor: string;
  architecture: string;
  /** GPUAdapterInfo.device (Dawn normalises the name: lower case, dashes). */
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** Why this adapter is a CPU rasteriser (llvmpipe, lavapipe, SwiftShader, ...), null for hardware. */
  software: string | null;
  /**
   * Whether `adapter=<name>` selects exactly this adapter: false when an earlier adapter of the same
   * Dawn backend has the same name or a name containing this one (Dawn takes the first match).
   */
  selectableByName: boolean;
}

const SOFTWARE_NAMES: Array<[RegExp, string]> = [
  [/llvmpipe/i, 'Mesa llvmpipe (CPU rasteriser)'],
  [/lavapipe/i, 'Mesa lavapipe (CPU Vulkan)'],
  [/softpipe/i, 'Mesa softpipe (CPU rasteriser)'],
  [/swiftshader/i, 'SwiftShader (CPU Vulkan)'],
  [/microsoft basic render|\bwarp\b/i, 'Microsoft WARP (CPU Direct3D)'],
];

/** Why an adapter is software (a CPU implementation), or null when it looks like hardware. */
export function softwareAdapterReason(a: {
  name?: string;
  device?: string;
  description?: string;
  vendor?: string;
  architecture?: string;
  isFallbackAdapter?: boolean;
  dawnBackend?: string;
}): string | null {
  const text = [a.name, a.device, a.description, a.vendor, a.architecture].filter(Boolean).join(' ');
  for (const [re, why] of SOFTWARE_NAMES) if (re.test(text)) return why;
  if (a.dawnBackend === 'null') return "Dawn's null backend (computes nothing)";
  if (a.isFallbackAdapter) return 'the platform reports it as a fallback adapter';
  return null;
}

const LIB_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/lib/x86_64-linux-gnu',
  '/lib64',
  '/usr/local/lib',
];

/** Whether the Vulkan loader (libvulkan.so.1) is installed: without it Dawn only prints a warning. */
export function vulkanLoaderPresent(env: NodeJS.ProcessEnv = process.env): boolean {
  const dirs = [...(env['LD_LIBRARY_PATH'] ?? '').split(':').filter(Boolean), ...LIB_DIRS];
  return dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
}

/**
 * Why this machine cannot have a hardware WebGPU adapter, or null when it may: on Linux a GPU needs
 * a DRM render node or an NVIDIA device node (WSL: /dev/dxg). Automatic selection checks this
 * before loading Dawn, so CPU machines pay nothing for the webgpu candidate.
 */
export function noGpuDeviceReason(platform = process.platform, dev = '/dev'): string | null {
  if (platform !== 'linux') return null;
  const has = (dir: string, re: RegExp) => {
    try {
      return readdirSync(dir).some((f) => re.test(f));
    } catch {
      return false;
    }
  };
  if (has(join(dev, 'dri'), /^renderD\d+$/) || has(dev, /^nvidia\d+$/) || existsSync(join(dev, 'dxg')))
    return null;
  return `no GPU device node (${dev}/dri/renderD*, ${dev}/nvidia*): no hardware WebGPU adapter`;
}

/**
 * Dawn backends to try, in order: FLATRANK_DAWN_BACKENDS, else the platform's native API (on Linux
 * Vulkan, when its loader is installed), then GL ES.
 */
export function dawnBackendsFor(
  env: NodeJS.ProcessEnv = process.env,
  platform = process.platform,
): DawnBackend[] {
  const given = env[DAWN_BACKENDS_ENV]?.trim();
  if (given) {
    const names = given.split(',').map((s) => s.trim().toLowerCase());
    for (const n of names)
      if (!(DAWN_BACKENDS as readonly string[]).includes(n))
        throw new ValidationError(
          DAWN_BACKENDS_ENV,
          `${DAWN_BACKENDS_ENV}: unknown Dawn backend ${JSON.stringify(n)}; allowed: ${DAWN_BACKENDS.join(', ')}`,
        );
    return names as DawnBackend[];
  }
  if (platform === 'darwin') return ['metal'];
  if (platform === 'win32') return ['d3d12', 'vulkan'];
  return vulkanLoaderPresent(env) ? ['vulkan', 'opengles'] : ['opengles'];
}

/** Dawn lists its adapters only in the error for an adapter name that matches none. */
const NO_SUCH_ADAPTER = '\u0001flatrank-list-adapters\u0001';

/** Parses dawn.node's " * backend: 'opengles', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'" lines. */
export function parseAvailableAdapters(message: string): Array<{ backend: string; name: string }> {
  const out: Array<{ backend: string; name: string }> = [];
  for (const line of message.split(/\r?\n/)) {
    const m = /^\s*\*\s*backend:\s*'([^']*)',\s*name:\s*'(.*)'\s*$/.exec(line);
    if (m) out.push({ backend: m[1]!, name: m[2]! });
  }
  return out;
}

/** Dawn's flags for one backend and, optionally, one adapter name. */
export function dawnFlags(backend: DawnBackend, adapterName?: string): string[] {
  return adapterName === undefined
    ? [`backend=${backend}`]
    : [`backend=${backend}`, `adapter=${adapterName}`];
}

async function adapterNames(gpuFor: (flags: string[]) => DawnGpu, backend: DawnBackend): Promise<string[]> {
  try {
    const a = await gpuFor(dawnFlags(backend, NO_SUCH_ADAPTER)).requestAdapter({
      featureLevel: FEATURE_LEVEL,
    });
    // Only reachable if an adapter's name contained the sentinel.
    return a ? [a.info.device] : [];
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return parseAvailableAdapters(msg)
      .filter((x) => x.backend === backend)
      .map((x) => x.name);
  }
}

export interface ListAdaptersOptions {
  /** Dawn backends to enumerate (default: dawnBackendsFor(env)). */
  dawnBackends?: DawnBackend[];
  env?: NodeJS.ProcessEnv;
}

/**
 * Every adapter Dawn finds on the given backends, with its info. Empty when npm `webgpu` is
 * absent. Each Dawn backend gets its own instance (dawn.node fixes the backend per instance).
 */
export async function listAdapters(opts: ListAdaptersOptions = {}): Promise<WebgpuAdapter[]> {
  const backends = opts.dawnBackends ?? dawnBackendsFor(opts.env);
  let create: (flags: string[]) => DawnGpu;
  try {
    create = (await loadDawn()).create;
  } catch {
    return [];
  }
  const out: WebgpuAdapter[] = [];
  for (const backend of backends) {
    const names = await adapterNames(create, backend);
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const adapter = await create(dawnFlags(backend, name))
        .requestAdapter({ featureLevel: FEATURE_LEVEL })
        .catch(() => null);
      const info = adapter?.info;
      const base = {
        name,
        vendor: info?.vendor ?? '',
        architecture: info?.architecture ?? '',
        device: info?.device ?? '',
        description: info?.description ?? '',
        isFallbackAdapter: info?.isFallbackAdapter ?? false,
        dawnBackend: backend,
      };
      out.push({
        index: out.length,
        ...base,
        software: softwareAdapterReason(base),
        selectableByName: !names.slice(0, i).some((earlier) => earlier.includes(name)),
      });
    }
  }
  return out;
}

/** One line per adapter, for logs and `gpu-check`. */
export function describeAdapter(
  a: Pick<WebgpuAdapter, 'name' | 'dawnBackend' | 'vendor' | 'architecture' | 'description' | 'software'>,
): string {
  const parts = [a.vendor, a.architecture].filter(Boolean).join('/');
  return `${a.name} [${a.dawnBackend}${parts ? `, ${parts}` : ''}${a.description ? `, ${a.description}` : ''}]${a.software ? ` (software: ${a.software})` : ''}`;
}

export interface ChooseAdapterOptions {
  /** An adapter name (Dawn's `adapter=` substring), or null for the best one. */
  adapter?: string | null;
  /** Take a software adapter when no hardware one exists (forced runs and tests). */
  allowSoftware: boolean;
  /** The Dawn backends that were enumerated (for the error message). */
  dawnBackends?: readonly string[];
}

/**
 * The adapter to compute on: the named one, else the first hardware adapter, else (only when
 * allowed) the first software one. Throws BackendUnavailableError saying what was found.
 */
export function chooseAdapter(adapters: readonly WebgpuAdapter[], o: ChooseAdapterOptions): WebgpuAdapter {
  const found = adapters.length ? adapters.map((a) => describeAdapter(a)).join('; ') : 'none';
  if (o.adapter) {
    const want = o.adapter;
    const hit = adapters.find((a) => a.name.includes(want));
    if (!hit)
      throw new BackendUnavailableError(
        `no WebGPU adapter named ${JSON.stringify(want)} (${ADAPTER_ENV}); adapters: ${found}`,
        {
          context: { requested: want, adapters: adapters.map((a) => a.name) },
        },
      );
    if (hit.software && !o.allowSoftware)
      throw new BackendUnavailableError(
        `WebGPU adapter ${JSON.stringify(hit.name)} is a software adapter (${hit.software}); not chosen automatically`,
      );
    return hit;
  }
  const hardware = adapters.find((a) => !a.software);
  if (hardware) return hardware;
  const software = adapters[0];
  if (software && o.allowSoftware) return software;
  throw new BackendUnavailableError(
    software
      ? `only software WebGPU adapters found (${found}): not chosen automatically; force it with --backend webgpu`
      : `no WebGPU adapter found on Dawn backend(s) ${o.dawnBackends?.join(', ') ?? '(default)'} (${DAWN_BACKENDS_ENV} chooses them); on Linux Dawn needs libvulkan1 and the GPU's Vulkan driver, or libegl1 + libgles2 (set EGL_PLATFORM=surfaceless without a display)`,
    { context: { adapters: adapters.map((a) => a.name) } },
  );
}

/**
 * Requests the chosen adapter from a fresh Dawn instance fixed to its backend and name. The
 * instance must stay referenced while the device is in use (dawn.node tears down with it).
 */
export async function requestChosenAdapter(
  a: WebgpuAdapter,
): Promise<{ gpu: DawnGpu; adapter: DawnAdapter }> {
  const { create } = await loadDawn();
  const gpu = create(dawnFlags(a.dawnBackend, a.name));
  const adapter = await gpu.requestAdapter({
    featureLevel: FEATURE_LEVEL,
    powerPreference: 'high-performance',
  });
  if (!adapter) throw new BackendUnavailableError(`Dawn returned no adapter for ${describeAdapter(a)}`);
  return { gpu, adapter };
}

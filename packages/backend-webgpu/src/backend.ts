/**
 * TensorFlow.js's WebGPU backend (@tensorflow/tfjs-backend-webgpu) registered against a Dawn
 * adapter flatrank chose, instead of the package's own `navigator.gpu.requestAdapter()` (which in
 * Node has no navigator, and would take whatever adapter Dawn's default backend offers first).
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError } from '@flatrank/protocol';
import {
  ADAPTER_ENV,
  chooseAdapter,
  dawnBackendsFor,
  describeAdapter,
  listAdapters,
  noGpuDeviceReason,
  requestChosenAdapter,
  type WebgpuAdapter,
} from './adapters.js';
import {
  installedVersion,
  isDawnInstalled,
  isTfjsWebgpuInstalled,
  type DawnAdapter,
  type DawnDevice,
  type DawnGpu,
} from './dawn.js';

export const WEBGPU_BACKEND_NAME = 'webgpu';

/** What the loaded backend reports (the shape of trainers' LoadedBackend, plus the adapter). */
export interface LoadedWebgpuBackend {
  /** e.g. "@tensorflow/tfjs-backend-webgpu@4.22.0 on Dawn (webgpu@0.6.2, vulkan)" */
  version: string;
  /** The GPU does the work; one JS thread drives it. */
  threads: number;
  /** The adapter, e.g. "WebGPU llvmpipe (LLVM 15.0.6, 256 bits) [opengles, ...] (software: ...)" */
  device: string;
  customKernels: string[];
  heapLimitBytes: number | null;
  adapter: WebgpuAdapter;
}

export interface LoadWebgpuOptions {
  /**
   * Accept a software adapter (llvmpipe, SwiftShader, ...). False for automatic selection: a CPU
   * rasteriser is slower than every CPU backend. True when webgpu is forced.
   */
  allowSoftware: boolean;
  /** Adapter name (default: FLATRANK_WEBGPU_ADAPTER, else the first hardware adapter). */
  adapter?: string | null;
  env?: NodeJS.ProcessEnv;
  /** Adapters to choose from (tests); default: listAdapters(). */
  adapters?: WebgpuAdapter[];
}

/** Both optional packages are resolvable (loads nothing). */
export function isWebgpuInstalled(): boolean {
  return isDawnInstalled() && isTfjsWebgpuInstalled();
}

interface WebgpuBackendModule {
  WebGPUBackend: new (device: unknown, adapterInfo?: unknown) => tf.KernelBackend;
}

interface Loaded {
  adapter: WebgpuAdapter;
  gpu: DawnGpu;
  dawnAdapter: DawnAdapter;
  device: DawnDevice;
  info: LoadedWebgpuBackend;
}

let loaded: Loaded | null = null;

/** The adapter of the registered backend (null before loadWebgpuBackend succeeded). */
export function activeWebgpuAdapter(): WebgpuAdapter | null {
  return loaded?.adapter ?? null;
}

/**
 * Chooses an adapter, registers TF.js's 'webgpu' backend on it and makes it active. Idempotent: a
 * second call re-activates the registered backend (one adapter per process; pin workers instead).
 */
export async function loadWebgpuBackend(o: LoadWebgpuOptions): Promise<LoadedWebgpuBackend> {
  if (loaded && tf.findBackend(WEBGPU_BACKEND_NAME)) {
    if (loaded.adapter.software && !o.allowSoftware)
      throw new BackendUnavailableError(
        `the WebGPU adapter of this process is a software adapter (${loaded.adapter.software}); not chosen automatically`,
      );
    if (!(await tf.setBackend(WEBGPU_BACKEND_NAME)))
      throw new BackendUnavailableError('TF.js could not re-activate webgpu');
    return loaded.info;
  }
  if (!isDawnInstalled()) throw new BackendUnavailableError("npm package 'webgpu' (Dawn) is not installed");
  if (!isTfjsWebgpuInstalled())
    throw new BackendUnavailableError("npm package '@tensorflow/tfjs-backend-webgpu' is not installed");
  const env = o.env ?? process.env;
  const backends = dawnBackendsFor(env);
  const adapters = o.adapters ?? (await listAdapters({ dawnBackends: backends }));
  const chosen = chooseAdapter(adapters, {
    adapter: o.adapter ?? (env[ADAPTER_ENV]?.trim() || null),
    allowSoftware: o.allowSoftware,
    dawnBackends: backends,
  });
  const { gpu, adapter } = await requestChosenAdapter(chosen);
  const device = await adapter.requestDevice(deviceDescriptor(adapter));
  // Imported before navigator.gpu exists, so that the package skips its own registration (which
  // would ask navigator.gpu for an adapter without the feature level and pinning chosen here).
  const spec: string = '@tensorflow/tfjs-backend-webgpu';
  const mod = (await import(spec)) as WebgpuBackendModule;
  patchSyncReads(mod);
  // TF.js's WebGPU backend checks for navigator.gpu before it constructs.
  exposeNavigatorGpu(gpu);
  unregisterWebgpu();
  tf.registerBackend(WEBGPU_BACKEND_NAME, () => new mod.WebGPUBackend(device, adapter.info), 0);
  if (!(await tf.setBackend(WEBGPU_BACKEND_NAME)))
    throw new BackendUnavailableError(`TF.js could not initialise webgpu on ${describeAdapter(chosen)}`);
  const info: LoadedWebgpuBackend = {
    version: `@tensorflow/tfjs-backend-webgpu@${installedVersion('@tensorflow/tfjs-backend-webgpu') ?? '?'} on Dawn (webgpu@${installedVersion('webgpu') ?? '?'}, ${chosen.dawnBackend})`,
    threads: 1,
    device: `WebGPU ${describeAdapter(chosen)}`,
    customKernels: [],
    heapLimitBytes: null,
    adapter: chosen,
  };
  loaded = { adapter: chosen, gpu, dawnAdapter: adapter, device, info };
  return info;
}

/** The limits TF.js asks for, the storage-buffer counts its fused kernels need, core features when offered. */
function deviceDescriptor(a: DawnAdapter): {
  requiredFeatures: string[];
  requiredLimits: Record<string, number>;
} {
  const requiredFeatures = ['timestamp-query', 'core-features-and-limits'].filter((f) => a.features.has(f));
  const keys = [
    'maxComputeWorkgroupStorageSize',
    'maxComputeWorkgroupsPerDimension',
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupSizeX',
    'maxComputeInvocationsPerWorkgroup',
    'maxStorageBuffersPerShaderStage',
  ];
  const requiredLimits: Record<string, number> = {};
  for (const k of keys) if (typeof a.limits[k] === 'number') requiredLimits[k] = a.limits[k];
  return { requiredFeatures, requiredLimits };
}

function exposeNavigatorGpu(gpu: DawnGpu): void {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator === undefined)
    Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  Object.defineProperty(g.navigator!, 'gpu', { value: gpu, configurable: true, writable: true });
}

/**
 * TF.js's synchronous GPU read goes through OffscreenCanvas, which Node lacks. Values already read
 * asynchronously are cached on the CPU and still served; anything else gets an error that says
 * what to do instead of "OffscreenCanvas is not defined".
 */
function patchSyncReads(mod: WebgpuBackendModule): void {
  const proto = mod.WebGPUBackend.prototype as unknown as {
    readSync(dataId: object): unknown;
    tensorMap: { get(id: object): { values: unknown; dtype: string } };
    __flatrankPatched?: boolean;
  };
  if (proto.__flatrankPatched) return;
  const original = proto.readSync;
  proto.readSync = function (this: typeof proto, dataId: object) {
    const d = this.tensorMap.get(dataId);
    if (d.values != null || d.dtype === 'string' || d.dtype === 'complex64')
      return original.call(this, dataId);
    if (typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'function')
      return original.call(this, dataId);
    throw new BackendUnavailableError(
      'synchronous read of a GPU tensor on webgpu in Node (dataSync / arraySync): TF.js reads back through OffscreenCanvas, which Node lacks; await tensor.data() first',
    );
  };
  proto.__flatrankPatched = true;
}

/**
 * Disposes the backend and destroys the device so that the process can exit (dawn.node keeps the
 * event loop alive while its instance is referenced).
 */
export function releaseWebgpuBackend(): void {
  if (!loaded) return;
  unregisterWebgpu();
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator && g.navigator.gpu === loaded.gpu) delete g.navigator.gpu;
  loaded.device.destroy();
  loaded = null;
}

/** Removes TF.js's 'webgpu' registration, if any (tf.removeBackend throws for an unknown name). */
function unregisterWebgpu(): void {
  try {
    tf.removeBackend(WEBGPU_BACKEND_NAME);
  } catch {
    // not registered
  }
}

export type WebgpuProbe = { ok: true; adapters: WebgpuAdapter[] } | { ok: false; reason: string };

/**
 * Whether this process can run webgpu at all (packages installed, an adapter found), with the
 * reason when not: tests skip with it, gpu-check prints it.
 */
export async function probeWebgpu(env: NodeJS.ProcessEnv = process.env): Promise<WebgpuProbe> {
  if (!isDawnInstalled()) return { ok: false, reason: "npm package 'webgpu' (Dawn) is not installed" };
  if (!isTfjsWebgpuInstalled())
    return { ok: false, reason: "npm package '@tensorflow/tfjs-backend-webgpu' is not installed" };
  let adapters: WebgpuAdapter[];
  try {
    adapters = await listAdapters({ env });
  } catch (e) {
    return { ok: false, reason: `Dawn failed to enumerate adapters: ${(e as Error).message}` };
  }
  if (!adapters.length)
    return {
      ok: false,
      reason: `Dawn found no WebGPU adapter on ${dawnBackendsFor(env).join(', ')} (Linux without a GPU: apt-get install libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri and set EGL_PLATFORM=surfaceless)`,
    };
  return { ok: true, adapters };
}

/**
 * The selection policy the trainers' registry applies: automatic selection (forced false) skips a
 * machine without GPU device nodes before Dawn loads and refuses software adapters; forced, a
 * software adapter is used and stderr says so.
 */
export async function selectWebgpuBackend(o: { forced: boolean }): Promise<LoadedWebgpuBackend> {
  if (!o.forced) {
    const none = noGpuDeviceReason();
    if (none) throw new BackendUnavailableError(none);
  }
  const info = await loadWebgpuBackend({ allowSoftware: o.forced });
  if (info.adapter.software)
    process.stderr.write(
      `flatrank: webgpu runs on a software adapter, ${info.adapter.name} (${info.adapter.software}): it computes on the CPU, slower than the native and wasm backends\n`,
    );
  return info;
}

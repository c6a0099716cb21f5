/**
 * Dawn's Node bindings (npm `webgpu`), loaded at run time: the package is an optional dependency,
 * so nothing here imports it statically and its types are the few members flatrank uses.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The members of a WebGPU adapter's info flatrank records. */
export interface DawnAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter?: boolean;
}

export interface DawnDevice {
  readonly features: { has(name: string): boolean };
  readonly lost: Promise<{ reason: string; message: string }>;
  destroy(): void;
}

export interface DawnAdapter {
  readonly info: DawnAdapterInfo;
  readonly features: { has(name: string): boolean } & Iterable<string>;
  readonly limits: Record<string, number>;
  requestDevice(descriptor?: {
    requiredFeatures?: string[];
    requiredLimits?: Record<string, number>;
  }): Promise<DawnDevice>;
}

export interface DawnGpu {
  requestAdapter(options?: {
    featureLevel?: 'core' | 'compatibility';
    powerPreference?: 'low-power' | 'high-performance';
  }): Promise<DawnAdapter | null>;
}

export interface DawnModule {
  create(flags: string[]): DawnGpu;
  globals: Record<string, unknown>;
}

function resolvable(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** True when npm `webgpu` resolves from here (loads nothing). */
export const isDawnInstalled = (): boolean => resolvable('webgpu');

/** True when @tensorflow/tfjs-backend-webgpu resolves from here (loads nothing). */
export const isTfjsWebgpuInstalled = (): boolean => resolvable('@tensorflow/tfjs-backend-webgpu');

let dawn: Promise<DawnModule> | null = null;

/**
 * Imports dawn.node once per process and installs its WebGPU globals (GPUBufferUsage, ...) that
 * TF.js's WebGPU backend reads. Rejects when the package is absent or its binary does not load.
 */
export function loadDawn(): Promise<DawnModule> {
  dawn ??= (async () => {
    // A variable specifier: the package is optional and has no types in this build.
    // Without a display Mesa's EGL must be told to open a device without a window system
    // (read when Dawn's GL ES backend first opens EGL, so setting it here is in time).
    const env = process.env;
    if (!env['EGL_PLATFORM'] && !env['DISPLAY'] && !env['WAYLAND_DISPLAY'])
      env['EGL_PLATFORM'] = 'surfaceless';
    const spec: string = 'webgpu';
    const mod = (await import(spec)) as DawnModule;
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    return mod;
  })();
  const p = dawn;
  p.catch(() => {
    if (dawn === p) dawn = null;
  });
  return p;
}

/** Version of an installed package (reads its package.json, never imports it), or null. */
export function installedVersion(name: string): string | null {
  try {
    return (require(`${name}/package.json`) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

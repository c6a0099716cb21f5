/**
 * Backend selection. Candidates in preference order: tensorflow (tfjs-node-gpu, then tfjs-node) ->
 * native (@flatrank/backend-native: oneDNN kernels in a Node addon) -> wasm
 * (@flatrank/backend-wasm: SIMD + flatrank's training kernels) -> cpu. 'auto' takes the first
 * installed one that loads; a forced backend that is missing or fails to load is a
 * BackendUnavailableError naming what is installed.
 *
 * A backend package exports a presence check and a load function returning LoadedBackend (the
 * contract in @flatrank/protocol); this file adapts each to a BackendCandidate, at the bottom.
 */
import { cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import {
  BACKENDS,
  BackendUnavailableError,
  UnknownNameError,
  type BackendName,
  type LoadedBackend,
} from '@flatrank/protocol';
import { cpuModel, gpuNames, isResolvable, packageVersion } from './device.js';

export type { LoadedBackend };

export interface BackendCandidate {
  /** Cheap presence check (resolves packages / files; loads nothing heavy). */
  isInstalled(): boolean | Promise<boolean>;
  /**
   * Loads the backend, registers it with TF.js under the same name (tfjs-node registers
   * 'tensorflow') and makes it active (tf.setBackend). Must be
   * idempotent: initBackend calls it again when switching back. Throws when installed but broken.
   */
  load(ctx?: LoadContext): Promise<LoadedBackend>;
}

export interface LoadContext {
  /** The backend was named (--backend / FLATRANK_BACKEND), not picked by 'auto'. */
  forced: boolean;
}

export interface BackendInfo {
  name: BackendName;
  /** Version of the backend's implementation (tfjs-node, tfjs-backend-wasm, ...). */
  version: string;
  /** CPU model or GPU name. */
  device: string;
  threads: number;
  simd: boolean | null;
  customKernels: string[];
  heapLimitBytes: number | null;
  /** @tensorflow/tfjs-core version. */
  tfjsVersion: string;
  /** 'auto' or the forced name, and where the choice came from. */
  requested: BackendName | 'auto';
  requestedBy: 'option' | 'env' | 'default';
  /** Backends found installed at selection time, in preference order. */
  installed: BackendName[];
  /** Candidates 'auto' passed over, with why (absent, or failed to load). */
  skipped: Array<{ name: BackendName; reason: string }>;
}

const candidates = new Map<BackendName, BackendCandidate>();

/**
 * Adds or replaces the candidate for a backend name (the built-in ones are registered below).
 * Returns the candidate it replaces (tests restore it).
 */
export function registerBackendCandidate(
  name: BackendName,
  candidate: BackendCandidate,
): BackendCandidate | null {
  if (!(BACKENDS as readonly string[]).includes(name)) throw new UnknownNameError('backend', name, BACKENDS);
  const previous = candidates.get(name) ?? null;
  candidates.set(name, candidate);
  return previous;
}

/** The backends whose packages are present, in preference order. */
export async function installedBackends(): Promise<BackendName[]> {
  const out: BackendName[] = [];
  for (const name of BACKENDS) {
    const c = candidates.get(name);
    if (c && (await safeInstalled(c))) out.push(name);
  }
  return out;
}

let active: BackendInfo | null = null;

/** The backend chosen by the last initBackend call (null before). */
export function currentBackend(): BackendInfo | null {
  return active && tf.getBackend() === active.name ? active : null;
}

export interface InitBackendOptions {
  /** A backend name forces it; 'auto' (or absent) defers to FLATRANK_BACKEND, then the preference order. */
  backend?: BackendName | 'auto' | undefined;
  /** Environment to read FLATRANK_BACKEND from (tests). */
  env?: NodeJS.ProcessEnv;
}

export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  const env = opts.env ?? process.env;
  let requested: BackendName | 'auto' = 'auto';
  let requestedBy: BackendInfo['requestedBy'] = 'default';
  const allowed = [...BACKENDS, 'auto'] as const;
  if (opts.backend !== undefined && opts.backend !== 'auto') {
    requested = checkName('backend', opts.backend, allowed);
    requestedBy = 'option';
  } else if (env['FLATRANK_BACKEND']) {
    requested = checkName('FLATRANK_BACKEND', env['FLATRANK_BACKEND'], allowed);
    requestedBy = requested === 'auto' ? 'default' : 'env';
  }
  const installed = await installedBackends();
  const order: BackendName[] = requested === 'auto' ? [...BACKENDS] : [requested];
  const skipped: BackendInfo['skipped'] = [];
  for (const name of order) {
    const c = candidates.get(name);
    if (!c || !installed.includes(name)) {
      if (requested !== 'auto')
        throw new BackendUnavailableError(
          `backend '${name}' is not installed${hint(name)}; installed backends: ${installed.join(', ') || 'none'}`,
          { context: { requested: name, installed } },
        );
      skipped.push({ name, reason: 'not installed' });
      continue;
    }
    try {
      const info = await activate(name, c, { requested, requestedBy, installed, skipped });
      active = info;
      return info;
    } catch (e) {
      if (requested !== 'auto')
        throw new BackendUnavailableError(
          `backend '${name}' is installed but failed to load: ${(e as Error).message}; installed backends: ${installed.join(', ')}`,
          { context: { requested: name, installed }, cause: e },
        );
      skipped.push({ name, reason: `failed to load: ${(e as Error).message}` });
    }
  }
  throw new BackendUnavailableError(
    `no TF.js backend could be loaded (${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})`,
    {
      context: { skipped },
    },
  );
}

async function activate(
  name: BackendName,
  c: BackendCandidate,
  sel: Pick<BackendInfo, 'requested' | 'requestedBy' | 'installed' | 'skipped'>,
): Promise<BackendInfo> {
  const l = await c.load({ forced: sel.requested !== 'auto' });
  await tf.ready();
  if (tf.getBackend() !== name)
    throw new Error(`TF.js active backend is '${tf.getBackend()}' after loading '${name}'`);
  const info: BackendInfo = {
    name,
    version: l.version,
    device: l.device ?? cpuModel(),
    threads: l.threads,
    simd: l.simd ?? null,
    customKernels: l.customKernels ?? [],
    heapLimitBytes: l.heapLimitBytes ?? null,
    tfjsVersion: tf.version_core,
    ...sel,
  };
  return info;
}

function hint(name: BackendName): string {
  switch (name) {
    case 'tensorflow':
      return ' (npm install @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu; their install downloads libtensorflow)';
    case 'native':
      return ` (${nativeUnavailableDetail})`;
    case 'webgpu':
      return ' (npm install webgpu @tensorflow/tfjs-backend-webgpu: both optional dependencies of @flatrank/backend-webgpu)';
    default:
      return '';
  }
}

function checkName<T extends string>(field: string, got: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(got)) throw new UnknownNameError(field, got, allowed);
  return got as T;
}

async function safeInstalled(c: BackendCandidate): Promise<boolean> {
  try {
    return await c.isInstalled();
  } catch {
    return false;
  }
}

// ---- built-in candidates -------------------------------------------------------------------

const TFJS_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

registerBackendCandidate('tensorflow', {
  isInstalled: () => TFJS_NODE_PACKAGES.some((p) => isResolvable(p)),
  async load() {
    const pkg = TFJS_NODE_PACKAGES.find((p) => isResolvable(p))!;
    // A variable specifier: these optional packages have no types here and are usually absent.
    const spec: string = pkg;
    await import(spec);
    if (!(await tf.setBackend('tensorflow')))
      throw new Error(`${pkg} did not register the 'tensorflow' backend`);
    const gpus = pkg.endsWith('-gpu') ? gpuNames() : null;
    return {
      version: `${pkg}@${packageVersion(pkg) ?? '?'}`,
      threads: cpus().length,
      device: gpus && gpus.length ? gpus.join(', ') : cpuModel(),
    };
  },
});

/** One stderr line per process when the addon should be there but is not (not when switched off). */
let nativeMissingNoticed = false;
/** Why the addon was unavailable at the last presence check (for the error of a forced 'native'). */
let nativeUnavailableDetail = 'the native addon is unavailable';

// The backend packages are imported when selection first asks about them, not with the trainers:
// loading one registers TF.js kernels and backends.
registerBackendCandidate('native', {
  async isInstalled() {
    const st = (await import('@flatrank/backend-native')).nativeBackendStatus();
    if (!st.available) nativeUnavailableDetail = st.detail;
    if (!st.available && !nativeMissingNoticed && !st.detail.startsWith('disabled')) {
      nativeMissingNoticed = true;
      process.stderr.write(`flatrank: native backend unavailable (${st.detail}); falling back to wasm\n`);
    }
    return st.available;
  },
  load: async () => (await import('@flatrank/backend-native')).loadNativeBackend(),
});

registerBackendCandidate('webgpu', {
  isInstalled: async () => (await import('@flatrank/backend-webgpu')).isWebgpuInstalled(),
  load: async (ctx) =>
    (await import('@flatrank/backend-webgpu')).selectWebgpuBackend({ forced: ctx?.forced ?? false }),
});

registerBackendCandidate('wasm', {
  isInstalled: async () => (await import('@flatrank/backend-wasm')).wasmBackendInstalled(),
  load: async () => (await import('@flatrank/backend-wasm')).loadWasmBackend(),
});

registerBackendCandidate('cpu', {
  isInstalled: () => isResolvable('@tensorflow/tfjs-backend-cpu'),
  async load() {
    await import('@tensorflow/tfjs-backend-cpu');
    if (!(await tf.setBackend('cpu'))) throw new Error("tfjs-backend-cpu did not register the 'cpu' backend");
    // Chosen on purpose: skip its first-use banner recommending tfjs-node.
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
    return { version: packageVersion('@tensorflow/tfjs-backend-cpu') ?? tf.version_core, threads: 1 };
  },
});

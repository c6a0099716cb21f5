/**
 * The 'native' TF.js backend: the cpu backend's MathBackendCPU (plain typed-array tensors) with
 * every cpu kernel re-registered under 'native', and the hot ones (convolutions and their
 * gradients, matmul, pooling, batch norm, elementwise, reductions, copies) replaced by the addon's
 * oneDNN/OpenMP code using all cores. No wasm heap, so no 4 GiB cap.
 *
 * Backend selection (src/backend/registry.ts) discovers `nativeBackendCandidate` in this module.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, KernelFunc, NamedAttrMap, Tensor } from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { loadNativeAddon, type NativeAddon, type NativeAddonStatus } from './addon.js';
import { BATCH_NORM_GRAD_KERNEL, NATIVE_KERNELS, batchNormGradKernel, withFallback } from './kernels.js';

export const NATIVE_BACKEND_NAME = 'native';
/** Above wasm (2) and cpu (1), so plain tf.ready() also picks it when registered. */
const PRIORITY = 2.5;

/** Whether the addon can be used in this process, and why not. Cheap after the first call. */
export function nativeBackendStatus(): NativeAddonStatus {
  return loadNativeAddon().status;
}

let registered = false;

/**
 * Registers the 'native' backend and its kernels with TF.js (does not make it active).
 * Resolves false, registering nothing, when the addon is unavailable (see nativeBackendStatus()).
 */
export async function registerNativeBackend(): Promise<boolean> {
  const { addon } = loadNativeAddon();
  if (!addon) return false;
  if (!registered) {
    registerKernels(addon);
    tf.registerBackend(NATIVE_BACKEND_NAME, () => {
      const b = new MathBackendCPU();
      // MathBackendCPU advertises tfjs-node on first use in Node; that advice does not apply here.
      (b as unknown as { firstUse: boolean }).firstUse = false;
      return b;
    }, PRIORITY);
    registered = true;
  }
  installBatchNormGradient();
  return true;
}

/** Names of the kernels the addon implements (the others are the cpu backend's). */
export function nativeKernelNames(): string[] {
  return [...Object.keys(NATIVE_KERNELS), `FusedBatchNorm (gradient)`];
}

function registerKernels(addon: NativeAddon): void {
  const cpu = new Map(tf.getKernelsForBackend('cpu').map((k) => [k.kernelName, k]));
  if (cpu.size === 0) throw new Error('the cpu backend registered no kernels');
  for (const [name, cfg] of cpu) {
    if (tf.getKernel(name, NATIVE_BACKEND_NAME)) continue;
    const impl = NATIVE_KERNELS[name];
    tf.registerKernel({
      ...cfg,
      backendName: NATIVE_BACKEND_NAME,
      kernelFunc: impl ? withFallback(name, impl, addon, cfg.kernelFunc) : cfg.kernelFunc,
    });
  }
  // Native kernels the cpu backend lacks (none today, but keep them reachable).
  for (const [name, impl] of Object.entries(NATIVE_KERNELS))
    if (!tf.getKernel(name, NATIVE_BACKEND_NAME))
      tf.registerKernel({ kernelName: name, backendName: NATIVE_BACKEND_NAME, kernelFunc: withFallback(name, impl, addon, null) });
  tf.registerKernel({
    kernelName: BATCH_NORM_GRAD_KERNEL,
    backendName: NATIVE_BACKEND_NAME,
    kernelFunc: ((args: Parameters<typeof batchNormGradKernel>[0]) => {
      const r = batchNormGradKernel(args, addon);
      if (!r) throw new Error(`${BATCH_NORM_GRAD_KERNEL}: unsupported inputs`);
      return r;
    }) as unknown as KernelFunc,
  });
}

const OURS = Symbol('flatrank-native-bn-grad');

/**
 * Gradients are global in TF.js (one per kernel name, for every backend), so the native
 * FusedBatchNorm gradient wraps whichever gradient is registered: on 'native' with per-channel
 * statistics it runs one native pass; everywhere else it delegates unchanged. Re-installed on each
 * registerNativeBackend() call, since the wasm backend registers its own version when it loads.
 */
function installBatchNormGradient(): void {
  const prev = tf.getGradient('FusedBatchNorm') as (GradConfig & { [OURS]?: boolean }) | undefined;
  if (!prev || prev[OURS]) return;
  const cfg: GradConfig & { [OURS]: boolean } = {
    kernelName: 'FusedBatchNorm',
    inputsToSave: ['x', 'mean', 'variance', 'scale'],
    [OURS]: true,
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap) => {
      const [x, mean, variance, scale] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
      const C = x.shape[x.shape.length - 1];
      const fits =
        tf.getBackend() === NATIVE_BACKEND_NAME &&
        !Array.isArray(dy) &&
        x.dtype === 'float32' &&
        mean.rank === 1 &&
        variance.rank === 1 &&
        mean.size === C &&
        variance.size === C &&
        (scale == null || (scale.rank === 1 && scale.size === C));
      if (!fits) return prev.gradFunc(dy, saved, attrs);
      const inputs: Record<string, Tensor> = { dy: dy as Tensor, x, mean, variance };
      if (scale != null) inputs['scale'] = scale;
      const [dx, dmean, dvar, dscale, doffset] = tf.engine().runKernel(BATCH_NORM_GRAD_KERNEL, inputs, attrs) as Tensor[];
      return {
        x: () => dx!,
        mean: () => dmean!,
        variance: () => dvar!,
        scale: () => dscale!,
        offset: () => doffset!,
      };
    },
  };
  tf.registerGradient(cfg);
}

/** The candidate src/backend/registry.ts discovers: installed when the addon loads. */
export const nativeBackendCandidate = {
  isInstalled(): boolean {
    return nativeBackendStatus().available;
  },
  async load() {
    if (!(await registerNativeBackend())) throw new Error(`native addon unavailable: ${nativeBackendStatus().detail}`);
    if (!(await tf.setBackend(NATIVE_BACKEND_NAME))) throw new Error("the 'native' backend failed to initialise");
    const info = loadNativeAddon().addon!.info();
    return {
      version: `flatrank-native (oneDNN ${info.onednn})`,
      threads: info.threads,
      customKernels: nativeKernelNames(),
      heapLimitBytes: null,
    };
  },
};

/**
 * The 'native' TF.js backend: the cpu backend's MathBackendCPU (plain typed-array tensors) with
 * every cpu kernel re-registered under 'native', and the hot ones (convolutions and their
 * gradients, matmul, pooling, batch norm, elementwise, reductions, copies) replaced by the addon's
 * oneDNN code, run on all cores by a work-claiming thread pool. No wasm heap, so no 4 GiB cap.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, type LoadedBackend } from '@flatrank/protocol';
import type { GradConfig, KernelFunc, NamedAttrMap, Tensor } from '@tensorflow/tfjs-core';
import { NativeBackend } from './buffers.js';
import { loadNativeAddon, type NativeAddon, type NativeAddonStatus } from './addon.js';
import {
  BATCH_NORM_GRAD_KERNEL,
  GRADIENT_KERNELS,
  MEAN_GRAD_KERNEL,
  NATIVE_KERNELS,
  RELU_GRAD_KERNEL,
  SQUARE_GRAD_KERNEL,
  batchNormGradKernel,
  withFallback,
} from './kernels.js';

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
    // FLATRANK_NATIVE_POOL_MB caps the recycled-buffer free list (0 turns recycling off).
    const mb = Number(process.env['FLATRANK_NATIVE_POOL_MB'] ?? '1024');
    const cap = Number.isFinite(mb) && mb >= 0 ? mb * 1024 ** 2 : 1024 ** 3;
    tf.registerBackend(NATIVE_BACKEND_NAME, () => new NativeBackend(cap), PRIORITY);
    registered = true;
  }
  installGradients();
  return true;
}

/** Names of the kernels the addon implements (the others are the cpu backend's). */
export function nativeKernelNames(): string[] {
  return [...Object.keys(NATIVE_KERNELS), ...Object.keys(NATIVE_GRADIENTS).map((k) => `${k} (gradient)`)];
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
      tf.registerKernel({
        kernelName: name,
        backendName: NATIVE_BACKEND_NAME,
        kernelFunc: withFallback(name, impl, addon, null),
      });
  for (const [name, impl] of Object.entries(GRADIENT_KERNELS))
    tf.registerKernel({
      kernelName: name,
      backendName: NATIVE_BACKEND_NAME,
      kernelFunc: withFallback(name, impl, addon, null),
    });
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

const OURS = Symbol('flatrank-native-gradient');
type GradFunc = GradConfig['gradFunc'];
type Saved = Tensor[];
/** A native gradient: the input-gradient thunks, or null to use the wrapped (tfjs) gradient. */
type NativeGrad = (dy: Tensor, saved: Saved, attrs: NamedAttrMap) => Record<string, () => Tensor> | null;

const run = (kernel: string, inputs: Record<string, Tensor>, attrs: NamedAttrMap = {}) =>
  tf.engine().runKernel(kernel, inputs, attrs) as Tensor | Tensor[];

/**
 * Gradients with a native one-pass version. Each expects tfjs-core's inputsToSave for its kernel
 * (checked when installed) so that delegating to the wrapped gradient stays exact.
 */
const NATIVE_GRADIENTS: Record<string, { save: string[]; grad: NativeGrad }> = {
  // tfjs-core: mul(dy, cast(step(x))): two full passes.
  Relu: {
    save: ['x'],
    grad: (dy, [x]) => {
      if (dy.dtype !== 'float32' || x!.dtype !== 'float32') return null;
      // A fused ReLU's output (the Relu kernel passed it through): the gradient kernel of the
      // kernel that made it applies the ReLU's mask, so dy passes through here too.
      const b = tf.backend();
      if (b instanceof NativeBackend && b.isReluOutput(x!.dataId)) return { x: () => tf.clone(dy) };
      return { x: () => run(RELU_GRAD_KERNEL, { dy, x: x! }) as Tensor };
    },
  },
  // tfjs-core: mul(dy, mul(x, 2)).
  Square: {
    save: ['x'],
    grad: (dy, [x]) =>
      dy.dtype === 'float32' && x!.dtype === 'float32'
        ? { x: () => run(SQUARE_GRAD_KERNEL, { dy, x: x! }) as Tensor }
        : null,
  },
  // tfjs-core: div(mul(reshape(dy), ones(x.shape)), n): a fill and two full passes.
  Mean: {
    save: ['x'],
    grad: (dy, [x], attrs) => {
      if (dy.dtype !== 'float32') return null;
      const axes = tf.util.parseAxisParam(attrs['axis'] as number | number[], x!.shape);
      const reduceSize = axes.reduce((p, a) => p * x!.shape[a]!, 1);
      return { x: () => run(MEAN_GRAD_KERNEL, { dy }, { shape: x!.shape, axes, reduceSize }) as Tensor };
    },
  },
  // tfjs-core: a dozen full passes with Tile; here one pass for all five gradients.
  FusedBatchNorm: {
    save: ['x', 'mean', 'variance', 'scale'],
    grad: (dy, saved, attrs) => {
      const [x, mean, variance, scale] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
      const C = x.shape[x.shape.length - 1];
      const fits =
        x.dtype === 'float32' &&
        mean.rank === 1 &&
        variance.rank === 1 &&
        mean.size === C &&
        variance.size === C &&
        (scale == null || (scale.rank === 1 && scale.size === C));
      if (!fits) return null;
      const inputs: Record<string, Tensor> = { dy, x, mean, variance };
      if (scale != null) inputs['scale'] = scale;
      const [dx, dmean, dvar, dscale, doffset] = run(BATCH_NORM_GRAD_KERNEL, inputs, attrs) as Tensor[];
      return {
        x: () => dx!,
        mean: () => dmean!,
        variance: () => dvar!,
        scale: () => dscale!,
        offset: () => doffset!,
      };
    },
  },
};

/**
 * Gradients are global in TF.js (one per kernel name, for every backend), so each native gradient
 * wraps whichever gradient is registered: on 'native' it runs the one-pass kernel, everywhere else
 * (and for inputs it does not handle) it delegates unchanged. Re-installed on every
 * registerNativeBackend() call, since the wasm backend registers its own FusedBatchNorm gradient.
 */
function installGradients(): void {
  for (const [kernelName, { save, grad }] of Object.entries(NATIVE_GRADIENTS)) {
    const prev = tf.getGradient(kernelName) as (GradConfig & { [OURS]?: boolean }) | undefined;
    if (!prev || prev[OURS]) continue;
    if (JSON.stringify(prev.inputsToSave ?? []) !== JSON.stringify(save) || prev.outputsToSave?.some(Boolean))
      continue;
    const prevFunc: GradFunc = prev.gradFunc;
    const cfg: GradConfig & { [OURS]: boolean } = {
      kernelName,
      inputsToSave: save,
      [OURS]: true,
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap) => {
        const r =
          tf.getBackend() === NATIVE_BACKEND_NAME && !Array.isArray(dy) ? grad(dy, saved, attrs) : null;
        return r ?? prevFunc(dy, saved, attrs);
      },
    };
    tf.registerGradient(cfg);
  }
}

/**
 * Registers the 'native' backend, makes it the active TF.js backend and reports it. A
 * BackendUnavailableError (context: the addon status detail) says why when the addon is not
 * available: switched off, not built, or failing to load.
 */
export async function loadNativeBackend(): Promise<LoadedBackend> {
  if (!(await registerNativeBackend())) {
    const { detail } = nativeBackendStatus();
    throw new BackendUnavailableError(`native addon unavailable: ${detail}`, {
      context: { backend: NATIVE_BACKEND_NAME, detail },
    });
  }
  if (!(await tf.setBackend(NATIVE_BACKEND_NAME)))
    throw new BackendUnavailableError("the 'native' backend failed to initialise", {
      context: { backend: NATIVE_BACKEND_NAME },
    });
  const info = loadNativeAddon().addon!.info();
  return {
    // The thread count is part of what ran: two trials on two cores run best with one thread each.
    version: `flatrank-native (oneDNN ${info.onednn}, ${info.threads} thread${info.threads === 1 ? '' : 's'})`,
    threads: info.threads,
    customKernels: nativeKernelNames(),
    heapLimitBytes: null,
  };
}

/** Loads @tensorflow/tfjs-backend-wasm from the files shipped in its npm package (no download). */
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, type LoadedBackend } from '@flatrank/protocol';
import { registerWasmKernels } from './kernels.js';

const require = createRequire(import.meta.url);

export const WASM_BACKEND_NAME = 'wasm';

/** wasm32 addresses 4 GiB: the heap can never grow past this. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 1024 ** 3;

/** Whether tfjs-backend-wasm (and its .wasm binaries) can be found; loads nothing. */
export function wasmBackendInstalled(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-backend-wasm');
    return true;
  } catch {
    return false;
  }
}

let pathsSet = false;

/**
 * Registers flatrank's training kernels on the wasm backend, makes it the active TF.js backend and
 * reports it. Idempotent. A BackendUnavailableError when the wasm module fails to initialise.
 */
export async function loadWasmBackend(): Promise<LoadedBackend> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (!pathsSet) {
    // setWasmPaths wants a prefix ending in '/'; the .wasm binaries sit in the package's dist/.
    const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
    wasm.setWasmPaths(dist);
    pathsSet = true;
  }
  const customKernels = registerWasmKernels();
  if (!(await tf.setBackend(WASM_BACKEND_NAME)))
    throw new BackendUnavailableError('tfjs-backend-wasm failed to initialise (see the warning above)', {
      context: { backend: WASM_BACKEND_NAME },
    });
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
  return {
    version: wasm.version_wasm,
    threads: wasm.getThreadsCount(),
    simd,
    customKernels,
    heapLimitBytes: WASM_HEAP_LIMIT_BYTES,
  };
}

/** Current size of the wasm heap in bytes (null when the active backend is not wasm). */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== WASM_BACKEND_NAME) return null;
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8?.length ?? null;
}

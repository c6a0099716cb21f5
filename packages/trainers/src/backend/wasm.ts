/** Loads @tensorflow/tfjs-backend-wasm from the files shipped in its npm package (no download). */
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { packageVersion } from './device.js';
import type { LoadedBackend } from './registry.js';
import { registerWasmKernels } from './wasm-kernels.js';

const require = createRequire(import.meta.url);

/** wasm32 addresses 4 GiB: the heap can never grow past this. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 1024 ** 3;

let pathsSet = false;

export async function loadWasmBackend(): Promise<LoadedBackend> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (!pathsSet) {
    // setWasmPaths wants a prefix ending in '/'; the .wasm binaries sit in the package's dist/.
    const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
    wasm.setWasmPaths(dist);
    pathsSet = true;
  }
  const customKernels = registerWasmKernels();
  if (!(await tf.setBackend('wasm')))
    throw new Error('tfjs-backend-wasm failed to initialise (see the warning above)');
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
  return {
    version: packageVersion('@tensorflow/tfjs-backend-wasm') ?? wasm.version_wasm,
    threads: wasm.getThreadsCount(),
    simd,
    customKernels,
    heapLimitBytes: WASM_HEAP_LIMIT_BYTES,
  };
}

/** Current size of the wasm heap in bytes (null when the active backend is not wasm). */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8?.length ?? null;
}

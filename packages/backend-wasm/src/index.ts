export {
  WASM_BACKEND_NAME,
  WASM_HEAP_LIMIT_BYTES,
  loadWasmBackend,
  wasmBackendInstalled,
  wasmHeapBytes,
} from './backend.js';
export { registerWasmKernels, useBatchNormGradient, CUSTOM_WASM_KERNELS } from './kernels.js';

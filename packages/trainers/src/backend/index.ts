export {
  initBackend,
  registerBackendCandidate,
  installedBackends,
  currentBackend,
  type BackendInfo,
  type BackendCandidate,
  type LoadedBackend,
  type InitBackendOptions,
} from './registry.js';
export { runEnvironment } from './environment.js';
export { cpuModel, gpuNames, packageVersion } from './device.js';
export {
  estimateTrainingMemory,
  checkTrainingMemory,
  withMemoryGuard,
  isOutOfMemoryError,
  type MemoryEstimate,
} from './memory.js';

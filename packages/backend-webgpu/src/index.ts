export {
  loadWebgpuBackend,
  releaseWebgpuBackend,
  activeWebgpuAdapter,
  isWebgpuInstalled,
  probeWebgpu,
  type WebgpuProbe,
  WEBGPU_BACKEND_NAME,
  type LoadedWebgpuBackend,
  type LoadWebgpuOptions,
} from './backend.js';
export {
  listAdapters,
  chooseAdapter,
  describeAdapter,
  softwareAdapterReason,
  dawnBackendsFor,
  parseAvailableAdapters,
  ADAPTER_ENV,
  DAWN_BACKENDS_ENV,
  DAWN_BACKENDS,
  FEATURE_LEVEL,
  type WebgpuAdapter,
  type DawnBackend,
  type ListAdaptersOptions,
  type ChooseAdapterOptions,
} from './adapters.js';
export { isDawnInstalled, isTfjsWebgpuInstalled } from './dawn.js';

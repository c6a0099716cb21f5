export {
  NATIVE_BACKEND_NAME,
  loadNativeBackend,
  nativeBackendStatus,
  nativeKernelNames,
  registerNativeBackend,
} from './backend.js';
export {
  loadNativeAddon,
  resetNativeAddonCache,
  addonPath,
  type NativeAddon,
  type NativeAddonStatus,
} from './addon.js';

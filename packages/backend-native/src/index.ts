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
  type NativeConvStat,
} from './addon.js';
export {
  profileNative,
  convGeometry,
  convFlops,
  kernelFlops,
  convLayerLabel,
  type ConvGeometry,
  type ConvPass,
  type KernelCall,
  type ProfiledRun,
} from './profile.js';
export {
  summarizeProfile,
  type ConvRow,
  type KernelRow,
  type ProfileSummary,
  type ProfileSummaryOptions,
  type StepSummary,
} from './profile-summary.js';

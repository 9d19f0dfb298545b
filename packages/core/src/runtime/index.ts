export {
  initRuntime,
  gpuInfo,
  gpuDevice,
  disposeRuntime,
  isSoftwareGpu,
  requireRuntime,
} from "./runtime.js";
export type { GpuInfo, RuntimeOptions } from "./runtime.js";
export {
  describeAdapter,
  isSoftwareAdapter,
  OPTIONAL_FEATURES,
} from "./device.js";
export type { DeviceRequest } from "./device.js";
export { gpuMemory, resetPeakMemory, tagMemory } from "./memory.js";
export type { GpuMemory, MemoryCategory } from "./memory.js";

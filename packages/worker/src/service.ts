/** TrainerApi implemented with @webtune/core; runs in the worker, and in-thread for tests. */
import {
  disposeRuntime,
  gpuInfo,
  initRuntime,
  verifyLoraKernels,
  type GpuInfo,
  type LoraCheckCase,
  type LoraCheckResult,
  type RuntimeOptions,
} from "@webtune/core";
import type { TrainerApi } from "./api.js";

export class TrainerService implements TrainerApi {
  init(options?: RuntimeOptions): Promise<GpuInfo> {
    return initRuntime(options);
  }

  async gpuInfo(): Promise<GpuInfo> {
    return gpuInfo();
  }

  verifyKernels(cases?: LoraCheckCase[]): Promise<LoraCheckResult[]> {
    return verifyLoraKernels(cases);
  }

  async dispose(): Promise<void> {
    disposeRuntime();
  }
}

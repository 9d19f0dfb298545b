/** What the kernel-check worker exposes through comlink. */
import type { GpuInfo, LoraCheckResult } from "@webtune/core";

export interface KernelCheckReport {
  info: GpuInfo;
  results: LoraCheckResult[];
  /** True when the check ran inside a dedicated worker, as training will. */
  inWorker: boolean;
}

export interface KernelCheckApi {
  run(): Promise<KernelCheckReport>;
}

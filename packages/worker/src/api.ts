/**
 * The API of webtune's worker, as the main thread sees it through comlink. Types only.
 * Training, data and adapter methods join this interface as those layers land.
 */
import type {
  GpuInfo,
  LoraCheckCase,
  LoraCheckResult,
  RuntimeOptions,
} from "@webtune/core";

export interface TrainerApi {
  /** Starts WebGPU inside the worker (idempotent) and reports the device. */
  init(options?: RuntimeOptions): Promise<GpuInfo>;
  /** The device the worker runs on; rejects with DeviceError before `init` or after a device loss. */
  gpuInfo(): Promise<GpuInfo>;
  /** Runs the LoRA kernels against their CPU references on the worker's device. */
  verifyKernels(cases?: LoraCheckCase[]): Promise<LoraCheckResult[]>;
  /** Releases every tensor and the GPU device. The worker can be initialised again afterwards. */
  dispose(): Promise<void>;
}

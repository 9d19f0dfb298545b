/**
 * The API of webtune's worker, as the main thread sees it through comlink. Types only.
 * Training, data and adapter methods join this interface as those layers land.
 */
import type {
  DownloadProgress,
  GenerateOptions,
  GenerateResult,
  GpuInfo,
  LoadOptions,
  LoraCheckCase,
  LoraCheckResult,
  ModelDims,
  ModelSource,
  RuntimeOptions,
} from "@webtune/core";

/** What the worker reports about the model it loaded. */
export interface ModelInfo {
  source: string;
  dims: ModelDims;
  /** Parameters of the frozen base model. */
  parameters: number;
  hasTokenizer: boolean;
  hasChatTemplate: boolean;
}

/** Load options that can cross to the worker (callbacks go as separate, proxied arguments). */
export type WorkerLoadOptions = Omit<LoadOptions, "onProgress" | "signal">;
/** Generation options that can cross to the worker. */
export type WorkerGenerateOptions = Omit<GenerateOptions, "onToken">;

export interface TrainerApi {
  /** Starts WebGPU inside the worker (idempotent) and reports the device. */
  init(options?: RuntimeOptions): Promise<GpuInfo>;
  /** The device the worker runs on; rejects with DeviceError before `init` or after a device loss. */
  gpuInfo(): Promise<GpuInfo>;
  /** Runs the LoRA kernels against their CPU references on the worker's device. */
  verifyKernels(cases?: LoraCheckCase[]): Promise<LoraCheckResult[]>;
  /**
   * Loads a model (hub id, URL, or the Files of a picked folder) in the worker, replacing any loaded one.
   * Pass `onProgress` wrapped in `Comlink.proxy`.
   */
  loadModel(
    source: ModelSource,
    options?: WorkerLoadOptions,
    onProgress?: (event: DownloadProgress) => void,
  ): Promise<ModelInfo>;
  /** Continues a prompt; pass `onToken` wrapped in `Comlink.proxy` to stream. */
  generate(
    prompt: string | number[],
    options?: WorkerGenerateOptions,
    onToken?: (token: { id: number; text: string }) => void,
  ): Promise<GenerateResult>;
  /** Mean next-token cross-entropy of token ids [batch, tokens]. */
  loss(ids: number[][]): Promise<number>;
  /** Releases the model, every tensor and the GPU device. The worker can be initialised again afterwards. */
  dispose(): Promise<void>;
}

/** TrainerApi implemented with @webtune/core; runs in the worker, and in-thread for tests. */
import {
  ConfigError,
  disposeRuntime,
  gpuInfo,
  initRuntime,
  loadModel,
  verifyLoraKernels,
  type DownloadProgress,
  type GenerateResult,
  type GpuInfo,
  type LoraCheckCase,
  type LoraCheckResult,
  type ModelSource,
  type PretrainedModel,
  type RuntimeOptions,
} from "@webtune/core";
import type {
  ModelInfo,
  TrainerApi,
  WorkerGenerateOptions,
  WorkerLoadOptions,
} from "./api.js";

export class TrainerService implements TrainerApi {
  private model: PretrainedModel | undefined;

  init(options?: RuntimeOptions): Promise<GpuInfo> {
    return initRuntime(options);
  }

  async gpuInfo(): Promise<GpuInfo> {
    return gpuInfo();
  }

  verifyKernels(cases?: LoraCheckCase[]): Promise<LoraCheckResult[]> {
    return verifyLoraKernels(cases);
  }

  async loadModel(
    source: ModelSource,
    options: WorkerLoadOptions = {},
    onProgress?: (event: DownloadProgress) => void,
  ): Promise<ModelInfo> {
    await initRuntime();
    const model = await loadModel(source, { ...options, onProgress });
    this.model?.dispose();
    this.model = model;
    return {
      source: model.source,
      dims: model.dims,
      parameters: model.lm.parameterCount(),
      hasTokenizer: model.tokenizer !== undefined,
      hasChatTemplate: (model.tokenizer?.chatTemplateNames.length ?? 0) > 0,
    };
  }

  generate(
    prompt: string | number[],
    options: WorkerGenerateOptions = {},
    onToken?: (token: { id: number; text: string }) => void,
  ): Promise<GenerateResult> {
    return this.requireModel().generate(prompt, { ...options, onToken });
  }

  async loss(ids: number[][]): Promise<number> {
    const loss = this.requireModel().loss(ids);
    try {
      return (await loss.data())[0]!;
    } finally {
      loss.dispose();
    }
  }

  async dispose(): Promise<void> {
    this.model?.dispose();
    this.model = undefined;
    disposeRuntime();
  }

  private requireModel(): PretrainedModel {
    if (!this.model)
      throw new ConfigError(
        "No model is loaded in the worker: call loadModel(source) first.",
      );
    return this.model;
  }
}

/** TrainerApi implemented with @webtune/core; runs in the worker, and in-thread for tests. */
import * as Comlink from "comlink";
import {
  epochBatches,
  buildDataset,
  evaluate,
  LoraModel,
  splitDataset,
  Trainer,
  type AdapterFiles,
  type EvaluationResult,
  type Example,
  type LoraConfig,
  type LoraConfigInput,
  type TrainBatch,
  type TrainEvent,
  type TrainResult,
  type DatasetFormat,
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
  DataOptions,
  DataSummary,
  ModelInfo,
  TrainerApi,
  WorkerGenerateOptions,
  WorkerLoadOptions,
  WorkerTrainOptions,
} from "./api.js";

interface LoadedData {
  format: DatasetFormat;
  labels?: string[];
  train: Example[];
  val: Example[];
  test: Example[];
  seed: number;
}

export class TrainerService implements TrainerApi {
  private model: PretrainedModel | undefined;
  private peft: LoraModel | undefined;
  private data: LoadedData | undefined;
  private trainer: Trainer | undefined;

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
    this.releaseModel();
    this.model = model;
    this.peft = new LoraModel(model);
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
    return this.requirePeft().generate(prompt, { ...options, onToken });
  }

  async loss(ids: number[][]): Promise<number> {
    const loss = this.requirePeft().loss(ids);
    try {
      return (await loss.data())[0]!;
    } finally {
      loss.dispose();
    }
  }

  async loadData(
    input: string | ArrayBuffer,
    o: DataOptions,
  ): Promise<DataSummary> {
    const model = this.requireModel();
    if (!model.tokenizer)
      throw new ConfigError(
        `${model.source} has no tokenizer.json, which reading a dataset needs.`,
      );
    const text = typeof input === "string" ? input : new Uint8Array(input);
    const data = buildDataset(text, model.tokenizer, {
      source: o.source,
      format: o.format,
      maxLength: o.maxLength ?? 256,
      truncate: true,
    });
    const seed = o.seed ?? 0;
    const split = splitDataset(data.examples, {
      val: o.valSplit ?? 0.1,
      test: o.testSplit ?? 0,
      seed,
      stratify: data.format === "classification",
    });
    this.data = { format: data.format, labels: data.labels, ...split, seed };
    return {
      format: data.format,
      report: data.report,
      labels: data.labels,
      sizes: {
        train: split.train.length,
        val: split.val.length,
        test: split.test.length,
      },
    };
  }

  async addAdapter(
    name: string,
    config: LoraConfigInput,
  ): Promise<{ config: LoraConfig; summary: string }> {
    const peft = this.requirePeft();
    const added = peft.addAdapter(name, config, { seed: this.data?.seed ?? 0 });
    peft.setAdapter(name);
    return { config: added, summary: peft.printTrainableParameters() };
  }

  async train(
    options: WorkerTrainOptions = {},
    onEvent?: (event: TrainEvent) => void,
  ): Promise<TrainResult> {
    const peft = this.requirePeft();
    const data = this.requireData();
    if (this.trainer)
      throw new ConfigError(
        "Training is already running in this worker; abort() it first.",
      );
    const { batchSize = 8, epochs = 1, ...trainerOptions } = options;
    const padId = this.requireModel().tokenizer?.padTokenId ?? 0;
    const list = (
      examples: Example[],
      epochs: number,
      shuffle: boolean,
    ): TrainBatch[] =>
      epochBatches(
        examples,
        { batchSize, padId, seed: data.seed, epoch: 0, shuffle },
        epochs,
      );
    const train = list(data.train, epochs, true);
    this.trainer = new Trainer(peft, {
      ...trainerOptions,
      batchesPerEpoch: train.length / epochs,
      onEvent,
    });
    try {
      return await this.trainer.train({
        train,
        val: data.val.length > 0 ? list(data.val, 1, false) : undefined,
      });
    } finally {
      this.trainer = undefined;
    }
  }

  async pause(): Promise<void> {
    this.trainer?.pause();
  }

  async resume(): Promise<void> {
    this.trainer?.resume();
  }

  async abort(): Promise<void> {
    this.trainer?.abort();
  }

  async evaluate(split: "val" | "test"): Promise<EvaluationResult> {
    const data = this.requireData();
    const examples = data[split];
    if (examples.length === 0)
      throw new ConfigError(
        `The ${split} split is empty: loadData with a ${split}Split above 0.`,
      );
    return evaluate(
      this.requirePeft(),
      this.requireModel().tokenizer!,
      examples,
      { format: data.format, labels: data.labels },
    );
  }

  async saveAdapter(): Promise<AdapterFiles> {
    const files = await this.requirePeft().saveAdapter();
    return Comlink.transfer(files, [
      files["adapter_model.safetensors"].buffer as ArrayBuffer,
    ]);
  }

  async loadAdapter(
    name: string,
    source: AdapterFiles | ModelSource,
  ): Promise<LoraConfig> {
    const peft = this.requirePeft();
    const config = await peft.loadAdapter(name, source);
    peft.setAdapter(name);
    return config;
  }

  async merge(): Promise<void> {
    this.requirePeft().merge();
  }

  async unmerge(): Promise<void> {
    this.requirePeft().unmerge();
  }

  async dispose(): Promise<void> {
    this.trainer?.abort();
    this.releaseModel();
    disposeRuntime();
  }

  private releaseModel(): void {
    this.peft?.dispose();
    this.model?.dispose();
    this.peft = this.model = this.data = undefined;
  }

  private requirePeft(): LoraModel {
    this.requireModel();
    return this.peft!;
  }

  private requireData(): LoadedData {
    if (!this.data)
      throw new ConfigError(
        "No dataset is loaded in the worker: call loadData(text, { source }) first.",
      );
    return this.data;
  }

  private requireModel(): PretrainedModel {
    if (!this.model)
      throw new ConfigError(
        "No model is loaded in the worker: call loadModel(source) first.",
      );
    return this.model;
  }
}

/** TrainerApi implemented with @webtune/core; runs in the worker, and in-thread for tests. */
import * as Comlink from "comlink";
import {
  epochBatches,
  epochSequence,
  evaluate,
  LoraModel,
  Trainer,
  savePretrained,
  defaultCheckpointStore,
  type AdapterFiles,
  type CheckpointStore,
  type EvaluationResult,
  type LoraConfig,
  type LoraConfigInput,
  type TrainEvent,
  type TrainResult,
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
  CheckpointInfo,
  DataOptions,
  DataSummary,
  ModelInfo,
  TrainerApi,
  WorkerEvaluateOptions,
  WorkerGenerateOptions,
  WorkerLoadOptions,
  WorkerTrainOptions,
} from "./api.js";
import { readData, type LoadedData } from "./data.js";

/** Where checkpoints go unless the service is given a store: OPFS in browsers, a folder in Node. */
export const DEFAULT_CHECKPOINT_FOLDER = "webtune-checkpoints";

/** Trainer.checkpoint names checkpoints "step-000042". */
const checkpointStep = (name: string) =>
  Number(/^step-(\d+)$/.exec(name)?.[1] ?? NaN);

/**
 * The weights buffers of a set of files, for transferring them instead of copying. Only the freshly written
 * safetensors: the other files can be views of the source model's bytes, which must stay usable here.
 */
const weightBuffers = (files: object) =>
  Object.entries(files).flatMap(([name, data]) =>
    name.endsWith(".safetensors") ? [(data as Uint8Array).buffer] : [],
  ) as ArrayBuffer[];

export class TrainerService implements TrainerApi {
  private model: PretrainedModel | undefined;
  private peft: LoraModel | undefined;
  private data: LoadedData | undefined;
  private trainer: Trainer | undefined;

  constructor(
    private readonly checkpoints: CheckpointStore = defaultCheckpointStore(
      DEFAULT_CHECKPOINT_FOLDER,
    ),
  ) {}

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
      weightBytes: model.lm.weightBytes(),
      weightFormat: model.lm.projectionFormat(),
      hasTokenizer: model.tokenizer !== undefined,
      hasChatTemplate: (model.tokenizer?.chatTemplateNames.length ?? 0) > 0,
      targetModules: [
        ...new Set(model.linears().map((l) => l.name.split(".").at(-1)!)),
      ],
    };
  }

  async generate(
    prompt: string | number[],
    options: WorkerGenerateOptions = {},
    onToken?: (token: { id: number; text: string }) => void,
  ): Promise<GenerateResult> {
    const { useAdapter = true, ...generateOptions } = options;
    const peft = this.requirePeft();
    const run = () => peft.generate(prompt, { ...generateOptions, onToken });
    return useAdapter ? run() : peft.withAdaptersDisabled(run);
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
    options: DataOptions,
  ): Promise<DataSummary> {
    const model = this.requireModel();
    if (!model.tokenizer)
      throw new ConfigError(
        `${model.source} has no tokenizer.json, which reading a dataset needs.`,
      );
    const { data, summary } = readData(
      input,
      options,
      model.tokenizer,
      model.dims.vocabSize,
    );
    this.data = data;
    return summary;
  }

  async addAdapter(
    name: string,
    config: LoraConfigInput,
  ): Promise<{ config: LoraConfig; summary: string }> {
    const peft = this.requirePeft();
    // A new run under the same name starts from a fresh adapter, as a page's Train button expects.
    if (peft.adapterNames.includes(name)) {
      peft.unmerge();
      peft.deleteAdapter(name);
    }
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
    const {
      batchSize = 8,
      epochs = 1,
      checkpointEvery,
      resumeFrom,
      valRows,
      ...trainerOptions
    } = options;
    const resume = resumeFrom
      ? await this.checkpoints.load(resumeFrom)
      : undefined;
    if (!resume && checkpointEvery) await this.checkpoints.clear();
    const padId = this.requireModel().tokenizer?.padTokenId ?? 0;
    const batchOptions = { batchSize, padId, seed: data.seed, epoch: 0 };
    // Made as they are read: many epochs cost no memory.
    const train = epochSequence(data.train, batchOptions, epochs);
    const val = data.val.slice(0, valRows);
    this.trainer = new Trainer(peft, {
      ...trainerOptions,
      batchesPerEpoch: train.length / epochs,
      checkpoint: checkpointEvery
        ? { store: this.checkpoints, every: checkpointEvery }
        : undefined,
      onEvent,
    });
    try {
      return await this.trainer.train(
        {
          train,
          val:
            val.length > 0
              ? epochBatches(val, { ...batchOptions, shuffle: false }, 1)
              : undefined,
        },
        resume,
      );
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

  async evaluate(
    split: "val" | "test",
    options: WorkerEvaluateOptions = {},
  ): Promise<EvaluationResult> {
    const data = this.requireData();
    const examples = data[split].slice(0, options.maxRows);
    if (examples.length === 0)
      throw new ConfigError(
        `The ${split} split is empty: loadData with a ${split}Split above 0${split === "test" ? " or a test file" : ""}.`,
      );
    const peft = this.requirePeft();
    const run = () =>
      evaluate(peft, this.requireModel().tokenizer!, examples, {
        format: data.format,
        labels: data.labels,
      });
    return options.useAdapter === false
      ? peft.withAdaptersDisabled(run)
      : run();
  }

  async saveAdapter(): Promise<AdapterFiles> {
    const files = await this.requirePeft().saveAdapter();
    return Comlink.transfer(files, weightBuffers(files));
  }

  async saveMerged(): Promise<Record<string, Uint8Array | string>> {
    const peft = this.requirePeft();
    peft.merge();
    try {
      const files = await savePretrained(this.requireModel());
      return Comlink.transfer(files, weightBuffers(files));
    } finally {
      peft.unmerge();
    }
  }

  async listCheckpoints(): Promise<CheckpointInfo[]> {
    return (await this.checkpoints.list())
      .map((name) => ({ name, step: checkpointStep(name) }))
      .filter((c) => Number.isInteger(c.step));
  }

  clearCheckpoints(): Promise<void> {
    return this.checkpoints.clear();
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

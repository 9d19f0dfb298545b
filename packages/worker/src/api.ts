/** The API of webtune's worker, as the main thread sees it through comlink. Types only. */
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
  AdapterFiles,
  CleaningReport,
  DatasetFormat,
  EvaluationResult,
  LoraConfig,
  LoraConfigInput,
  OptionNames,
  TrainEvent,
  TrainerOptions,
  TrainResult,
  WeightOptions,
} from "@webtune/core";

/** What the worker reports about the model it loaded. */
export interface ModelInfo {
  source: string;
  dims: ModelDims;
  /** Parameters of the frozen base model. */
  parameters: number;
  /** Bytes its weights take on the GPU in the storage it was loaded with. */
  weightBytes: number;
  /** The projections' storage: "float32", "float16", "int8" or "nf4". */
  weightFormat: string;
  hasTokenizer: boolean;
  hasChatTemplate: boolean;
  /** The distinct Linear module names LoRA can target, e.g. ["q_proj", "k_proj", ...]. */
  targetModules: string[];
}

/**
 * Load options that can cross to the worker (callbacks go as separate, proxied arguments), with the base's
 * storage: `dtype: "float16"`, or `quantize: "int8" | "nf4"` (QLoRA). The worker trains adapters only, so
 * `trainable` is not offered.
 */
export type WorkerLoadOptions = Omit<LoadOptions, "onProgress" | "signal"> &
  Omit<WeightOptions, "trainable">;
/** Generation options that can cross to the worker. */
export type WorkerGenerateOptions = Omit<GenerateOptions, "onToken"> & {
  /** false: the frozen base model alone, for before/after comparisons. Default true. */
  useAdapter?: boolean;
};

/** What `evaluate` scores. */
export interface WorkerEvaluateOptions {
  /** Score only the first N rows of the split (generation-based metrics cost one decode per row). */
  maxRows?: number;
  /** false: the frozen base model alone. Default true. */
  useAdapter?: boolean;
}

/** How to read and split a dataset in the worker. */
export interface DataOptions {
  /** File name, for messages and the file type ("train.jsonl", "data.csv"). */
  source: string;
  format?: DatasetFormat;
  /** Tokens per example; longer ones are truncated. Default 256. */
  maxLength?: number;
  /** Fractions held out. Defaults 0.1 and 0. */
  valSplit?: number;
  testSplit?: number;
  seed?: number;
  /** A separate test file (a preset's test.jsonl, say); `testSplit` is then ignored. */
  test?: { input: string | ArrayBuffer; source: string };
  /** Drop rows that cannot be read (counted as malformed) instead of failing on the first. Default false. */
  skipBadRows?: boolean;
  /** How messages name the page's controls for these options (see buildDataset's optionNames). */
  optionNames?: Partial<OptionNames>;
}

/** A training row as the model will see it, for a preview. */
export interface PreviewRow {
  /** The prompt text generation starts from (instruction and classification data). */
  prompt?: string;
  /** The text the loss is on. */
  target: string;
  label?: string;
  tokens: number;
}

export interface DataSummary {
  format: DatasetFormat;
  report: CleaningReport;
  labels?: string[];
  sizes: { train: number; val: number; test: number };
  /** The first rows of each split, tokenized and decoded back. */
  preview: { train: PreviewRow[]; test: PreviewRow[] };
  /**
   * Test rows whose record the training data (its train or validation split) also holds: how many, and their first
   * lines in the test file. Always none for a test split of one cleaned (deduplicated) file.
   */
  overlap: { rows: number; lines: number[] };
}

/** A saved training checkpoint (OPFS in browsers). */
export interface CheckpointInfo {
  name: string;
  /** Optimizer steps done when it was saved. */
  step: number;
}

/** Trainer options that can cross to the worker, plus batching. */
export type WorkerTrainOptions = Omit<
  TrainerOptions,
  "onEvent" | "checkpoint"
> & {
  /** Examples per micro-batch. Default 8. */
  batchSize?: number;
  /** Passes over the training split. Default 1. */
  epochs?: number;
  /** Validate on the first N rows of the validation split (each check costs a forward pass over them). Default: all. */
  valRows?: number;
  /** Save a checkpoint every N optimizer steps to the worker's checkpoint store (OPFS in browsers). */
  checkpointEvery?: number;
  /**
   * Continue from this checkpoint (see `listCheckpoints`) with the same model, data, adapter config and options;
   * otherwise a new run deletes the old checkpoints first.
   */
  resumeFrom?: string;
};

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
  /** Reads, cleans, tokenizes and splits a dataset (text or bytes) with the model's tokenizer. */
  loadData(
    input: string | ArrayBuffer,
    options: DataOptions,
  ): Promise<DataSummary>;
  /** Adds a LoRA adapter (PEFT config), replacing one of that name, and makes it active; returns PEFT's trainable-parameters line too. */
  addAdapter(
    name: string,
    config: LoraConfigInput,
  ): Promise<{ config: LoraConfig; summary: string }>;
  /** Trains the active adapter on the loaded data; pass `onEvent` wrapped in `Comlink.proxy` for live events. */
  train(
    options?: WorkerTrainOptions,
    onEvent?: (event: TrainEvent) => void,
  ): Promise<TrainResult>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Ends training after the current step. */
  abort(): Promise<void>;
  /** Loss, perplexity and the task's metrics on a split of the loaded data. */
  evaluate(
    split: "val" | "test",
    options?: WorkerEvaluateOptions,
  ): Promise<EvaluationResult>;
  /** The active adapter's PEFT files; the weights buffer is transferred, not copied. */
  saveAdapter(): Promise<AdapterFiles>;
  /**
   * A Hugging Face model folder with the active adapter merged into the weights (config.json, model.safetensors,
   * tokenizer files); buffers are transferred. The adapter stays separate in the worker.
   */
  saveMerged(): Promise<Record<string, Uint8Array | string>>;
  /** Complete checkpoints in the worker's store, oldest first. */
  listCheckpoints(): Promise<CheckpointInfo[]>;
  /** Deletes every checkpoint in the worker's store. */
  clearCheckpoints(): Promise<void>;
  /** Loads a PEFT adapter (files from saveAdapter or Python PEFT, picked Files, a URL or hub id) and activates it. */
  loadAdapter(
    name: string,
    source: AdapterFiles | ModelSource,
  ): Promise<LoraConfig>;
  /** Folds the active adapter into the weights (for faster generation); `unmerge` restores them. */
  merge(): Promise<void>;
  unmerge(): Promise<void>;
  /** Releases the model, every tensor and the GPU device. The worker can be initialised again afterwards. */
  dispose(): Promise<void>;
}

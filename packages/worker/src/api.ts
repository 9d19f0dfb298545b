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
  FewShotOptionNames,
  FewShotReport,
  FineTuneJobInput,
  FineTuneJobSpec,
  GgufDtype,
  GgufFile,
  HeadPrediction,
  JobEvent,
  JobFieldNames,
  JobResult,
  LoraConfig,
  OptionNames,
  TrainerOptionNames,
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
 * storage: `dtype: "float16"`, or `quantize: "int8" | "nf4"` (QLoRA). A full fine-tune's trainable copy is loaded
 * by runJob itself.
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

/** What `fewShot` scores, and how its messages name the caller's controls. */
export interface WorkerFewShotOptions {
  /** Score only the first N test rows, as `evaluate`'s maxRows. */
  maxRows?: number;
  /** Default `{ k: "k", train: "the train split" }`. */
  names?: Partial<FewShotOptionNames>;
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
  /**
   * What the model will answer (the job's adapter.task): "seq-cls" reads rows for a sequence-classification head
   * (the text alone), "token-cls" reads `{"tokens","tags"}` rows or CoNLL text. Default "causal-lm".
   */
  task?: FineTuneJobSpec["adapter"]["task"];
  /** Token classification: which subwords carry a word's tag (the job's data.labelSubwords). Default "first". */
  labelSubwords?: FineTuneJobSpec["data"]["labelSubwords"];
}

/** A training row as the model will see it, for a preview. */
export interface PreviewRow {
  /** The prompt text generation starts from (instruction and classification data). */
  prompt?: string;
  /** The text the loss is on. */
  target: string;
  label?: string;
  tokens: number;
  /** Token classification: the row's words and their tags. */
  words?: string[];
  tags?: string[];
}

export interface DataSummary {
  /** "tagged": token classification's words and tags. */
  format: DatasetFormat | "tagged";
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

/** How runJob finds a checkpoint and names things in its messages. */
export interface RunJobOptions {
  /**
   * Continue from this checkpoint (see `listCheckpoints`) with the same model, data, adapter and options;
   * otherwise a job with `checkpointEvery` deletes the old checkpoints first.
   */
  resumeFrom?: string;
  /** How messages name the job's fields and the Trainer's and dataset reader's options on the caller's page. */
  names?: JobFieldNames;
  trainerNames?: Partial<TrainerOptionNames>;
  dataNames?: Partial<OptionNames>;
  /** Download progress, when the job loads its model (wrap in `Comlink.proxy`). */
  onProgress?: (event: DownloadProgress) => void;
}

/** Which GGUF file `exportGguf` writes, for llama.cpp and the tools built on it (Ollama, LM Studio, wllama). */
export interface GgufExportRequest {
  /**
   * "merged": the model with the active adapter folded in (after a full fine-tune, its own weights), which
   * `llama-cli -m` runs alone; "adapter": the active LoRA adapter alone, for `llama-cli -m base.gguf --lora`;
   * "base": the model without its adapters, that base.gguf.
   */
  what: "merged" | "adapter" | "base";
  /** How 2-D weights are stored. Default "f16" for a model and "f32" for an adapter, as llama.cpp's converters. */
  dtype?: GgufDtype;
}

/** What a job run reports back: everything of its JobResult but the model itself. */
export type JobOutcome = Omit<JobResult, "model" | "peft" | "splits">;

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
  /**
   * What the adapter's classification head answers for `text`: each label's probability (seq-cls), or the words'
   * tags and the entities they spell (token-cls). `useAdapter: false` asks the base model with the same head.
   * Rejects when the adapter has no head.
   */
  predict(
    text: string,
    options?: { useAdapter?: boolean },
  ): Promise<HeadPrediction>;
  /** Mean next-token cross-entropy of token ids [batch, tokens]. */
  loss(ids: number[][]): Promise<number>;
  /** Reads, cleans, tokenizes and splits a dataset (text or bytes) with the model's tokenizer. */
  loadData(
    input: string | ArrayBuffer,
    options: DataOptions,
  ): Promise<DataSummary>;
  /** The job `input` describes, defaults filled in; rejects with a JobError naming every bad field (in `names`' words). */
  checkJob(
    input: FineTuneJobInput,
    names?: JobFieldNames,
  ): Promise<FineTuneJobSpec>;
  /**
   * Runs a fine-tuning job (a FineTuneJob or its fields; defaults fill the rest) on the loaded model when it is the
   * job's, else on the job's model, which stays loaded. `files` maps the data files the job names to their text or
   * bytes (names not given are fetched as URLs). Pass `onEvent` wrapped in `Comlink.proxy` for live events.
   */
  runJob(
    job: FineTuneJobInput,
    files?: Record<string, string | ArrayBuffer>,
    onEvent?: (event: JobEvent) => void,
    options?: RunJobOptions,
  ): Promise<JobOutcome>;
  /** Holds training between steps. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Ends the running job at once: scoring is cancelled, training ends after its current step (the adapter is kept). */
  stop(): Promise<void>;
  /** Cancels the scoring in progress (of a job, or an evaluate call); a job goes on without those metrics. */
  skipScoring(): Promise<void>;
  /** Loss, perplexity and the task's metrics on a split of the loaded data. */
  evaluate(
    split: "val" | "test",
    options?: WorkerEvaluateOptions,
  ): Promise<EvaluationResult>;
  /**
   * The few-shot baseline: the base model (adapters off) on the test split with k rows of the train split, drawn
   * with `seed` (default 0), in front of each (see core's fewShotRows). Stop and skipScoring cancel it.
   */
  fewShot(
    k: number,
    seed?: number,
    options?: WorkerFewShotOptions,
  ): Promise<{ result: EvaluationResult; report: FewShotReport }>;
  /** The active adapter's PEFT files; the weights buffer is transferred, not copied. */
  saveAdapter(): Promise<AdapterFiles>;
  /**
   * A Hugging Face model folder with the active adapter merged into the weights (config.json, model.safetensors,
   * tokenizer files); buffers are transferred. The adapter stays separate in the worker.
   */
  saveMerged(): Promise<Record<string, Uint8Array | string>>;
  /**
   * A GGUF file for llama.cpp, as byte parts to join (`new Blob(file.parts)`); their buffers are transferred.
   * Merging is temporary, as in saveMerged: the adapters stay as they were. Rejects with a ConfigError saying why
   * for what llama.cpp cannot run: a classification head, a DoRA adapter on its own (export it merged), a tokenizer
   * GGUF cannot express.
   */
  exportGguf(request: GgufExportRequest): Promise<GgufFile>;
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

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
  DeltaInterval,
  DriftMetric,
  DriftReport,
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
  RetrievalReport,
  RowScore,
  TrainerOptionNames,
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
  /** Also give each row's scores (`rowScores`), which a drift check compares new rows with. Default false. */
  keepRows?: boolean;
}

/** What `fewShot` scores, and how its messages name the caller's controls. */
export interface WorkerFewShotOptions {
  /** Score only the first N test rows, as `evaluate`'s maxRows. */
  maxRows?: number;
  /** Default `{ k: "k", train: "the train split" }`. */
  names?: Partial<FewShotOptionNames>;
}

/** The retrievers `retrieval` offers: lexical (BM25), or the base model's own mean final hidden states. */
export type RetrieverName = "bm25" | "hidden";

/** What `retrieval` scores, with which retriever, and how its messages name the caller's controls. */
export interface WorkerRetrievalOptions {
  /** Default "bm25". "hidden" embeds every training and test row with the base model first. */
  retriever?: RetrieverName;
  /** Score only the first N test rows, as `evaluate`'s maxRows. */
  maxRows?: number;
  /** Default `{ k: "k", train: "the train split" }`. */
  names?: Partial<FewShotOptionNames>;
}

/** A file of new labelled rows handed to the worker: its name (for messages and its file type) and contents. */
export interface NewRowsFile {
  name: string;
  text: string | ArrayBuffer;
}

/** What new rows are compared with: the adapter's test scores row by row (a tuned TestEvent's), and the metric. */
export interface DriftBaseline {
  rowScores: RowScore[];
  metric: DriftMetric;
}

/** How `monitor` scores the new rows and tests what moved. */
export interface WorkerMonitorOptions {
  /** Score only the first N rows of the file (instruction rows cost one greedy decode each). Default all. */
  maxRows?: number;
  /** The bootstrap's resamples (default 2000) and seed (default 0); a length or label test below alpha (default 0.01) is flagged. */
  resamples?: number;
  seed?: number;
  alpha?: number;
  /** How reading messages name the page's controls. */
  optionNames?: Partial<OptionNames>;
}

/** What `monitor` found. */
export interface MonitorResult {
  /** The baseline against the adapter's scores on the new rows. */
  report: DriftReport;
  /** The adapter's scores on the new rows (without their rows). */
  current: EvaluationResult;
  /** How reading the file went: rows seen, kept, dropped and why. */
  read: CleaningReport;
  /** The rows read as the loaded data is: its format. */
  format: DatasetFormat;
  /**
   * Instruction data: the prompt template the adapter's training prompts share (null: none), and how many new rows'
   * prompts are not in its shape (reported, not refused).
   */
  promptTemplate: string | null;
  misfits: number;
}

/** How `retrainOnDrift` goes on training the adapter on new rows. */
export interface WorkerRetrainOptions {
  /** The drift check's metric, which before → after is read on. */
  metric: DriftMetric;
  /** The share of the new rows held out, seeded and stratified as a job's test split. Default 0.3. */
  holdout?: number;
  /** The share of every batch replayed from the loaded training file. Default 0.25. */
  replayRatio?: number;
  /** The bootstrap's resamples (default 2000) and seed (default the job's). */
  resamples?: number;
  seed?: number;
  /** How messages name the job's fields, the Trainer's and the reader's options (as runJob's). */
  names?: JobFieldNames;
  trainerNames?: Partial<TrainerOptionNames>;
  dataNames?: Partial<OptionNames>;
}

/** One comparison of the adapter as it was with the retrained one, on the same rows. */
export interface BeforeAfter {
  rows: number;
  metric: DriftMetric;
  before: EvaluationResult;
  after: EvaluationResult;
  /** after − before, with its bootstrap interval. */
  change: DeltaInterval;
}

/** What `retrainOnDrift` reports. */
export interface RetrainOutcome {
  /** The job as run: the new rows, the hold-out, replay and the adapter continued from. */
  job: FineTuneJobSpec;
  train: TrainResult;
  /** Rows of the new file trained on and held out (the first `evaluation.testRows` of them scored), and replayed. */
  sizes: { train: number; heldOut: number; replay: number };
  /** On the held-out new rows; none when the run was stopped or its scoring skipped. */
  heldOut?: BeforeAfter;
  /**
   * On the loaded test split (the rows Evaluate scores, the first `evaluation.testRows`); `after` keeps its
   * rowScores, the retrained adapter's new drift baseline. None when stopped or skipped.
   */
  test?: BeforeAfter;
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
  /**
   * The retrieval-augmented baseline: the base model (adapters off) on the test split with, in front of each row,
   * its k nearest rows of the train split, the nearest last (see core's retrievalRows). Refused as fewShot is;
   * Stop and skipScoring cancel it.
   */
  retrieval(
    k: number,
    options?: WorkerRetrievalOptions,
  ): Promise<{ result: EvaluationResult; report: RetrievalReport }>;
  /**
   * Drift: the adapter's scores on a file of new labelled rows (read as the loaded data is: its format, max tokens,
   * bad-row policy) against `baseline`, its test scores from training (see core's driftReport). Stop and
   * skipScoring cancel it. Refused for a classification head.
   */
  monitor(
    file: NewRowsFile,
    baseline: DriftBaseline,
    options?: WorkerMonitorOptions,
  ): Promise<MonitorResult>;
  /**
   * Goes on training the active adapter on `file`'s rows: the job `input` (the page's settings and loaded data) with
   * the new rows as its training data, `holdout` of them held out, the loaded training file (in `files`, by the
   * name the loaded data gave it) replayed. Then the adapter as it was and the retrained one on the held-out rows
   * and on the loaded test split. The retrained adapter stays active; the loaded data stays loaded. Pause, stop
   * and skipScoring act as in runJob.
   */
  retrainOnDrift(
    input: FineTuneJobInput,
    file: NewRowsFile,
    files: Record<string, string | ArrayBuffer>,
    options: WorkerRetrainOptions,
    onEvent?: (event: JobEvent) => void,
  ): Promise<RetrainOutcome>;
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

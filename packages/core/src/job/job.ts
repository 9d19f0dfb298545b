/**
 * A FineTuneJob: the whole recipe of one fine-tuning run as plain, serialisable data. The CLI's flags, the
 * worker's API and the demo's form all become one of these, so every surface trains with the same defaults,
 * written once below ({@link JOB_DEFAULTS}).
 */
import type { DatasetFormat } from "../train/data/types.js";
import type { LrSchedulerType } from "../train/schedule.js";

/** The base model: where it comes from and how its frozen weights are stored on the GPU. */
export interface JobModel {
  /** A hub id, a URL serving a model folder, or a folder path (Node). */
  source: string;
  /** Hub branch, tag or commit. */
  revision: string;
  /** Storage of the frozen weights; compute stays float32. */
  dtype: "float32" | "float16";
  /** Blockwise-quantized projections (QLoRA), or null. */
  quantize: "int8" | "nf4" | null;
  /** Quantize the block scales too (with `quantize`). */
  doubleQuant: boolean;
}

/** The data files and how they are read and split. */
export interface JobData {
  /**
   * The training file: a path (Node), a URL, or the name of a file handed to the run. Several files train one
   * adapter on several tasks at once (multitask): each is read, split and scored on its own, and every batch mixes
   * them by `mix`.
   */
  train: string | string[];
  /**
   * A held-out test file in the same format (one per training file, in the same order, when `train` lists
   * several); null: `testSplit` of `train`, or no test.
   */
  test: string | string[] | null;
  /**
   * Multitask: each training file's share of every batch's rows (relative numbers, one per file); null: by
   * `mixTemperature`.
   */
  mix: number[] | null;
  /**
   * Multitask without `mix`: shares by each file's rows to the power 1/T (1: in proportion to size, as one
   * concatenated file; larger: towards equal shares, so that a small task is not drowned).
   */
  mixTemperature: number;
  /** null: detected from the file. */
  format: DatasetFormat | null;
  /** Tokens per example; longer ones are truncated. */
  maxLength: number;
  /** Fractions of `train` held out for validation and for testing. */
  valSplit: number;
  testSplit: number;
  /** Drop rows that cannot be read (counted as malformed) instead of stopping at the first. */
  skipBadRows: boolean;
  /**
   * How an instruction prompt is built around a user's input, with `{input}` where it goes
   * (`"Date: {input}\nWritten out:"`). null: derived from the training prompts when the run starts, and saved
   * with the adapter, so that `generate` can apply it.
   */
  promptTemplate: string | null;
  /**
   * Token classification: which subwords of a word carry its tag. "first": the first (HF's default; the rest are
   * out of the loss); "all": every one (continuations of a B-X word get I-X, HF's label_all_tokens).
   */
  labelSubwords: "first" | "all";
}

/** The LoRA adapter (PEFT's LoraConfig, in camelCase). Ignored when `method` is `"full"`. */
export interface JobAdapter {
  r: number;
  alpha: number;
  dropout: number;
  /** Linear module names (exact or dotted suffix), or "all-linear". */
  targetModules: string[] | "all-linear";
  rslora: boolean;
  dora: boolean;
  /**
   * Sequential fine-tuning: a PEFT adapter (a folder, URL or hub id) whose weights the run starts from and goes on
   * training, instead of a new one; its own adapter_config.json then sets the rank, alpha, dropout and targets.
   * null: a new adapter.
   */
  continueFrom: string | null;
  /**
   * What the model answers (PEFT's task_type): "causal-lm", the next token (classification by label likelihood);
   * "seq-cls", a label per row from a sequence-classification head on `{"text","label"}` rows; "token-cls", a tag
   * per word from a token-classification head on `{"tokens","tags"}` rows or CoNLL files. A head trains in full
   * beside the adapter and is saved with it (modules_to_save).
   */
  task: "causal-lm" | "seq-cls" | "token-cls";
}

/**
 * Replay, against catastrophic forgetting: a share of every training batch drawn from general text (the model's
 * pretraining kind, e.g. the demo's replay.jsonl; or an earlier task's data, in sequential fine-tuning), with the
 * loss taken on it, so that tuning does not overwrite what the model knew.
 */
export interface JobReplay {
  /** The replayed file, in any dataset format; null: no replay. */
  source: string | null;
  /** Its share of every batch's rows, in (0, 1); each row's loss is weighed so that this is its share of the loss. */
  ratio: number;
}

/** A word operation of text-level augmentation (EDA: Wei & Zou, 2019). */
export type AugmentOp = "synonym" | "insert" | "swap" | "delete";

/**
 * Augmentation, against overfitting and scarce data: more training rows made from the training split (never from
 * validation or test), each traceable to the row it came from and counted in the cleaning report.
 */
export interface JobAugment {
  /** Text-level variants made of each training row (EDA: one word operation each, in turn); 0: none. */
  eda: number;
  /** The word operations the variants take in turn. synonym and insert need `lexicon`. */
  edaOps: AugmentOp[];
  /** The share of a row's words an operation changes (EDA's alpha). */
  edaAlpha: number;
  /** The synonym lexicon (`word<TAB>synonym synonym ...` lines, e.g. the shipped WordNet one); null: none. */
  lexicon: string | null;
  /**
   * Model-level: paraphrases of each training row sampled from the base model itself (classification: the text;
   * instruction: the prompt's input); 0: none.
   */
  paraphrases: number;
  /** What the base model continues with a paraphrase, `{text}` where the row's text goes. */
  paraphrasePrompt: string;
  /**
   * A paraphrase is kept when the base model's mean log-likelihood per token of it, after the prompt, is at least
   * this (nats; natural text on the demo base model scores about -3.2).
   */
  paraphraseMinLogProb: number;
  /**
   * A paraphrase is kept when the source text in the prompt makes it likelier by at least this much per token (nats)
   * than the prompt without it: its pointwise mutual information with the text, which unrelated text lacks.
   */
  paraphraseMinGain: number;
  /** The sampling temperature of paraphrases. */
  paraphraseTemperature: number;
}

/** The optimizer, the schedule and the batches. */
export interface JobTraining {
  learningRate: number;
  schedule: LrSchedulerType;
  warmupSteps: number;
  /** Examples per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
  /** Passes over the training split, unless `maxSteps` is set. */
  epochs: number;
  maxSteps: number | null;
  maxGradNorm: number;
  weightDecay: number;
  /** Seeds the split, the shuffling, the adapter's init and dropout. */
  seed: number;
  gradientCheckpointing: boolean;
  /** Refuse to start when a step is expected to need more GPU memory than this many bytes. */
  memoryBudget: number | null;
}

/** What is measured while and after training. */
export interface JobEvaluation {
  /** Validation loss every N optimizer steps (and at the end); null: only at the end. */
  evalEvery: number | null;
  /** Score only the first N validation rows at each check; null: all. */
  valRows: number | null;
  /** Stop when validation has not improved for this many checks, keeping the best; null: off. */
  earlyStopPatience: number | null;
  /** Score only the first N test rows (exact match decodes every row); null: all. */
  testRows: number | null;
  /** Score the base model on the test rows before training, for the comparison. */
  scoreBase: boolean;
  /**
   * Also score the base model with this many training examples in each test prompt (seeded by `training.seed`):
   * the few-shot baseline, "just prompt it", beside the tuned result; null: not scored.
   */
  fewShot: number | null;
  /** General text whose loss before and after tuning shows forgetting; null: none. */
  reference: string | null;
  /**
   * Sequential fine-tuning: the test files of earlier tasks (an earlier stage's `data.test`), scored before and
   * after this run, so that what the adapter kept of them shows; null: none.
   */
  retention: string | string[] | null;
}

/** A whole fine-tuning run, as plain data: JSON.stringify it to save it, {@link FineTuneJob.from} to read it. */
export interface FineTuneJobSpec {
  /** The version of this format. */
  webtuneJob: 1;
  model: JobModel;
  data: JobData;
  /** "lora": train an adapter; "full": every weight of the model. */
  method: "lora" | "full";
  adapter: JobAdapter;
  training: JobTraining;
  replay: JobReplay;
  augment: JobAugment;
  evaluation: JobEvaluation;
  /** Save a resumable checkpoint every N optimizer steps; null: none. */
  checkpointEvery: number | null;
}

/** What a caller states of a job: any subset of its fields; the rest are {@link JOB_DEFAULTS}. */
export type FineTuneJobInput = {
  webtuneJob?: 1;
  model?: Partial<JobModel> & { source?: string };
  data?: Partial<JobData>;
  method?: FineTuneJobSpec["method"];
  adapter?: Partial<JobAdapter>;
  training?: Partial<JobTraining>;
  replay?: Partial<JobReplay>;
  augment?: Partial<JobAugment>;
  evaluation?: Partial<JobEvaluation>;
  checkpointEvery?: number | null;
};

/**
 * Every default of a fine-tuning run, in one place. The adapter follows "LoRA Without Regret" (Thinking Machines,
 * 2025): every Linear layer, alpha 32 whatever the rank; 2e-4 is PEFT's usual rate for models of a billion
 * parameters and more (small models take more, e.g. the demo's tasks use 3e-3).
 */
export const JOB_DEFAULTS = {
  model: {
    revision: "main",
    dtype: "float32",
    quantize: null,
    doubleQuant: false,
  },
  data: {
    test: null,
    mix: null,
    mixTemperature: 1,
    format: null,
    maxLength: 256,
    valSplit: 0.1,
    testSplit: 0,
    skipBadRows: false,
    promptTemplate: null,
    labelSubwords: "first",
  },
  method: "lora",
  adapter: {
    r: 16,
    alpha: 32,
    dropout: 0,
    targetModules: "all-linear",
    rslora: false,
    dora: false,
    continueFrom: null,
    task: "causal-lm",
  },
  training: {
    learningRate: 2e-4,
    schedule: "cosine",
    warmupSteps: 0,
    batchSize: 8,
    gradAccum: 1,
    epochs: 1,
    maxSteps: null,
    maxGradNorm: 1,
    weightDecay: 0,
    seed: 0,
    gradientCheckpointing: false,
    memoryBudget: null,
  },
  replay: { source: null, ratio: 0.25 },
  augment: {
    eda: 0,
    edaOps: ["synonym", "insert", "swap", "delete"],
    edaAlpha: 0.1,
    lexicon: null,
    paraphrases: 0,
    paraphrasePrompt: "{text}\nIn other words:",
    paraphraseMinLogProb: -3.5,
    paraphraseMinGain: 0.3,
    paraphraseTemperature: 0.8,
  },
  evaluation: {
    evalEvery: 50,
    valRows: null,
    earlyStopPatience: null,
    testRows: null,
    scoreBase: true,
    fewShot: null,
    reference: null,
    retention: null,
  },
  checkpointEvery: null,
} as const satisfies Omit<FineTuneJobSpec, "webtuneJob" | "model" | "data"> & {
  model: Omit<JobModel, "source">;
  data: Omit<JobData, "train">;
};

/** The sections whose fields are merged one by one with the defaults. */
export const JOB_SECTIONS = [
  "model",
  "data",
  "adapter",
  "training",
  "replay",
  "augment",
  "evaluation",
] as const;
export type JobSection = (typeof JOB_SECTIONS)[number];

/** A field's path in a job, e.g. "training.learningRate". */
export type JobField =
  `${JobSection}.${string}` | "method" | "checkpointEvery" | "webtuneJob";

/**
 * `webtune train`'s recipe flags as a FineTuneJob: each flag is one job field, a flag given on the command line
 * overrides the --job file, and what neither gives is the job's default (JOB_DEFAULTS, printed in --help).
 */
import { readFile } from "node:fs/promises";
import {
  ConfigError,
  FineTuneJob,
  type FineTuneJobInput,
  type JobFieldNames,
} from "@webtune/core";
import { EMBEDDED_LEXICON, EMBEDDED_MODEL } from "./embedded.js";

/** The job file a run leaves beside its adapter: `webtune train --job` reruns it, `generate` reads its prompt template. */
export const JOB_FILE = "webtune_job.json";

/** The recipe flags as commander gives them: undefined when not on the command line. */
export interface RecipeFlags {
  model?: string;
  dtype?: string;
  quantize?: string;
  doubleQuant?: boolean;
  data?: string;
  test?: string;
  format?: string;
  seqLen?: number;
  valSplit?: number;
  testSplit?: number;
  skipBadRows?: boolean;
  promptTemplate?: string;
  mix?: string;
  mixTemperature?: number;
  replay?: string;
  replayRatio?: number;
  augment?: string;
  augmentOps?: string;
  augmentAlpha?: number;
  lexicon?: string;
  paraphrasePrompt?: string;
  paraphraseMinLogprob?: number;
  paraphraseMinGain?: number;
  paraphraseTemperature?: number;
  continueFrom?: string;
  retention?: string;
  task?: string;
  labelSubwords?: string;
  mode?: string;
  r?: number;
  alpha?: number;
  dropout?: number;
  target?: string;
  rslora?: boolean;
  dora?: boolean;
  lr?: number;
  schedule?: string;
  warmup?: number;
  batch?: number;
  gradAccum?: number;
  epochs?: number;
  maxSteps?: number;
  seed?: number;
  gradientCheckpointing?: boolean;
  memoryBudget?: number;
  evalEvery?: number;
  valRows?: number;
  earlyStop?: number;
  testRows?: number;
  skipBaseScore?: boolean;
  fewShot?: number;
  reference?: string;
  checkpointEvery?: number;
}

/** Which flag sets each job field: the names job errors use. */
export const FLAG_NAMES = {
  "model.source": "--model",
  "model.dtype": "--dtype",
  "model.quantize": "--quantize",
  "model.doubleQuant": "--double-quant",
  "data.train": "--data",
  "data.test": "--test",
  "data.format": "--format",
  "data.maxLength": "--seq-len",
  "data.valSplit": "--val-split",
  "data.testSplit": "--test-split",
  "data.skipBadRows": "--skip-bad-rows",
  "data.promptTemplate": "--prompt-template",
  "data.mix": "--mix",
  "data.mixTemperature": "--mix-temperature",
  "replay.source": "--replay",
  "replay.ratio": "--replay-ratio",
  "augment.eda": "--augment eda=N",
  "augment.paraphrases": "--augment paraphrase=N",
  "augment.edaOps": "--augment-ops",
  "augment.edaAlpha": "--augment-alpha",
  "augment.lexicon": "--lexicon",
  "augment.paraphrasePrompt": "--paraphrase-prompt",
  "augment.paraphraseMinLogProb": "--paraphrase-min-logprob",
  "augment.paraphraseMinGain": "--paraphrase-min-gain",
  "augment.paraphraseTemperature": "--paraphrase-temperature",
  "adapter.continueFrom": "--continue-from",
  "adapter.task": "--task",
  "data.labelSubwords": "--label-subwords",
  "evaluation.retention": "--retention",
  method: "--mode",
  "adapter.r": "--r",
  "adapter.alpha": "--alpha",
  "adapter.dropout": "--dropout",
  "adapter.targetModules": "--target",
  "adapter.rslora": "--rslora",
  "adapter.dora": "--dora",
  "training.learningRate": "--lr",
  "training.schedule": "--schedule",
  "training.warmupSteps": "--warmup",
  "training.batchSize": "--batch",
  "training.gradAccum": "--grad-accum",
  "training.epochs": "--epochs",
  "training.maxSteps": "--max-steps",
  "training.seed": "--seed",
  "training.gradientCheckpointing": "--gradient-checkpointing",
  "training.memoryBudget": "--memory-budget",
  "evaluation.evalEvery": "--eval-every",
  "evaluation.valRows": "--val-rows",
  "evaluation.earlyStopPatience": "--early-stop",
  "evaluation.testRows": "--test-rows",
  "evaluation.scoreBase": "--skip-base-score",
  "evaluation.fewShot": "--few-shot",
  "evaluation.reference": "--reference",
  checkpointEvery: "--checkpoint-every",
} satisfies JobFieldNames;

const targets = (list: string | undefined) =>
  list === undefined
    ? undefined
    : list.trim() === "all-linear"
      ? ("all-linear" as const)
      : list
          .split(",")
          .map((t) => t.trim())
          .filter(Boolean);

/** A comma list of files: one file stays a string, several become a list (multitask). */
const fileList = (v: string | undefined) => {
  if (v === undefined) return undefined;
  const files = v
    .split(",")
    .map((f) => f.trim())
    .filter(Boolean);
  return files.length === 1 ? files[0] : files;
};

/** `--mix 0.7,0.3`: one share per training file (a word that is not a number is left for the job check to name). */
const shares = (v: string | undefined) =>
  v?.split(",").map((w) => (w.trim() === "" ? NaN : Number(w)));

/**
 * `--augment eda=4,paraphrase=2`: augmented rows per training row, by kind (a kind alone means 1).
 *
 * @example
 * ```ts
 * augmentCounts("eda=4,paraphrase"); // { eda: 4, paraphrases: 1 }
 * ```
 */
export function augmentCounts(v: string | undefined): {
  eda?: number;
  paraphrases?: number;
} {
  if (v === undefined) return {};
  const out: { eda?: number; paraphrases?: number } = {};
  for (const part of v
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [kind, count = "1", ...rest] = part.split("=");
    const n = Number(count);
    const field = { eda: "eda", paraphrase: "paraphrases" }[kind!.trim()] as
      "eda" | "paraphrases" | undefined;
    if (!field || rest.length > 0 || !Number.isInteger(n) || n < 0)
      throw new ConfigError(
        `--augment ${v}: "${part}" is not kind=count; the kinds are eda (word operations) and paraphrase ` +
          `(sampled from the base model), e.g. --augment eda=4,paraphrase=2.`,
      );
    out[field] = n;
  }
  return out;
}

/** The job fields the flags set; a flag not given sets nothing. */
export function jobFromFlags(f: RecipeFlags): FineTuneJobInput {
  return {
    model: {
      source: f.model,
      dtype: f.dtype as "float32",
      quantize: f.quantize as "nf4",
      doubleQuant: f.doubleQuant,
    },
    data: {
      train: fileList(f.data),
      test: fileList(f.test),
      mix: shares(f.mix),
      mixTemperature: f.mixTemperature,
      format: f.format as "completion",
      maxLength: f.seqLen,
      valSplit: f.valSplit,
      testSplit: f.testSplit,
      skipBadRows: f.skipBadRows,
      // A shell passes "\\n" as two characters; a template means a line break.
      promptTemplate: f.promptTemplate?.replaceAll("\\n", "\n"),
      labelSubwords: f.labelSubwords as "first",
    },
    method: f.mode as "lora",
    adapter: {
      r: f.r,
      alpha: f.alpha,
      dropout: f.dropout,
      targetModules: targets(f.target),
      rslora: f.rslora,
      dora: f.dora,
      continueFrom: f.continueFrom,
      task: f.task as "seq-cls",
    },
    training: {
      learningRate: f.lr,
      schedule: f.schedule as "cosine",
      warmupSteps: f.warmup,
      batchSize: f.batch,
      gradAccum: f.gradAccum,
      epochs: f.epochs,
      maxSteps: f.maxSteps,
      seed: f.seed,
      gradientCheckpointing: f.gradientCheckpointing,
      memoryBudget: f.memoryBudget,
    },
    replay: { source: f.replay, ratio: f.replayRatio },
    augment: {
      ...augmentCounts(f.augment),
      edaOps: f.augmentOps?.split(",").map((op) => op.trim()) as ["swap"],
      edaAlpha: f.augmentAlpha,
      lexicon: f.lexicon,
      paraphrasePrompt: f.paraphrasePrompt?.replaceAll("\\n", "\n"),
      paraphraseMinLogProb: f.paraphraseMinLogprob,
      paraphraseMinGain: f.paraphraseMinGain,
      paraphraseTemperature: f.paraphraseTemperature,
    },
    evaluation: {
      evalEvery: f.evalEvery,
      valRows: f.valRows,
      earlyStopPatience: f.earlyStop,
      testRows: f.testRows,
      scoreBase: f.skipBaseScore ? false : undefined,
      fewShot: f.fewShot,
      reference: f.reference,
      retention: fileList(f.retention),
    },
    checkpointEvery: f.checkpointEvery,
  };
}

/** `base` with every field `over` defines put over it, section by section. */
function overlay(base: FineTuneJobInput, over: FineTuneJobInput): object {
  const defined = (o: object | undefined) =>
    Object.fromEntries(
      Object.entries(o ?? {}).filter(([, v]) => v !== undefined),
    );
  const out: Record<string, unknown> = { ...base, ...defined(over) };
  for (const section of [
    "model",
    "data",
    "adapter",
    "training",
    "replay",
    "augment",
    "evaluation",
  ] as const)
    out[section] = { ...base[section], ...defined(over[section]) };
  return out;
}

/** Reads a --job file: a JSON FineTuneJob, as --print-job or the demo writes it. */
async function readJobFile(path: string): Promise<FineTuneJobInput> {
  const text = await readFile(path, "utf8").catch(
    (e: NodeJS.ErrnoException) => {
      throw new ConfigError(
        `cannot read --job ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}.`,
      );
    },
  );
  let job: unknown;
  try {
    job = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      `--job ${path} is not JSON: ${(e as Error).message}.`,
    );
  }
  if (typeof job !== "object" || job === null || Array.isArray(job))
    throw new ConfigError(
      `--job ${path} must hold a JSON object (a job, as --print-job writes it).`,
    );
  return job as FineTuneJobInput;
}

/**
 * The job the command line describes: the --job file if given, each flag given over it, then the defaults; the
 * embedded model when nothing names one. Throws a JobError naming every bad field by its flag.
 */
export async function buildJob(
  flags: RecipeFlags,
  jobFile?: string,
): Promise<FineTuneJob> {
  const file = jobFile ? await readJobFile(jobFile) : {};
  const names: JobFieldNames = jobFile
    ? Object.fromEntries(
        Object.entries(FLAG_NAMES).map(([field, flag]) => [
          field,
          `${flag} (${field} in ${jobFile})`,
        ]),
      )
    : FLAG_NAMES;
  const input = overlay(file, jobFromFlags(flags)) as FineTuneJobInput;
  input.model = {
    ...input.model,
    source: input.model?.source ?? EMBEDDED_MODEL,
  };
  // Text-level augmentation draws synonyms from the shipped WordNet lexicon unless the job names another.
  if ((input.augment?.eda ?? 0) > 0 && input.augment?.lexicon === undefined)
    input.augment = { ...input.augment, lexicon: EMBEDDED_LEXICON };
  const earlier = await earlierTests(input);
  if (earlier)
    input.evaluation = { ...input.evaluation, retention: earlier.test };
  const job = FineTuneJob.from(input, names);
  if (earlier)
    process.stderr.write(
      `retention: the earlier stage's test file${Array.isArray(earlier.test) ? "s" : ""} (${earlier.from}) ` +
        "will be scored before and after\n",
    );
  return job;
}

/**
 * Sequential fine-tuning: the test files of the stage an adapter came from, as its webtune_job.json names them,
 * when the job continues that adapter and names no retention files itself.
 */
async function earlierTests(
  input: FineTuneJobInput,
): Promise<{ test: string | string[]; from: string } | undefined> {
  const from = input.adapter?.continueFrom;
  if (typeof from !== "string" || input.evaluation?.retention !== undefined)
    return undefined;
  const path = `${from}/${JOB_FILE}`;
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const test = (JSON.parse(text) as FineTuneJobInput).data?.test;
    return test ? { test, from: path } : undefined;
  } catch {
    return undefined; // not ours to judge here: the adapter's own files are checked when it loads
  }
}

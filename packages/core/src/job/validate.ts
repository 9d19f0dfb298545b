/**
 * Reading a job: defaults filled in field by field, then every field checked, so that one error lists every bad
 * field before anything is loaded, allocated or written.
 */
import { ConfigError } from "../errors.js";
import { loraConfig, type LoraConfigInput } from "../lora/config.js";
import { DATASET_FORMATS } from "../train/data/types.js";
import {
  JOB_DEFAULTS,
  JOB_SECTIONS,
  type FineTuneJobSpec,
  type JobField,
} from "./job.js";

/** How a surface names a job's fields to its user: `{ "training.learningRate": "--lr" }`. Default `job.<field>`. */
export type JobFieldNames = Partial<Record<JobField, string>>;

/** How `names` says `field` to its user: its own word for it, else `job.<field>`. */
export function fieldName(
  names: JobFieldNames | undefined,
  field: JobField,
): string {
  return names?.[field] ?? `job.${field}`;
}

/** One bad field of a job. */
export interface JobProblem {
  field: JobField;
  message: string;
}

/** A job with bad fields; `problems` lists each, and the message says them all. */
export class JobError extends ConfigError {
  override name = "JobError";
  constructor(readonly problems: JobProblem[]) {
    super(
      problems.length === 1
        ? problems[0]!.message
        : `the job has ${problems.length} bad fields:\n${problems.map((p) => `  - ${p.message}`).join("\n")}`,
    );
  }
}

const FORMATS = DATASET_FORMATS;
const AUGMENT_OPS: readonly unknown[] = JOB_DEFAULTS.augment.edaOps;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The job `input` describes, with {@link JOB_DEFAULTS} for what it leaves out; fields it names that a job does
 * not have are problems (a misspelt field must not silently fall back to its default).
 */
export function withDefaults(
  input: unknown,
  names: JobFieldNames = {},
): { spec: FineTuneJobSpec; problems: JobProblem[] } {
  const problems: JobProblem[] = [];
  if (!isObject(input))
    throw new JobError([
      {
        field: "webtuneJob",
        message: `a job must be a JSON object, got ${describe(input)}.`,
      },
    ]);
  const known = new Set<string>([
    "webtuneJob",
    "method",
    "checkpointEvery",
    ...JOB_SECTIONS,
  ]);
  for (const key of Object.keys(input))
    if (!known.has(key)) problems.push(unknownField(key, [...known]));
  const spec = {
    webtuneJob: 1,
    method: JOB_DEFAULTS.method,
    checkpointEvery: JOB_DEFAULTS.checkpointEvery,
    ...pick(input, ["webtuneJob", "method", "checkpointEvery"]),
  } as Record<string, unknown>;
  for (const section of JOB_SECTIONS) {
    const given = input[section] ?? {};
    // What has no default comes first, so that a printed job starts with its model and its data.
    const defaults: Record<string, unknown> = {
      ...(section === "model" ? { source: "" } : {}),
      ...(section === "data" ? { train: "" } : {}),
      ...(JOB_DEFAULTS[section as keyof typeof JOB_DEFAULTS] as object),
    } as Record<string, unknown>;
    if (!isObject(given)) {
      problems.push({
        field: `${section}.*` as JobField,
        message: `${fieldName(names, section as JobField)} must be an object, got ${describe(given)}.`,
      });
      spec[section] = defaults;
      continue;
    }
    for (const key of Object.keys(given))
      if (!(key in defaults))
        problems.push(
          unknownField(`${section}.${key}`, Object.keys(defaults), section),
        );
    spec[section] = { ...defaults, ...pick(given, Object.keys(given)) };
  }
  return { spec: spec as unknown as FineTuneJobSpec, problems };
}

function pick(o: Record<string, unknown>, keys: string[]) {
  return Object.fromEntries(
    keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]),
  );
}

function unknownField(
  path: string,
  known: string[],
  section?: string,
): JobProblem {
  const key = path.split(".").at(-1)!;
  const near = known.find(
    (k) => k.toLowerCase() === key.toLowerCase() || editDistance(k, key) <= 2,
  );
  const where = section ? `job.${section}` : "a job";
  return {
    field: path as JobField,
    message: `job.${path} is not a field of ${where}${near ? `: did you mean ${near}?` : ` (its fields: ${known.join(", ")}).`}`,
  };
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(
        row[j]! + 1,
        row[j - 1]! + 1,
        diagonal + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      diagonal = above;
    }
  }
  return row[b.length]!;
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(describe).join(", ")}]`;
  if (isObject(v)) return "an object";
  return String(v);
}

/** Every bad field of a job whose defaults are filled in. */
export function jobProblems(
  job: FineTuneJobSpec,
  names: JobFieldNames = {},
): JobProblem[] {
  const problems: JobProblem[] = [];
  const value = (field: JobField): unknown => {
    const [section, key] = field.split(".");
    const holder = key
      ? (job as unknown as Record<string, Record<string, unknown>>)[section!]
      : (job as unknown as Record<string, unknown>);
    return key ? holder?.[key] : (holder as Record<string, unknown>)[section!];
  };
  const need = (field: JobField, ok: (v: unknown) => boolean, what: string) => {
    const v = value(field);
    if (!ok(v))
      problems.push({
        field,
        message: `${fieldName(names, field)} must be ${what}, got ${describe(v)}.`,
      });
  };
  const int = (min: number) => (v: unknown) =>
    Number.isInteger(v) && (v as number) >= min;
  const orNull = (ok: (v: unknown) => boolean) => (v: unknown) =>
    v === null || ok(v);
  const oneOf =
    (...xs: unknown[]) =>
    (v: unknown) =>
      xs.includes(v);
  const bool = (v: unknown) => typeof v === "boolean";
  const text = (v: unknown) => typeof v === "string" && v.trim() !== "";
  const finite = (test: (n: number) => boolean) => (v: unknown) =>
    typeof v === "number" && Number.isFinite(v) && test(v);

  need("webtuneJob", oneOf(1), "1 (the only version of the job format)");
  need("model.source", text, "a hub id, URL or folder");
  need("model.revision", text, "a branch, tag or commit");
  need("model.dtype", oneOf("float32", "float16"), "float32 or float16");
  need("model.quantize", oneOf(null, "int8", "nf4"), "int8, nf4 or none");
  need("model.doubleQuant", bool, "true or false");
  const files = (v: unknown) =>
    text(v) ||
    (Array.isArray(v) &&
      v.length > 0 &&
      v.every(text) &&
      new Set(v).size === v.length);
  need("data.train", files, "a training file, or several different ones");
  need(
    "data.test",
    orNull(files),
    "a test file (one per training file) or none",
  );
  need(
    "data.mix",
    orNull(
      (v) =>
        Array.isArray(v) &&
        v.length > 0 &&
        v.every((w) => typeof w === "number" && Number.isFinite(w) && w > 0),
    ),
    "shares above 0, one per training file, or none",
  );
  need(
    "data.mixTemperature",
    finite((n) => n > 0),
    "above 0 (1: by size)",
  );
  need(
    "data.format",
    oneOf(null, ...FORMATS),
    `${FORMATS.join(", ")} or detected`,
  );
  need("data.maxLength", int(1), "a whole number of tokens ≥ 1");
  need(
    "data.valSplit",
    finite((n) => n >= 0 && n < 1),
    "a fraction in [0, 1)",
  );
  need(
    "data.testSplit",
    finite((n) => n >= 0 && n < 1),
    "a fraction in [0, 1)",
  );
  need("data.skipBadRows", bool, "true or false");
  need(
    "data.promptTemplate",
    orNull((v) => typeof v === "string" && v.includes("{input}")),
    'a text with "{input}" where the input goes, or none',
  );
  need("method", oneOf("lora", "full"), "lora or full");
  need("adapter.r", int(1), "a rank of at least 1");
  need(
    "adapter.alpha",
    finite((n) => n > 0),
    "above 0",
  );
  need(
    "adapter.dropout",
    finite((n) => n >= 0 && n < 1),
    "in [0, 1)",
  );
  need(
    "adapter.targetModules",
    (v) =>
      v === "all-linear" || (Array.isArray(v) && v.length > 0 && v.every(text)),
    'module names (e.g. ["q_proj", "v_proj"]) or "all-linear"',
  );
  need("adapter.rslora", bool, "true or false");
  need("adapter.dora", bool, "true or false");
  need(
    "adapter.task",
    oneOf("causal-lm", "seq-cls", "token-cls"),
    "causal-lm, seq-cls or token-cls",
  );
  need("data.labelSubwords", oneOf("first", "all"), "first or all");
  need(
    "adapter.continueFrom",
    orNull(text),
    "an adapter folder, URL or hub id, or none",
  );
  need(
    "training.learningRate",
    finite((n) => n > 0),
    "above 0, e.g. 2e-4",
  );
  need(
    "training.schedule",
    oneOf("constant", "linear", "cosine"),
    "constant, linear or cosine",
  );
  need("training.warmupSteps", int(0), "a whole number ≥ 0");
  need("training.batchSize", int(1), "a whole number ≥ 1");
  need("training.gradAccum", int(1), "a whole number ≥ 1");
  need("training.epochs", int(1), "a whole number ≥ 1");
  need("training.maxSteps", orNull(int(1)), "a whole number ≥ 1 or none");
  need(
    "training.maxGradNorm",
    (v) => typeof v === "number" && v > 0,
    "above 0",
  );
  need(
    "training.weightDecay",
    finite((n) => n >= 0),
    "≥ 0",
  );
  need("training.seed", int(0), "a whole number ≥ 0");
  need("training.gradientCheckpointing", bool, "true or false");
  need(
    "training.memoryBudget",
    orNull(finite((n) => n > 0)),
    "bytes above 0 or none",
  );
  need("evaluation.evalEvery", orNull(int(1)), "a whole number ≥ 1 or none");
  need("evaluation.valRows", orNull(int(1)), "a whole number ≥ 1 or none");
  need(
    "evaluation.earlyStopPatience",
    orNull(int(1)),
    "a whole number ≥ 1 or none",
  );
  need("evaluation.testRows", orNull(int(1)), "a whole number ≥ 1 or none");
  need("evaluation.scoreBase", bool, "true or false");
  need(
    "evaluation.fewShot",
    orNull(int(0)),
    "a number of examples ≥ 0, or none",
  );
  need("evaluation.reference", orNull(text), "a text file or none");
  need(
    "evaluation.retention",
    orNull(files),
    "test files of earlier tasks, or none",
  );
  need("replay.source", orNull(text), "a file of text to replay, or none");
  need(
    "replay.ratio",
    finite((n) => n > 0 && n < 1),
    "a share of each batch in (0, 1), e.g. 0.25",
  );
  need("augment.eda", int(0), "a number of variants per row ≥ 0");
  need(
    "augment.edaOps",
    (v) =>
      Array.isArray(v) &&
      v.length > 0 &&
      v.every((op) => AUGMENT_OPS.includes(op)) &&
      new Set(v).size === v.length,
    `some of ${AUGMENT_OPS.join(", ")}, each once`,
  );
  need(
    "augment.edaAlpha",
    finite((n) => n > 0 && n <= 1),
    "a share of words in (0, 1], e.g. 0.1",
  );
  need("augment.lexicon", orNull(text), "a synonym file or none");
  need("augment.paraphrases", int(0), "a number of paraphrases per row ≥ 0");
  need(
    "augment.paraphrasePrompt",
    (v) => typeof v === "string" && v.includes("{text}"),
    'a text with "{text}" where the row\'s text goes',
  );
  need(
    "augment.paraphraseMinLogProb",
    finite((n) => n <= 0),
    "a mean log-likelihood per token ≤ 0, e.g. -3.5",
  );
  need(
    "augment.paraphraseMinGain",
    finite(() => true),
    "a gain in nats per token, e.g. 0.3",
  );
  need(
    "augment.paraphraseTemperature",
    finite((n) => n > 0),
    "above 0",
  );
  need("checkpointEvery", orNull(int(1)), "a whole number ≥ 1 or none");
  problems.push(...combinations(job, names));
  if (
    job.method === "lora" &&
    !problems.some((p) => p.field.startsWith("adapter."))
  )
    try {
      loraConfig(adapterConfig(job.adapter));
    } catch (error) {
      problems.push({ field: "adapter.r", message: (error as Error).message });
    }
  return problems;
}

/** Fields that are fine alone and wrong together. */
function combinations(
  job: FineTuneJobSpec,
  names: JobFieldNames,
): JobProblem[] {
  const name = (f: JobField) => fieldName(names, f);
  const out: JobProblem[] = [];
  const { data, model, evaluation } = job;
  const trainFiles = Array.isArray(data.train) ? data.train.length : 1;
  if (
    data.test !== null &&
    Array.isArray(data.test) !== Array.isArray(data.train)
  )
    out.push({
      field: "data.test",
      message: `${name("data.test")} must name ${Array.isArray(data.train) ? `one test file per training file (${trainFiles}), in the same order` : "one test file, as " + name("data.train") + " names one training file"}.`,
    });
  else if (Array.isArray(data.test) && data.test.length !== trainFiles)
    out.push({
      field: "data.test",
      message: `${name("data.test")} names ${data.test.length} test files for ${trainFiles} training files: give one per training file, in the same order.`,
    });
  if (Array.isArray(data.mix) && data.mix.length !== trainFiles)
    out.push({
      field: "data.mix",
      message: `${name("data.mix")} gives ${data.mix.length} shares for ${trainFiles} training file${trainFiles === 1 ? "" : "s"}: give one per training file${trainFiles === 1 ? ", or name several training files to mix" : ""}.`,
    });
  if (job.method === "full" && job.adapter.continueFrom !== null)
    out.push({
      field: "adapter.continueFrom",
      message: `${name("adapter.continueFrom")} continues a LoRA adapter: leave it out for full fine-tuning.`,
    });
  out.push(...headProblems(job, name));
  if (
    typeof data.valSplit === "number" &&
    typeof data.testSplit === "number" &&
    data.valSplit + data.testSplit >= 1
  )
    out.push({
      field: "data.testSplit",
      message: `${name("data.valSplit")} and ${name("data.testSplit")} must sum to less than 1, got ${data.valSplit} and ${data.testSplit}.`,
    });
  if (
    data.test !== null &&
    typeof data.testSplit === "number" &&
    data.testSplit > 0
  )
    out.push({
      field: "data.testSplit",
      message: `give ${name("data.test")} or ${name("data.testSplit")}, not both.`,
    });
  if (model.doubleQuant === true && model.quantize === null)
    out.push({
      field: "model.doubleQuant",
      message: `${name("model.doubleQuant")} quantizes the block scales of int8 or nf4 storage: set ${name("model.quantize")} too.`,
    });
  if (job.method === "full" && model.quantize !== null)
    out.push({
      field: "model.quantize",
      message: `full fine-tuning trains every weight in float32: leave ${name("model.quantize")} out, or train an adapter (QLoRA).`,
    });
  const { augment } = job;
  const needsLexicon = (augment.edaOps ?? []).filter(
    (op) => op === "synonym" || op === "insert",
  );
  if (augment.eda > 0 && augment.lexicon === null && needsLexicon.length > 0)
    out.push({
      field: "augment.lexicon",
      message: `${name("augment.edaOps")} has ${needsLexicon.join(" and ")}, which draw${needsLexicon.length === 1 ? "s" : ""} synonyms from ${name("augment.lexicon")}: give one (webtune ships WordNet's, demo/public/data/lexicon/synonyms.tsv), or leave ${needsLexicon.join(" and ")} out.`,
    });
  if (evaluation.earlyStopPatience !== null && data.valSplit === 0)
    out.push({
      field: "evaluation.earlyStopPatience",
      message: `${name("evaluation.earlyStopPatience")} watches the validation loss: give ${name("data.valSplit")} above 0.`,
    });
  return out;
}

/** What a classification head's job cannot also ask for: one head, one task, no language-model text. */
function headProblems(
  job: FineTuneJobSpec,
  name: (f: JobField) => string,
): JobProblem[] {
  const task = job.adapter.task;
  if (task === "causal-lm") return [];
  const out: JobProblem[] = [];
  const refuse = (field: JobField, why: string) =>
    out.push({
      field,
      message: `${name(field)}: ${why} (${name("adapter.task")} ${task} trains a classification head).`,
    });
  if (job.method === "full")
    refuse("method", "a head trains beside a LoRA adapter; use lora");
  if (Array.isArray(job.data.train))
    refuse("data.train", "a head learns one task; name one training file");
  if (job.augment.paraphrases > 0)
    refuse(
      "augment.paraphrases",
      "paraphrases are made for a language model's prompts; use augment.eda for a head",
    );
  if (job.replay.source !== null)
    refuse(
      "replay.source",
      "a head's loss is over labels, so replayed text has nothing to train; leave replay out",
    );
  if (job.evaluation.fewShot !== null)
    refuse(
      "evaluation.fewShot",
      "prompting is no baseline for a head; leave the few-shot baseline out",
    );
  if (job.evaluation.retention !== null)
    refuse(
      "evaluation.retention",
      "an earlier task's test is scored by the LM head, not this one; leave retention out",
    );
  if (task === "seq-cls" && ![null, "classification"].includes(job.data.format))
    refuse(
      "data.format",
      `sequence classification reads {"text","label"} rows (classification), not ${job.data.format}`,
    );
  if (task === "token-cls" && job.data.format !== null)
    refuse(
      "data.format",
      'token classification reads {"tokens","tags"} rows or CoNLL files; leave the format out',
    );
  return out;
}

/** Throws a {@link JobError} naming every bad field of `job`. */
export function checkJob(
  job: FineTuneJobSpec,
  names: JobFieldNames = {},
): void {
  const problems = jobProblems(job, names);
  if (problems.length > 0) throw new JobError(problems);
}

/** The job's adapter as PEFT's LoraConfig fields. */
export function adapterConfig(a: FineTuneJobSpec["adapter"]): LoraConfigInput {
  return {
    r: a.r,
    lora_alpha: a.alpha,
    lora_dropout: a.dropout,
    target_modules: a.targetModules,
    use_rslora: a.rslora,
    use_dora: a.dora,
  };
}

/**
 * The training settings form: each field is one FineTuneJob field, with a line of help. Its defaults are the
 * job's (JOB_DEFAULTS, as the CLI's); a preset or a loaded job file fills in other values.
 */
import type { JobFieldNames } from "@webtune/core";
// The defaults alone: "@webtune/core" itself would put tfjs in the page's bundle.
import {
  JOB_DEFAULTS,
  type FineTuneJobInput,
  type JobAdapter,
  type JobData,
  type JobField,
} from "@webtune/core/job";
import type { WorkerLoadOptions } from "@webtune/worker";
import { byId } from "./dom.js";

/** How a field's text maps to its job value. */
type Kind =
  /** A whole number. */
  | "int"
  /** A whole number where 0 means none (null in the job). */
  | "int-or-none"
  | "number"
  | "checkbox"
  /** Comma-separated module names, or all-linear. */
  | "targets"
  /** A choice among the options of CHOICES[name]. */
  | "choice"
  /** A share of every batch replayed from the demo's general text; 0: no replay. */
  | "replay"
  /** A checkbox: the forgetting check on the demo's reference text, or none. */
  | "reference"
  /** Text-level augmentation: variants per training row, with the demo's WordNet lexicon; 0: none. */
  | "augment-eda";

interface Field {
  name: string;
  /** The job field it sets, "section.key". */
  field: JobField;
  label: string;
  help: string;
  kind: Kind;
}

const FIELDS: Field[] = [
  {
    name: "method",
    field: "method",
    label: "method",
    help: "LoRA trains a small adapter beside frozen weights; full fine-tuning trains every weight (small models only).",
    kind: "choice",
  },
  {
    name: "task",
    field: "adapter.task",
    label: "answers with",
    help: "What the tuned model answers: text from its language-model head, or labels from a small head trained in full beside the adapter (PEFT's task_type).",
    kind: "choice",
  },
  {
    name: "labelSubwords",
    field: "data.labelSubwords",
    label: "label subwords",
    help: "Which subwords of a word carry its tag; the first is Hugging Face's default (the rest are left out of the loss).",
    kind: "choice",
  },
  {
    name: "r",
    field: "adapter.r",
    label: "rank r",
    help: "Adapter rank: capacity of the update. 8–16 is typical.",
    kind: "int",
  },
  {
    name: "alpha",
    field: "adapter.alpha",
    label: "alpha",
    help: "Scale of the update is alpha / r.",
    kind: "number",
  },
  {
    name: "dropout",
    field: "adapter.dropout",
    label: "dropout",
    help: "Dropout on the adapter's input, against overfitting small data.",
    kind: "number",
  },
  {
    name: "targets",
    field: "adapter.targetModules",
    label: "target modules",
    help: "Comma-separated Linear names, or all-linear (PEFT's shorthand).",
    kind: "targets",
  },
  {
    name: "lr",
    field: "training.learningRate",
    label: "learning rate",
    help: "Peak, after warm-up; cosine decay to 0. LoRA takes larger rates than full tuning.",
    kind: "number",
  },
  {
    name: "batch",
    field: "training.batchSize",
    label: "batch size",
    help: "Examples per step. Larger is smoother and needs more GPU memory.",
    kind: "int",
  },
  {
    name: "epochs",
    field: "training.epochs",
    label: "epochs",
    help: "Passes over the training split (unless max steps is set).",
    kind: "int",
  },
  {
    name: "maxSteps",
    field: "training.maxSteps",
    label: "max steps",
    help: "Stop after this many steps; 0 means run the epochs.",
    kind: "int-or-none",
  },
  {
    name: "warmup",
    field: "training.warmupSteps",
    label: "warm-up steps",
    help: "Steps of linear warm-up from 0 to the peak rate.",
    kind: "int",
  },
  {
    name: "evalEvery",
    field: "evaluation.evalEvery",
    label: "validate every",
    help: "Steps between validation losses (the orange line). 0: only at the end.",
    kind: "int-or-none",
  },
  {
    name: "valRows",
    field: "evaluation.valRows",
    label: "validation rows",
    help: "Rows each validation check scores; fewer check faster. 0: all.",
    kind: "int-or-none",
  },
  {
    name: "patience",
    field: "evaluation.earlyStopPatience",
    label: "early-stop patience",
    help: "Stop when validation has not improved for this many checks, and keep the best; 0 turns it off.",
    kind: "int-or-none",
  },
  {
    name: "replay",
    field: "replay.ratio",
    label: "replay general text",
    help: "Share of every batch drawn from general text (the model's own pretraining kind), against forgetting; 0: none.",
    kind: "replay",
  },
  {
    name: "augmentEda",
    field: "augment.eda",
    label: "word-level augmentation",
    help: "Copies of each training row with one word operation each (WordNet synonyms, insertion, swap, deletion), against overfitting small data; validation and test are never augmented. 0: none.",
    kind: "augment-eda",
  },
  {
    name: "augmentParaphrases",
    field: "augment.paraphrases",
    label: "paraphrases by the base model",
    help: "Paraphrases of each training row sampled from the base model, kept when likely and related to the row (instruction and classification data). 0: none.",
    kind: "int",
  },
  {
    name: "checkForgetting",
    field: "evaluation.reference",
    label: "check forgetting",
    help: "Score general text before and after training: a rise in its loss is what the task cost the model.",
    kind: "reference",
  },
  {
    name: "gradientCheckpointing",
    field: "training.gradientCheckpointing",
    label: "gradient checkpointing",
    help: "Keep only each block's input and recompute the block in the backward pass: far less memory, about a third more time.",
    kind: "checkbox",
  },
  {
    name: "checkpointEvery",
    field: "checkpointEvery",
    label: "checkpoint every",
    help: "Steps between checkpoints in this browser's storage, so a reload can resume; 0: none.",
    kind: "int-or-none",
  },
  {
    name: "maxLength",
    field: "data.maxLength",
    label: "max tokens per row",
    help: "Longer rows are truncated.",
    kind: "int",
  },
  {
    name: "testRows",
    field: "evaluation.testRows",
    label: "test rows to score",
    help: "Exact match decodes every row; fewer rows evaluate faster. 0: all.",
    kind: "int-or-none",
  },
  {
    name: "scoreBase",
    field: "evaluation.scoreBase",
    label: "score the base model first",
    help: "Before training, score the base model on the test rows, for the comparison.",
    kind: "checkbox",
  },
];

/** The options of each "choice" field: its job values and their words. */
const CHOICES: Record<string, [value: string, words: string][]> = {
  method: [
    ["lora", "LoRA adapter"],
    ["full", "full fine-tuning"],
  ],
  task: [
    ["causal-lm", "language model (next token)"],
    ["seq-cls", "sequence classification head (a label per text)"],
    ["token-cls", "token classification head (a tag per word)"],
  ],
  labelSubwords: [
    ["first", "first subword of each word"],
    ["all", "every subword"],
  ],
};

/** What a job's model answers with (its adapter.task). */
export type Task = JobAdapter["task"];

/** The demo's general text: replayed against forgetting, and the held-out reference that measures it. */
export const REPLAY_FILE = "data/replay.jsonl";
export const REFERENCE_FILE = "data/reference.jsonl";
/** The synonyms text-level augmentation draws from: WordNet 3.0's (demo/public/data/lexicon). */
export const LEXICON_FILE = "data/lexicon/synonyms.tsv";

/** The form's labels as job errors and the Trainer's advice should say them. */
export const PAGE_FIELD_NAMES: JobFieldNames = {
  ...Object.fromEntries(FIELDS.map((f) => [f.field, `"${f.label}"`])),
  "replay.source": '"replay general text"',
};

/** How the Trainer's advice (a diverging run's) names this page's controls. */
export const PAGE_TRAINER_NAMES = {
  learningRate: '"learning rate" at',
  warmupSteps: '"warm-up steps" at',
};

/** How data messages name this page's controls, instead of the API's option names. */
export const PAGE_OPTION_NAMES = {
  skip: 'tick "Skip rows that cannot be read" (with your own file)',
  maxLength: '"max tokens per row"',
  truncate: null,
  format: null,
};

/** A field's value in a job input, as the form holds it (replay: its ratio, 0 when off; the check: on or off). */
function read(job: FineTuneJobInput, f: Field): unknown {
  if (f.kind === "replay") {
    if (job.replay?.source === undefined) return undefined;
    return job.replay.source === null ? 0 : job.replay.ratio;
  }
  if (f.kind === "augment-eda") return job.augment?.eda;
  if (f.kind === "reference") {
    const reference = job.evaluation?.reference;
    return reference === undefined ? undefined : reference !== null;
  }
  return get(job, f.field);
}

/** A field's job value set in a job input (replay and the check name the demo's files). */
function write(job: FineTuneJobInput, f: Field, value: unknown): void {
  if (f.kind === "replay")
    job.replay =
      value === null
        ? { source: null }
        : { source: REPLAY_FILE, ratio: value as number };
  else if (f.kind === "reference")
    set(job, f.field, value === true ? REFERENCE_FILE : null);
  else if (f.kind === "augment-eda")
    job.augment = {
      ...job.augment,
      eda: value as number,
      lexicon: (value as number) > 0 ? LEXICON_FILE : null,
    };
  else set(job, f.field, value);
}

/** A job field's value in a job input (section.key or a top-level field). */
function get(job: FineTuneJobInput, field: JobField): unknown {
  const [section, key] = field.split(".") as [string, string | undefined];
  const holder = job as Record<string, unknown>;
  return key
    ? (holder[section] as Record<string, unknown> | undefined)?.[key]
    : holder[section];
}

function set(job: FineTuneJobInput, field: JobField, value: unknown): void {
  const [section, key] = field.split(".") as [string, string | undefined];
  const holder = job as Record<string, unknown>;
  if (!key) holder[section] = value;
  else
    holder[section] = {
      ...(holder[section] as object | undefined),
      [key]: value,
    };
}

/** The job's default for a field, as the form shows it. */
function text(f: Field, value: unknown): string {
  if ((f.kind === "int-or-none" || f.kind === "replay") && value === null)
    return "0";
  if (f.kind === "targets" && Array.isArray(value)) return value.join(", ");
  return String(value);
}

const DEFAULTS: FineTuneJobInput = JOB_DEFAULTS as unknown as FineTuneJobInput;

/** Builds the form's fields, at the job defaults. */
export function renderSettings(): void {
  const form = byId<HTMLFormElement>("settings");
  form.replaceChildren(
    ...FIELDS.map((f) => {
      const label = document.createElement("label");
      const input = control(f);
      const help = document.createElement("small");
      help.textContent = f.help;
      label.append(f.label, input, help);
      label.id = `field-${f.name}`;
      return label;
    }),
  );
  // Subwords are a token-classification choice: shown for that task alone.
  form.addEventListener("change", showTaskFields);
  applyJob(DEFAULTS);
}

/** The task the form names (the job's adapter.task). */
export function formTask(): Task {
  return byId<HTMLSelectElement>("setting-task").value as Task;
}

/** What data rows are read for: the task, and for a token-classification head which subwords carry a tag. */
export interface DataReading {
  task: Task;
  labelSubwords: JobData["labelSubwords"];
}

/** The reading the form names (the job's adapter.task and data.labelSubwords). */
export function formReading(): DataReading {
  return {
    task: formTask(),
    labelSubwords: byId<HTMLSelectElement>("setting-labelSubwords")
      .value as DataReading["labelSubwords"],
  };
}

/** Whether rows read one way are the rows read the other (subwords matter to tagged rows alone). */
export function sameReading(a: DataReading, b: DataReading): boolean {
  return (
    a.task === b.task &&
    (a.task !== "token-cls" || a.labelSubwords === b.labelSubwords)
  );
}

function showTaskFields(): void {
  byId("field-labelSubwords").hidden = formTask() !== "token-cls";
}

function control(f: Field): HTMLInputElement | HTMLSelectElement {
  if (f.kind === "choice") {
    const select = document.createElement("select");
    select.id = `setting-${f.name}`;
    select.name = f.name;
    for (const [value, words] of CHOICES[f.name]!) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = words;
      select.append(option);
    }
    return select;
  }
  const input = document.createElement("input");
  input.name = f.name;
  input.id = `setting-${f.name}`;
  if (f.kind === "checkbox" || f.kind === "reference") input.type = "checkbox";
  else if (f.kind !== "targets") {
    input.type = "number";
    input.step = f.kind === "number" || f.kind === "replay" ? "any" : "1";
    input.min = "0";
    if (f.kind === "replay") input.max = "0.9";
  }
  return input;
}

/** Sets the fields a job (or a preset's partial job) gives; the others keep their values. */
export function applyJob(job: FineTuneJobInput): void {
  for (const f of FIELDS) {
    const value = read(job, f);
    if (value === undefined) continue;
    const input = byId<HTMLInputElement>(`setting-${f.name}`);
    if (f.kind === "checkbox" || f.kind === "reference")
      input.checked = value === true;
    else input.value = text(f, value);
  }
  showTaskFields();
}

/**
 * Sets a preset's fields. A preset is a task: one that names no head answers with the language model, whatever
 * the preset before it trained.
 */
export function applyPreset(job: FineTuneJobInput): void {
  applyJob({
    ...job,
    adapter: { task: JOB_DEFAULTS.adapter.task, ...job.adapter },
    data: { labelSubwords: JOB_DEFAULTS.data.labelSubwords, ...job.data },
  });
}

/** Every field's text at the job defaults (what a fresh form shows). */
export function defaultValues(): Record<string, string> {
  return Object.fromEntries(
    FIELDS.map((f) => {
      const value = read(DEFAULTS, f);
      return [f.name, f.kind === "reference" ? String(value) : text(f, value)];
    }),
  );
}

/** Every field's current text, for saving a run. */
export function currentValues(): Record<string, string> {
  return Object.fromEntries(
    FIELDS.map((f) => {
      const input = byId<HTMLInputElement>(`setting-${f.name}`);
      return [
        f.name,
        f.kind === "checkbox" || f.kind === "reference"
          ? String(input.checked)
          : input.value,
      ];
    }),
  );
}

/** Sets fields from saved texts (see currentValues). */
export function restoreValues(values: Record<string, string>): void {
  for (const f of FIELDS) {
    const value = values[f.name];
    if (value === undefined) continue;
    const input = byId<HTMLInputElement>(`setting-${f.name}`);
    if (f.kind === "checkbox" || f.kind === "reference")
      input.checked = value === "true";
    else input.value = value;
  }
  showTaskFields();
}

/**
 * The job fields the form describes, from the fields' texts. A field that is not a number where one is needed
 * goes into the job as its text, so that the job's check names it with the rest.
 */
export function settingsJob(values = currentValues()): FineTuneJobInput {
  const job: FineTuneJobInput = {};
  for (const f of FIELDS) write(job, f, parse(f, values[f.name] ?? ""));
  return job;
}

function parse(f: Field, raw: string): unknown {
  const value = raw.trim();
  switch (f.kind) {
    case "checkbox":
    case "reference":
      return value === "true";
    case "choice":
      return value;
    case "targets":
      return value === "all-linear" || value === ""
        ? "all-linear"
        : value
            .split(",")
            .map((t) => t.trim())
            .filter(Boolean);
    default: {
      const n = value === "" ? NaN : Number(value);
      if (!Number.isFinite(n)) return value;
      return (f.kind === "int-or-none" || f.kind === "replay") && n === 0
        ? null
        : n;
    }
  }
}

/** The base-weights choice of the model panel as load options: NF4 and int8 keep the embeddings in f16. */
export function weightStorage(choice: string): WorkerLoadOptions {
  if (choice === "float16") return { dtype: "float16" };
  if (choice === "int8" || choice === "nf4")
    return { dtype: "float16", quantize: choice, doubleQuant: true };
  return {};
}

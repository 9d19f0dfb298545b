/**
 * A job's augmentation (`job.augment`): new training rows made from each task's training split, after the split,
 * so that no validation or test row, nor anything made from one, is ever trained on.
 *
 * - Text-level (EDA): `augment.eda` variants of each row, one word operation each (synonyms from the lexicon,
 *   insertion, swap, deletion), on the part of the row that varies: a classification row's text, an instruction
 *   prompt's input (the part its prompt template leaves open; the whole prompt where there is no template), a
 *   completion row's text. Answers and labels are never touched.
 * - Model-level: `augment.paraphrases` samples of the base model paraphrasing that same part, kept by likelihood
 *   (see train/paraphrase.ts); classification and instruction rows only.
 *
 * The new rows are cleaned as the file's rows were (too long, duplicates), and one that repeats a training,
 * validation or test row is dropped. Every new row keeps its source row's line and says how it was made
 * (`Example.origin`); the task's cleaning report counts them (`report.augmented`).
 */
import { ConfigError } from "../errors.js";
import type { PretrainedModel } from "../models/pretrained.js";
import { modelPadTokenId } from "../lora/heads.js";
import { Cleaner } from "../train/data/clean.js";
import type { DatasetRecord } from "../train/data/formats.js";
import { renderRecord } from "../train/data/render.js";
import { sequenceExample } from "../train/data/head_examples.js";
import {
  edaVariants,
  parseLexicon,
  type Lexicon,
} from "../train/data/augment/index.js";
import { keyDigest } from "../hash.js";
import type {
  AugmentOrigin,
  AugmentReport,
  DatasetInput,
  Example,
} from "../train/data/types.js";
import { paraphrase } from "../train/paraphrase.js";
import type { JobFileField, JobSplits, TaskSplits } from "./data.js";
import type { FineTuneJobSpec } from "./job.js";
import { fieldName, type JobFieldNames } from "./validate.js";
import {
  INPUT,
  applyPromptTemplate,
  fitsPromptTemplate,
} from "./prompt_template.js";

export interface AugmentJobOptions {
  readFile: (source: string, field: JobFileField) => Promise<DatasetInput>;
  names?: JobFieldNames;
  /** The instruction prompt template the run uses (derived or given). */
  promptTemplate: string | null;
  signal?: AbortSignal;
  /** Called before the base model samples paraphrases of a task's rows. */
  onParaphrasing?: (task: string, rows: number) => void;
}

/** A row's augmentable part and how a record is rebuilt around a new version of it. */
interface Editable {
  text: string;
  rebuild: (text: string) => DatasetRecord;
}

/** Whether the job asks for any augmentation. */
export const augments = (job: FineTuneJobSpec): boolean =>
  job.augment.eda > 0 || job.augment.paraphrases > 0;

/**
 * Adds the augmented rows to each task's training split of `data` (in place), with their counts in the task's
 * cleaning report. Nothing is changed when a task cannot be augmented (the error names it).
 */
export async function augmentJobData(
  job: FineTuneJobSpec,
  data: JobSplits,
  model: PretrainedModel,
  o: AugmentJobOptions,
): Promise<void> {
  if (!augments(job)) return;
  const name = (f: Parameters<typeof fieldName>[1]) => fieldName(o.names, f);
  const lexicon = await readLexicon(job, o);
  const added: { rows: Example[]; report: AugmentReport }[] = [];
  for (const task of data.tasks) {
    if (
      task.format === "tagged" ||
      task.format === "chat" ||
      task.format === "tokens"
    )
      throw new ConfigError(
        `${name("augment.eda")}: ${task.source} is ${task.format} data; augmentation rewrites the text of ` +
          `classification, instruction and completion rows only. Leave augmentation out for it.`,
      );
    if (job.augment.paraphrases > 0 && task.format === "completion")
      throw new ConfigError(
        `${name("augment.paraphrases")}: ${task.source} is completion data, which has no text apart from its ` +
          `answer to paraphrase; paraphrases are made for classification and instruction rows. Use ${name("augment.eda")}.`,
      );
    added.push(await augmentTask(job, task, model, lexicon, o));
  }
  // Applied once every task is made, so that a stop midway leaves every task as it was read.
  data.tasks.forEach((task, i) => {
    task.train = [...task.train, ...added[i]!.rows];
    task.report = { ...task.report, augmented: added[i]!.report };
  });
  data.train = data.tasks[0]!.train;
  data.report = data.tasks[0]!.report;
}

async function readLexicon(
  job: FineTuneJobSpec,
  o: AugmentJobOptions,
): Promise<Lexicon | undefined> {
  const source = job.augment.lexicon;
  if (source === null || job.augment.eda === 0) return undefined;
  const input = await o.readFile(source, "augment.lexicon");
  const text =
    typeof input === "string" ? input : new TextDecoder().decode(input);
  return parseLexicon(text, source);
}

/** One task's new rows, and their counts for its report. */
async function augmentTask(
  job: FineTuneJobSpec,
  task: TaskSplits,
  model: PretrainedModel,
  lexicon: Lexicon | undefined,
  o: AugmentJobOptions,
): Promise<{ rows: Example[]; report: AugmentReport }> {
  const tokenizer = model.tokenizer!;
  const { augment, training } = job;
  const editable = task.train.map((e) =>
    editableOf(e, task, tokenizer, o.promptTemplate),
  );
  const made: { record: DatasetRecord; origin: AugmentOrigin }[] = [];
  if (augment.eda > 0)
    task.train.forEach((row, i) => {
      const variants = edaVariants(editable[i]!.text, {
        count: augment.eda,
        alpha: augment.edaAlpha,
        ops: augment.edaOps,
        lexicon,
        seed: training.seed,
        rowIndex: row.line,
      });
      variants.forEach((text, variant) =>
        made.push({
          record: editable[i]!.rebuild(text),
          origin: { kind: "eda", line: row.line, variant },
        }),
      );
    });
  const report: AugmentReport = {
    sourceRows: task.train.length,
    eda: made.length,
    paraphrases: { sampled: 0, kept: 0, rejected: {} },
    added: 0,
    dropped: { duplicate: 0, tooLong: 0, malformed: 0, empty: 0 },
  };
  if (augment.paraphrases > 0) {
    o.onParaphrasing?.(task.name, task.train.length);
    const samples = await paraphrase(
      model,
      tokenizer,
      editable.map((e) => e.text),
      {
        count: augment.paraphrases,
        prompt: augment.paraphrasePrompt,
        minLogProb: augment.paraphraseMinLogProb,
        minGain: augment.paraphraseMinGain,
        temperature: augment.paraphraseTemperature,
        seed: training.seed,
        keys: task.train.map((row) => row.line),
        signal: o.signal,
      },
    );
    report.paraphrases.sampled = samples.length;
    for (const p of samples) {
      if (!p.kept) {
        const why = p.rejected!;
        report.paraphrases.rejected[why] =
          (report.paraphrases.rejected[why] ?? 0) + 1;
        continue;
      }
      report.paraphrases.kept++;
      made.push({
        record: editable[p.source]!.rebuild(p.text),
        origin: {
          kind: "paraphrase",
          line: task.train[p.source]!.line,
          variant: p.sample,
          logProb: p.logProb,
          gain: p.gain,
        },
      });
    }
  }
  const rows = clean(job, task, model, made, report);
  report.added = rows.length;
  return { rows, report };
}

/** The new records as training examples: cleaned like the file's rows, minus repeats of any real row. */
function clean(
  job: FineTuneJobSpec,
  task: TaskSplits,
  model: PretrainedModel,
  made: { record: DatasetRecord; origin: AugmentOrigin }[],
  report: AugmentReport,
): Example[] {
  const tokenizer = model.tokenizer!;
  const seqCls = job.adapter.task === "seq-cls";
  const cleaner = new Cleaner({
    source: task.source,
    onError: "skip",
    maxLength: seqCls ? undefined : job.data.maxLength,
    truncate: !seqCls,
    dedupe: true,
    vocabSize: model.dims.vocabSize,
  });
  // Kept examples carry their record's digest as their key, which finds the origin again.
  const origins = new Map<string, AugmentOrigin>();
  for (const { record, origin } of made) {
    const key = JSON.stringify(record);
    cleaner.offer(origin.line, key, false, () =>
      renderRecord(record, tokenizer),
    );
    if (!origins.has(keyDigest(key))) origins.set(keyDigest(key), origin);
  }
  const real = new Set(
    [...task.train, ...task.val, ...task.test].map((e) => e.key),
  );
  const counts = cleaner.report().dropped;
  Object.assign(report.dropped, counts);
  const kept: Example[] = [];
  for (const e of cleaner.examples) {
    if (real.has(e.key)) {
      report.dropped.duplicate++;
      continue;
    }
    const example = { ...e, origin: origins.get(e.key!)! };
    kept.push(
      seqCls
        ? sequenceExample(example, tokenizer, task.labels ?? [], {
            maxLength: job.data.maxLength,
            padId: modelPadTokenId(model),
          })
        : example,
    );
  }
  return kept;
}

/** The part of a training row that augmentation rewrites, and how its record is rebuilt. */
function editableOf(
  e: Example,
  task: TaskSplits,
  tokenizer: NonNullable<PretrainedModel["tokenizer"]>,
  template: string | null,
): Editable {
  if (task.format === "classification") {
    const label = e.label!;
    return {
      text: e.text ?? "",
      rebuild: (text) => ({ format: "classification", text, label }),
    };
  }
  if (task.format === "instruction") {
    const completion = e.completion ?? "";
    const prompt = e.prompt ?? "";
    if (template !== null && fitsPromptTemplate(template, prompt)) {
      const [head, tail] = template.split(INPUT) as [string, string];
      return {
        text: prompt.slice(head.length, prompt.length - tail.length),
        rebuild: (input) => ({
          format: "instruction",
          prompt: applyPromptTemplate(template, input),
          completion,
        }),
      };
    }
    return {
      text: prompt,
      rebuild: (p) => ({ format: "instruction", prompt: p, completion }),
    };
  }
  return {
    text: tokenizer.decode(e.inputIds, { skipSpecialTokens: true }),
    rebuild: (text) => ({ format: "completion", text }),
  };
}

/** One augmented training row as a readable record: what it says and where it came from. */
export interface AugmentedRecord {
  task: string;
  kind: AugmentOrigin["kind"];
  /** The source row's line in the training file. */
  line: number;
  variant: number;
  logProb?: number;
  gain?: number;
  /** Classification: the text and its label; instruction: the prompt and completion; completion: the text. */
  text?: string;
  label?: string;
  prompt?: string;
  completion?: string;
}

/**
 * The augmented rows of a run's training splits, each traced to its source row (a CLI writes them to
 * augmented.jsonl beside the adapter, so that a person can read what was trained on).
 *
 * @example
 * ```ts
 * const rows = augmentedRecords(run.splits); // [{ task: "fortunes", kind: "eda", line: 12, variant: 0, text, label }]
 * ```
 */
export function augmentedRecords(splits: JobSplits): AugmentedRecord[] {
  return splits.tasks.flatMap((task) =>
    task.train.flatMap((e) => {
      if (!e.origin) return [];
      const { kind, line, variant, logProb, gain } = e.origin;
      const said =
        task.format === "classification"
          ? { text: e.text, label: e.label }
          : task.format === "instruction"
            ? { prompt: e.prompt, completion: e.completion }
            : { text: e.text ?? e.prompt };
      return [
        {
          task: task.name,
          kind,
          line,
          variant,
          ...(logProb === undefined ? {} : { logProb, gain }),
          ...said,
        },
      ];
    }),
  );
}

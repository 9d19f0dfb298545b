/** A job's data: its files read with the model's tokenizer, cleaned, and split as the job says. */
import { ConfigError } from "../errors.js";
import type { PretrainedModel } from "../models/pretrained.js";
import { buildDataset, type Dataset } from "../train/data/build.js";
import { splitDataset } from "../train/data/split.js";
import { sequenceExample, taggedDataset } from "../train/data/head_examples.js";
import { modelPadTokenId } from "../lora/heads.js";
import type {
  DatasetInput,
  Example,
  OptionNames,
} from "../train/data/types.js";
import type { FineTuneJobSpec, JobField } from "./job.js";
import { fieldName, type JobFieldNames } from "./validate.js";

/** One task's data, read and split. */
export interface TaskSplits {
  /** Its name in reports: the training file's folder for a file named train.* (`dates`), else its file name. */
  name: string;
  /** The training file, as the job names it. */
  source: string;
  /** The file's format; "tagged" for token classification's words and tags. */
  format: Dataset["format"] | "tagged";
  report: Dataset["report"];
  labels?: string[];
  train: Example[];
  val: Example[];
  test: Example[];
}

/** An earlier task's test file, scored before and after a sequential stage. */
export interface RetentionSet {
  name: string;
  source: string;
  format: Dataset["format"];
  labels?: string[];
  rows: Example[];
}

/**
 * A job's data, read and split: what {@link readJobData} gives. Its own fields are the first task's (the only
 * one, unless the job trains several); `tasks` holds each.
 */
export interface JobSplits extends Omit<TaskSplits, "name" | "source"> {
  tasks: TaskSplits[];
  reference?: Example[];
  /** The rows replayed into every batch. */
  replay?: Example[];
  retention?: RetentionSet[];
}

/** The job's files a run reads, by the field that names them. */
export type JobFileField =
  | "data.train"
  | "data.test"
  | "evaluation.reference"
  | "evaluation.retention"
  | "replay.source"
  | "augment.lexicon";

/** Where a run gets the files a job names, and how its messages name the job's fields and the reader's options. */
export interface JobDataOptions {
  /** The bytes or text of a file the job names: its training, test, reference, retention or replay file. */
  readFile: (source: string, field: JobFileField) => Promise<DatasetInput>;
  names?: JobFieldNames;
  dataNames?: Partial<OptionNames>;
}

/** A list field's files: one file, several, or none. */
export const filesOf = (v: string | string[] | null): string[] =>
  v === null ? [] : Array.isArray(v) ? v : [v];

/** Short, distinct names for files: `dates` for data/dates/train.jsonl, `general` for general.jsonl. */
export function taskNames(sources: readonly string[]): string[] {
  const names = sources.map((source) => {
    const parts = source.split(/[/\\]/).filter(Boolean);
    const file = parts.at(-1) ?? source;
    const stem = file.replace(/\.[^.]*$/, "");
    return /^(train|test)$/i.test(stem) && parts.length > 1
      ? parts.at(-2)!
      : stem;
  });
  return names.map((n, i) =>
    names.indexOf(n) === i && names.lastIndexOf(n) === i ? n : `${n}-${i + 1}`,
  );
}

/**
 * Reads the job's files with the model's tokenizer (token ids checked against its vocabulary) and splits each
 * training file; nothing is kept if any file is at fault. The test rows are all of them (`evaluation.testRows` is
 * applied by the run).
 */
export async function readJobData(
  job: FineTuneJobSpec,
  model: Pick<PretrainedModel, "tokenizer" | "dims" | "source" | "config">,
  o: JobDataOptions,
): Promise<JobSplits> {
  const tokenizer = model.tokenizer;
  const trainFiles = filesOf(job.data.train);
  if (!tokenizer)
    throw new ConfigError(
      `${model.source} has no tokenizer.json, which reading ${trainFiles.join(", ")} needs.`,
    );
  const name = (f: JobField) => fieldName(o.names, f);
  const read = async (
    field: JobFileField,
    source: string,
    format: Dataset["format"] | null,
    evaluation: boolean,
  ) =>
    buildDataset(await o.readFile(source, field), tokenizer, {
      source,
      format: format ?? undefined,
      // A sequence-classification head reads the text alone, cut to maxLength below (sequenceExample): the
      // language model's rendering, text and label, must not decide which rows are too long.
      ...(job.adapter.task === "seq-cls"
        ? {}
        : { maxLength: job.data.maxLength, truncate: true }),
      // Training data is deduplicated; evaluation files keep every row, so their scores count rows as other tools do.
      dedupe: !evaluation,
      onError: job.data.skipBadRows ? "skip" : "throw",
      vocabSize: model.dims.vocabSize,
      optionNames: o.dataNames,
    });
  const testFiles = filesOf(job.data.test);
  const names = taskNames(trainFiles);
  const tasks: TaskSplits[] = [];
  if (job.adapter.task === "token-cls") {
    const readTagged = async (
      field: JobFileField,
      source: string,
      labels?: string[],
    ) =>
      taggedDataset(textOf(await o.readFile(source, field)), tokenizer, {
        source,
        maxLength: job.data.maxLength,
        labelSubwords: job.data.labelSubwords,
        labels,
      });
    const source = trainFiles[0]!;
    const main = await readTagged("data.train", source);
    const split = splitDataset(main.examples, {
      val: job.data.valSplit,
      test: testFiles.length > 0 ? 0 : job.data.testSplit,
      seed: job.training.seed,
      stratify: false,
    });
    if (testFiles[0])
      split.test = (
        await readTagged("data.test", testFiles[0], main.labels)
      ).examples;
    tasks.push({
      name: names[0]!,
      source,
      format: "tagged",
      report: main.report,
      labels: main.labels,
      ...split,
    });
  }
  for (const [i, source] of (tasks.length > 0 ? [] : trainFiles).entries()) {
    const main = await read("data.train", source, job.data.format, false);
    const split = splitDataset(main.examples, {
      val: job.data.valSplit,
      test: testFiles.length > 0 ? 0 : job.data.testSplit,
      seed: job.training.seed,
      stratify: main.format === "classification",
    });
    const testFile = testFiles[i];
    if (testFile) {
      const test = await read("data.test", testFile, main.format, true);
      const unknown = (test.labels ?? []).filter(
        (l) => !(main.labels ?? []).includes(l),
      );
      if (unknown.length > 0)
        throw new ConfigError(
          `${name("data.test")} ${testFile} has labels that ${name("data.train")} ${source} never uses: ${unknown.join(", ")}.`,
        );
      split.test = test.examples;
    }
    if (job.adapter.task === "seq-cls") {
      const labels = main.labels ?? [];
      const options = {
        maxLength: job.data.maxLength,
        padId: modelPadTokenId(model),
      };
      // The report is the training file's: its rows cut to maxLength (a test file's are not counted).
      const counts = { truncated: 0 };
      for (const part of ["train", "val", "test"] as const) {
        const ofTrainingFile = part !== "test" || !testFile;
        split[part] = split[part].map((e) =>
          sequenceExample(e, tokenizer, labels, {
            ...options,
            ...(ofTrainingFile ? { counts } : {}),
          }),
        );
      }
      main.report.truncated = counts.truncated;
    }
    tasks.push({
      name: names[i]!,
      source,
      format: main.format,
      report: main.report,
      labels: main.labels,
      ...split,
    });
  }
  const reference = job.evaluation.reference
    ? (
        await read(
          "evaluation.reference",
          job.evaluation.reference,
          "completion",
          true,
        )
      ).examples
    : undefined;
  const replay = job.replay.source
    ? (await read("replay.source", job.replay.source, null, false)).examples
    : undefined;
  const retentionFiles = filesOf(job.evaluation.retention);
  const retentionNames = taskNames(retentionFiles);
  const retention: RetentionSet[] = [];
  for (const [i, source] of retentionFiles.entries()) {
    const file = await read("evaluation.retention", source, null, true);
    retention.push({
      name: retentionNames[i]!,
      source,
      format: file.format,
      labels: file.labels,
      rows: file.examples,
    });
  }
  const first = tasks[0]!;
  return {
    format: first.format,
    report: first.report,
    labels: first.labels,
    train: first.train,
    val: first.val,
    test: first.test,
    tasks,
    reference,
    replay,
    retention: retention.length > 0 ? retention : undefined,
  };
}

/** A file's text, whatever form the reader handed it in. */
function textOf(input: DatasetInput): string {
  return typeof input === "string" ? input : new TextDecoder().decode(input);
}

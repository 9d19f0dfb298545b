/** A job's data: its files read with the model's tokenizer, cleaned, and split as the job says. */
import { ConfigError } from "../errors.js";
import type { PretrainedModel } from "../models/pretrained.js";
import { buildDataset, type Dataset } from "../train/data/build.js";
import { splitDataset } from "../train/data/split.js";
import type { Example } from "../train/data/types.js";
import type { FineTuneJobSpec, JobField } from "./job.js";
import type { JobRunOptions } from "./run.js";
import { fieldName } from "./validate.js";

/** A job's data, read and split: what {@link readJobData} gives. */
export interface JobSplits {
  format: Dataset["format"];
  report: Dataset["report"];
  labels?: string[];
  train: Example[];
  val: Example[];
  test: Example[];
  reference?: Example[];
}

/**
 * Reads the job's files with the model's tokenizer (token ids checked against its vocabulary) and splits them;
 * nothing is kept if any file is at fault. The test rows are all of them (`evaluation.testRows` is applied by the
 * run).
 */
export async function readJobData(
  job: FineTuneJobSpec,
  model: Pick<PretrainedModel, "tokenizer" | "dims" | "source">,
  o: Pick<JobRunOptions, "readFile" | "names" | "dataNames">,
): Promise<JobSplits> {
  const tokenizer = model.tokenizer;
  if (!tokenizer)
    throw new ConfigError(
      `${model.source} has no tokenizer.json, which reading ${job.data.train} needs.`,
    );
  const name = (f: JobField) => fieldName(o.names, f);
  const read = async (
    field: "data.train" | "data.test" | "evaluation.reference",
    source: string,
    format: Dataset["format"] | null,
    evaluation: boolean,
  ) =>
    buildDataset(await o.readFile(source, field), tokenizer, {
      source,
      format: format ?? undefined,
      maxLength: job.data.maxLength,
      truncate: true,
      // Training data is deduplicated; evaluation files keep every row, so their scores count rows as other tools do.
      dedupe: !evaluation,
      onError: job.data.skipBadRows ? "skip" : "throw",
      vocabSize: model.dims.vocabSize,
      optionNames: o.dataNames,
    });
  const main = await read("data.train", job.data.train, job.data.format, false);
  const split = splitDataset(main.examples, {
    val: job.data.valSplit,
    test: job.data.test ? 0 : job.data.testSplit,
    seed: job.training.seed,
    stratify: main.format === "classification",
  });
  if (job.data.test) {
    const test = await read("data.test", job.data.test, main.format, true);
    const unknown = (test.labels ?? []).filter(
      (l) => !(main.labels ?? []).includes(l),
    );
    if (unknown.length > 0)
      throw new ConfigError(
        `${name("data.test")} ${job.data.test} has labels that ${name("data.train")} ${job.data.train} never uses: ${unknown.join(", ")}.`,
      );
    split.test = test.examples;
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
  return {
    format: main.format,
    report: main.report,
    labels: main.labels,
    ...split,
    reference,
  };
}

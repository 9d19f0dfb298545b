/** What every command does first: start WebGPU, load the model (and adapter), read a dataset file. */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import {
  buildDataset,
  DATASET_FORMATS,
  ConfigError,
  initRuntime,
  loadModel,
  LoraModel,
  type DatasetFormat,
  type PretrainedModel,
  type WeightOptions,
} from "@webtune/core";

export interface Loaded {
  model: PretrainedModel;
  /** Present when an adapter was given, or when training adds one. */
  peft: LoraModel;
}

/** `weights.trainable` loads every weight as a variable, for full fine-tuning; the rest picks the base's storage. */
export async function loadForCommand(
  source: string,
  adapter?: string,
  weights: WeightOptions = {},
): Promise<Loaded> {
  await initRuntime();
  const model = await loadModel(source, weights);
  const peft = new LoraModel(model);
  if (adapter) await peft.loadAdapter("default", adapter);
  return { model, peft };
}

const FORMATS: readonly string[] = DATASET_FORMATS;

/** How dataset messages name the CLI's flags (see OptionNames). */
export const DATA_FLAG_NAMES = {
  skip: "pass --skip-bad-rows",
  maxLength: "--seq-len",
  truncate: null,
  format: "--format",
};

/**
 * Reads a dataset file with the model's tokenizer, checking token ids against the model's vocabulary. Files read
 * for training are deduplicated; files read for evaluation (`evaluation`: eval --data, --test, --reference) keep
 * every row, so their scores count each row as other tools do.
 */
export async function readDataset(
  file: string,
  model: PretrainedModel,
  options: {
    format?: string;
    seqLen: number;
    flag?: string;
    evaluation?: boolean;
    skipBadRows?: boolean;
  },
): Promise<ReturnType<typeof buildDataset>> {
  if (options.format !== undefined && !FORMATS.includes(options.format)) {
    throw new ConfigError(
      `--format must be one of ${FORMATS.join(", ")}, got "${options.format}".`,
    );
  }
  const bytes = await readFile(file).catch((e: NodeJS.ErrnoException) => {
    throw new ConfigError(
      `cannot read ${options.flag ?? "--data"} ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}.`,
    );
  });
  const tokenizer = model.tokenizer;
  if (!tokenizer) {
    throw new ConfigError(
      `${model.source} has no tokenizer.json, which is needed to read ${basename(file)}.`,
    );
  }
  return buildDataset(new Uint8Array(bytes), tokenizer, {
    source: file,
    format: options.format as DatasetFormat | undefined,
    maxLength: options.seqLen,
    truncate: true,
    dedupe: !options.evaluation,
    onError: options.skipBadRows ? "skip" : "throw",
    vocabSize: model.dims.vocabSize,
    optionNames: DATA_FLAG_NAMES,
  });
}

/** Reading a dataset in the worker: clean, tokenize, split (or take a separate test file), and preview rows. */
import {
  buildDataset,
  findOverlap,
  splitDataset,
  type DatasetFormat,
  type Example,
  type Tokenizer,
} from "@webtune/core";
import type { DataOptions, DataSummary, PreviewRow } from "./api.js";

/** The splits the worker trains and evaluates on. */
export interface LoadedData {
  format: DatasetFormat;
  labels?: string[];
  train: Example[];
  val: Example[];
  test: Example[];
  seed: number;
}

const PREVIEW_ROWS = 5;

const bytesOrText = (input: string | ArrayBuffer) =>
  typeof input === "string" ? input : new Uint8Array(input);

function preview(examples: Example[], tokenizer: Tokenizer): PreviewRow[] {
  return examples.slice(0, PREVIEW_ROWS).map((e) => ({
    prompt: e.prompt,
    target:
      e.completion ?? tokenizer.decode(e.inputIds, { skipSpecialTokens: true }),
    label: e.label,
    tokens: e.inputIds.length,
  }));
}

/**
 * Reads `input` (and `o.test`) with the model's tokenizer, token ids checked against `vocabSize`; nothing is kept
 * if any file is at fault. The training file is deduplicated; a test file keeps every row, as evaluation scores it.
 */
export function readData(
  input: string | ArrayBuffer,
  o: DataOptions,
  tokenizer: Tokenizer,
  vocabSize?: number,
): { data: LoadedData; summary: DataSummary } {
  const read = (bytes: string | ArrayBuffer, source: string, dedupe = true) =>
    buildDataset(bytesOrText(bytes), tokenizer, {
      source,
      format: o.format,
      maxLength: o.maxLength ?? 256,
      truncate: true,
      dedupe,
      vocabSize,
      onError: o.skipBadRows ? "skip" : "throw",
      optionNames: o.optionNames,
    });
  const main = read(input, o.source);
  const testFile = o.test
    ? read(o.test.input, o.test.source, false)
    : undefined;
  const seed = o.seed ?? 0;
  const split = splitDataset(main.examples, {
    val: o.valSplit ?? 0.1,
    test: testFile ? 0 : (o.testSplit ?? 0),
    seed,
    stratify: main.format === "classification",
  });
  if (testFile) split.test = testFile.examples;
  const data: LoadedData = {
    format: main.format,
    labels: main.labels,
    ...split,
    seed,
  };
  return {
    data,
    summary: {
      format: main.format,
      report: main.report,
      labels: main.labels,
      sizes: {
        train: split.train.length,
        val: split.val.length,
        test: split.test.length,
      },
      preview: {
        train: preview(split.train, tokenizer),
        test: preview(split.test, tokenizer),
      },
      overlap: findOverlap([...split.train, ...split.val], split.test),
    },
  };
}

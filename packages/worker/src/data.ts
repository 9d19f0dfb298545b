/** Reading a dataset in the worker, as a job reads it (clean, tokenize, split or take a test file), with previews. */
import {
  FineTuneJob,
  findOverlap,
  readJobData,
  type Example,
  type FineTuneJobInput,
  type JobSplits,
  type PretrainedModel,
  type Tokenizer,
} from "@webtune/core";
import type { DataOptions, DataSummary, PreviewRow } from "./api.js";

/** The splits the worker trains and evaluates on. */
export interface LoadedData {
  /** "tagged": token classification's words and tags. */
  format: JobSplits["format"];
  labels?: string[];
  train: Example[];
  val: Example[];
  test: Example[];
}

const PREVIEW_ROWS = 5;

function preview(examples: Example[], tokenizer: Tokenizer): PreviewRow[] {
  return examples.slice(0, PREVIEW_ROWS).map((e) => ({
    prompt: e.prompt,
    target:
      e.completion ?? tokenizer.decode(e.inputIds, { skipSpecialTokens: true }),
    label: e.label,
    tokens: e.inputIds.length,
    ...(e.tags ? { words: wordsOf(e, tokenizer), tags: e.tags } : {}),
  }));
}

/** The job data section that DataOptions describe. */
export function dataJobInput(o: DataOptions): FineTuneJobInput {
  return {
    data: {
      train: o.source,
      test: o.test?.source ?? null,
      format: o.format ?? null,
      maxLength: o.maxLength,
      valSplit: o.valSplit,
      testSplit: o.test ? 0 : o.testSplit,
      skipBadRows: o.skipBadRows,
      labelSubwords: o.labelSubwords,
    },
    adapter: { task: o.task },
    training: { seed: o.seed },
  };
}

/**
 * Reads `input` (and `o.test`) with the model's tokenizer, token ids checked against `vocabSize`, exactly as a
 * job with these data options reads them; nothing is kept if any file is at fault.
 */
export async function readData(
  input: string | ArrayBuffer,
  o: DataOptions,
  model: Pick<PretrainedModel, "tokenizer" | "dims" | "source" | "config">,
): Promise<{ data: LoadedData; summary: DataSummary }> {
  const job = FineTuneJob.from({
    ...dataJobInput(o),
    model: { source: model.source },
  });
  const files = new Map<string, string | ArrayBuffer>([[o.source, input]]);
  if (o.test) files.set(o.test.source, o.test.input);
  const read = await readJobData(job, model, {
    readFile: async (source) => bytesOrText(files.get(source)!),
    dataNames: o.optionNames,
  });
  const data: LoadedData = {
    format: read.format,
    labels: read.labels,
    train: read.train,
    val: read.val,
    test: read.test,
  };
  const tokenizer = model.tokenizer!;
  return {
    data,
    summary: {
      format: read.format,
      report: read.report,
      labels: read.labels,
      sizes: {
        train: data.train.length,
        val: data.val.length,
        test: data.test.length,
      },
      preview: {
        train: preview(data.train, tokenizer),
        test: preview(data.test, tokenizer),
      },
      overlap: findOverlap([...data.train, ...data.val], data.test),
    },
  };
}

const bytesOrText = (input: string | ArrayBuffer) =>
  typeof input === "string" ? input : new Uint8Array(input);

/** A tagged row's words, decoded from its tokens word by word (HF's word_ids). */
function wordsOf(e: Example, tokenizer: Tokenizer): string[] {
  const words: number[][] = [];
  e.wordIds?.forEach((w, t) => {
    if (w !== null) (words[w] ??= []).push(e.inputIds[t]!);
  });
  return words.map((ids) => tokenizer.decode(ids).trim());
}

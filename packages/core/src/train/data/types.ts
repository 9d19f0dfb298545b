/**
 * The types shared by the dataset pipeline: parse text into rows, read each row in its format, tokenize, clean,
 * split and batch. Token sequences are plain `number[]`; the trainer turns batches into tensors.
 */
import { FormatError } from "../../errors.js";

/**
 * How the rows of a dataset are laid out (the fields that each format reads):
 * - `completion`: `{"text"}`, loss on every token;
 * - `instruction`: `{"prompt","completion"}` or Alpaca's `{"instruction","input","output"}`, loss on the completion;
 * - `chat`: `{"messages":[{"role","content"}]}`, loss on assistant turns;
 * - `classification`: `{"text","label"}`, loss on the label;
 * - `tokens`: `{"input_ids", "labels"?}`, already tokenized.
 */
export const DATASET_FORMATS = [
  "completion",
  "instruction",
  "chat",
  "classification",
  "tokens",
] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

/** The file layouts that {@link parseRows} reads. */
export type FileType = "jsonl" | "csv" | "text";

/** A dataset file's contents: its text, or its bytes (UTF-8, as read through webtune's io layer). */
export type DatasetInput = string | Uint8Array | ArrayBuffer;

/** What to do with a row that cannot be read: throw a {@link RowFormatError}, or drop it and count it. */
export type OnError = "throw" | "skip";

/**
 * How messages name the options a user can change, so that advice fits where the user stands: the API's option
 * names by default, a command line's flags when it passes its own (e.g. `{ skip: "pass --skip-bad-rows" }`).
 */
export interface OptionNames {
  /** How to drop malformed rows instead of throwing, as words to the user. Default `pass onError: "skip"`. */
  skip: string;
  /** The longest example, in tokens. Default `maxLength`. */
  maxLength: string;
  /** What cuts long examples instead of dropping them; `null` when there is nothing to set. Default `truncate: true`. */
  truncate: string | null;
  /** What names the dataset format; `null` when the user cannot name it. Default `format`. */
  format: string | null;
}

/** The API's own names, which messages use unless told otherwise. */
export const API_OPTION_NAMES: OptionNames = {
  skip: 'pass onError: "skip"',
  maxLength: "maxLength",
  truncate: "truncate: true",
  format: "format",
};

/**
 * The label value of a token that carries no loss (Hugging Face's `ignore_index`); the same value as models'
 * `IGNORE_INDEX`, which the package exports (kept here so that data code does not load tfjs).
 */
export const IGNORE_INDEX = -100;

/** One tokenized training example. */
export interface Example {
  /** Token ids, BOS/EOS included where the tokenizer or the format adds them. */
  inputIds: number[];
  /**
   * One per id: the id itself where the loss applies, {@link IGNORE_INDEX} elsewhere. As in Hugging Face, the model
   * shifts: `labels[t]` is predicted from the tokens before t.
   */
  labels: number[];
  /** The class, for classification. */
  label?: string;
  /** Classification: the row's text alone (what a classification head reads). */
  text?: string;
  /** Token classification: each word's tag (IOB2). */
  tags?: string[];
  /** Token classification: the word of each token (HF's `word_ids()`), null for special tokens. */
  wordIds?: (number | null)[];
  /** The rendered prompt text, for instruction and classification (what generation or evaluation starts from). */
  prompt?: string;
  /** The text that the loss is on, for instruction and classification. */
  completion?: string;
  /** The line of the source file where the row starts (1-based), for messages. */
  line: number;
  /**
   * A 64-bit digest (16 hex digits) of the record as cleaning compares it (the fields its format reads): rows with
   * equal records have equal keys. Deduplication drops such rows within a file; {@link findOverlap} finds them
   * across files or splits. Set by buildDataset.
   */
  key?: string;
  /** An augmented row: how it was made from the training row at `line` (see job/augment.ts). */
  origin?: AugmentOrigin;
}

/** How an augmented row was made, from which training row. */
export interface AugmentOrigin {
  /** "eda": a word operation on the text; "paraphrase": sampled from the base model. */
  kind: "eda" | "paraphrase";
  /** The source row's line in its file. */
  line: number;
  /** Its number among the source row's variants of this kind. */
  variant: number;
  /** A paraphrase's mean log-likelihood per token under the base model, and its gain from the source text. */
  logProb?: number;
  gain?: number;
}

/** What augmentation added to a training split, and what it threw away. */
export interface AugmentReport {
  /** The training rows augmented. */
  sourceRows: number;
  /** Text-level variants made (before cleaning). */
  eda: number;
  /** Paraphrases sampled, kept by the filter, and rejected by reason. */
  paraphrases: {
    sampled: number;
    kept: number;
    rejected: Partial<
      Record<
        "empty" | "same" | "repeat" | "length" | "unlikely" | "unrelated",
        number
      >
    >;
  };
  /** New rows added to the training split. */
  added: number;
  /** Made rows that cleaning dropped: a duplicate repeats another new row or any training, validation or test row. */
  dropped: Record<DropReason, number>;
}

/** Why a row was dropped. */
export type DropReason = "empty" | "duplicate" | "tooLong" | "malformed";

/** A dropped row: where it was and why. */
export interface DroppedRow {
  line: number;
  reason: DropReason;
  /** What was wrong, e.g. `field "label" is missing`. */
  message: string;
}

/** What cleaning did: every row seen is either kept or counted under one reason. */
export interface CleaningReport {
  /** Rows seen, malformed ones included: `kept + sum(dropped)`. */
  total: number;
  kept: number;
  dropped: Record<DropReason, number>;
  /** Kept rows that were cut to `maxLength` tokens (with `truncate: true`). */
  truncated: number;
  /** The dropped rows (the first 1000 dropped), in file order. */
  rows: DroppedRow[];
  /** Rows added to the training split by augmentation (`job.augment`), counted apart from the file's. */
  augmented?: AugmentReport;
}

/** A row that does not follow its file type or format, with where it is. Thrown with `onError: "throw"`. */
export class RowFormatError extends FormatError {
  override name = "RowFormatError";
  /** The dataset's name, as given in `source`. */
  readonly source: string;
  /** The 1-based line where the row starts. */
  readonly line: number;
  /** The field at fault, when there is one. */
  readonly field: string | undefined;

  constructor(
    message: string,
    details: { source: string; line: number; field?: string; cause?: unknown },
  ) {
    super(message, { cause: details.cause });
    this.source = details.source;
    this.line = details.line;
    this.field = details.field;
  }
}

/** A problem with one row, before it is thrown or counted. */
export interface RowProblem {
  /** What is wrong, without the source and line (they are added where it is reported). */
  message: string;
  field?: string;
}

/** Builds the error for a row problem: source, line and field, and what to do. */
export function rowError(
  source: string,
  line: number,
  problem: RowProblem,
  cause?: unknown,
  skip = API_OPTION_NAMES.skip,
): RowFormatError {
  return new RowFormatError(
    `${source}, line ${line}: ${problem.message.replace(/\.\s*$/, "")}. Fix the row, or ${skip} to drop such rows ` +
      `(they are counted in the report as malformed).`,
    { source, line, field: problem.field, cause },
  );
}

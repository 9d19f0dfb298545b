/**
 * buildDataset: a dataset file to clean, tokenized training examples, in one call (parse, detect the format, read
 * each row, clean, tokenize).
 */
import { ConfigError, FormatError } from "../../errors.js";
import { Cleaner } from "./clean.js";
import { detectFormat, isEmptyRecord, readRecord } from "./formats.js";
import { parseRows, type ParsedRows } from "./parse.js";
import {
  completionText,
  renderRecord,
  type DatasetTokenizer,
  type RenderOptions,
} from "./render.js";
import {
  API_OPTION_NAMES,
  RowFormatError,
  type CleaningReport,
  type DatasetFormat,
  type DatasetInput,
  type Example,
  type FileType,
  type OnError,
  type OptionNames,
} from "./types.js";

/** Plain text cut into blocks rather than read line by line. */
export interface TextBlocks {
  /** Block length, in `unit`s. */
  size: number;
  /**
   * `"tokens"`: the whole file is tokenized (with EOS at the end) and cut every `size` tokens; `"chars"`: the text
   * is cut every `size` characters (code points) and each block tokenized, with EOS after the last.
   */
  unit: "tokens" | "chars";
}

export interface BuildOptions extends RenderOptions {
  /** The dataset's name (file name or URL), named in messages; its extension picks the file type. */
  source: string;
  /** Default: from `source`'s extension, else from the first line (see parseRows). */
  fileType?: FileType;
  /** CSV delimiter. Default `,` (tab for `.tsv`). */
  delimiter?: string;
  /** Default: detected from the first row that fits a format (see detectFormat). */
  format?: DatasetFormat;
  /** Longest example, in tokens. Default: no limit. */
  maxLength?: number;
  /** Cut examples longer than `maxLength` to it (keeping the start) instead of dropping them. Default false. */
  truncate?: boolean;
  /** Drop rows whose record repeats an earlier one exactly. Default true. */
  dedupe?: boolean;
  /** A malformed row throws a RowFormatError (`"throw"`, the default) or is dropped and counted (`"skip"`). */
  onError?: OnError;
  /** Text files only: cut into blocks (completion format) instead of one example per line. */
  textBlocks?: TextBlocks;
  /**
   * The model's vocabulary size (its config's `vocab_size`): a token id at or above it, given in the tokens format
   * or made by a tokenizer that does not match the model, makes its row malformed, named by line, instead of
   * failing at the first training step. Default: not checked.
   */
  vocabSize?: number;
  /** How messages name the options a user can change, e.g. a command line's flags. Default: the API's names. */
  optionNames?: Partial<OptionNames>;
}

/** A tokenized, cleaned dataset. */
export interface Dataset {
  examples: Example[];
  format: DatasetFormat;
  fileType: FileType;
  /** Classification only: the labels of the kept examples, sorted by code unit. */
  labels?: string[];
  report: CleaningReport;
}

/**
 * Reads a dataset file into tokenized examples, with a report of the rows dropped and why. Throws a
 * RowFormatError (a FormatError) naming the line of a malformed row unless `onError` is `"skip"`, and an
 * EmptyDatasetError (a FormatError, with the report) when no example is left.
 *
 * @example
 * ```ts
 * const text = await (await fetchFile(...)).text(); // read through webtune's io layer
 * const { examples, report } = buildDataset(text, tokenizer, { source: 'alpaca.jsonl', maxLength: 512, onError: 'skip' });
 * console.log(report.dropped); // { empty: 0, duplicate: 3, tooLong: 12, malformed: 1 }
 * ```
 */
export function buildDataset(
  input: DatasetInput,
  tokenizer: DatasetTokenizer,
  options: BuildOptions,
): Dataset {
  const names = { ...API_OPTION_NAMES, ...options.optionNames };
  checkOptions(options, names);
  const onError = options.onError ?? "throw";
  const parsed = parseRows(input, {
    source: options.source,
    fileType: options.fileType,
    delimiter: options.delimiter,
    onError,
    textRows: options.textBlocks ? "document" : "line",
    skipOption: names.skip,
  });
  const cleaner = new Cleaner({
    source: options.source,
    onError,
    maxLength: options.maxLength,
    truncate: options.truncate ?? false,
    dedupe: options.dedupe ?? true,
    vocabSize: options.vocabSize,
    names,
  });
  parsed.problems.forEach((p) => cleaner.skipped(p));
  let format: DatasetFormat;
  if (options.textBlocks !== undefined) {
    format = "completion";
    addBlocks(parsed, tokenizer, options.textBlocks, cleaner, options.source);
  } else {
    format = options.format ?? formatOf(parsed, options.source, names.format);
    addRows(parsed, format, tokenizer, options, cleaner);
  }
  const report = cleaner.report();
  const examples = cleaner.examples;
  if (examples.length === 0)
    throw noExamples(options.source, report, names, options.truncate ?? false);
  const labels =
    format === "classification"
      ? [...new Set(examples.map((e) => e.label ?? ""))].sort()
      : undefined;
  return {
    examples,
    format,
    fileType: parsed.fileType,
    report,
    ...(labels ? { labels } : {}),
  };
}

function addRows(
  parsed: ParsedRows,
  format: DatasetFormat,
  tokenizer: DatasetTokenizer,
  options: RenderOptions & { vocabSize?: number },
  cleaner: Cleaner,
): void {
  parsed.rows.forEach((row, i) => {
    const line = parsed.lineNumbers[i]!;
    const record = readRecord(row, format, options.vocabSize);
    if (!("format" in record)) return cleaner.malformed(line, record);
    const render = () => renderRecord(record, tokenizer, options);
    cleaner.offer(line, JSON.stringify(record), isEmptyRecord(record), render);
  });
}

/** The format of the first row that fits one; the first row's error when none does. */
function formatOf(
  parsed: ParsedRows,
  source: string,
  formatOption: string | null,
): DatasetFormat {
  let firstError: unknown;
  for (const row of parsed.rows) {
    try {
      return detectFormat(row, formatOption);
    } catch (e) {
      firstError ??= e;
    }
  }
  if (firstError instanceof FormatError) {
    const line = parsed.lineNumbers[0]!;
    throw new RowFormatError(
      `${source}, line ${line} (and every other row): ${firstError.message}`,
      {
        source,
        line,
        cause: firstError,
      },
    );
  }
  throw new FormatError(
    `${source} has no rows to read${parsed.malformed > 0 ? ` (${parsed.malformed} malformed)` : ""}; expected ` +
      `JSONL, CSV with a header row, or text. Check that the right file was passed and that it is not empty.`,
  );
}

function addBlocks(
  parsed: ParsedRows,
  tokenizer: DatasetTokenizer,
  blocks: TextBlocks,
  cleaner: Cleaner,
  source: string,
): void {
  if (parsed.fileType !== "text") {
    throw new ConfigError(
      `textBlocks applies to plain text files, but ${source} was read as ${parsed.fileType}. Leave textBlocks ` +
        `out, or pass fileType: "text".`,
    );
  }
  const text = parsed.rows[0]?.["text"];
  if (typeof text !== "string") return;
  if (blocks.unit === "chars") {
    const chars = Array.from(text);
    let line = 1;
    for (let start = 0; start < chars.length; start += blocks.size) {
      const block = chars.slice(start, start + blocks.size).join("");
      const last = start + blocks.size >= chars.length;
      cleaner.offer(line, block, block.trim() === "", () =>
        completionText(tokenizer, block, last),
      );
      line += block.split(/\r\n|\n|\r/).length - 1;
    }
    return;
  }
  // Token positions do not map back to lines; every block names the document's first line.
  const ids = completionText(tokenizer, text, true).inputIds;
  for (let start = 0; start < ids.length; start += blocks.size) {
    const block = ids.slice(start, start + blocks.size);
    cleaner.offer(1, block.join(","), false, () => ({
      inputIds: block,
      labels: [...block],
    }));
  }
}

function checkOptions(options: BuildOptions, names: OptionNames): void {
  const positive = (value: number | undefined, name: string) => {
    if (value === undefined || (Number.isInteger(value) && value > 0)) return;
    throw new ConfigError(
      `${name} is ${value}; expected a positive integer (a number of tokens or characters).`,
    );
  };
  positive(options.maxLength, names.maxLength);
  positive(options.textBlocks?.size, "textBlocks.size");
  if (
    options.vocabSize !== undefined &&
    !(Number.isInteger(options.vocabSize) && options.vocabSize > 0)
  )
    throw new ConfigError(
      `vocabSize is ${options.vocabSize}; expected the model's vocabulary size, a positive integer.`,
    );
  const format = options.format ?? "completion";
  if (options.textBlocks !== undefined && format !== "completion") {
    throw new ConfigError(
      `textBlocks makes completion examples, but format is "${format}". Leave one of them out.`,
    );
  }
  if (options.truncate && options.maxLength === undefined) {
    throw new ConfigError(
      "truncate is true but maxLength is not set; set maxLength to the length to cut to.",
    );
  }
}

/** No example is left after cleaning; `report` says why each row was dropped. */
export class EmptyDatasetError extends FormatError {
  override name = "EmptyDatasetError";
  constructor(
    message: string,
    readonly report: CleaningReport,
  ) {
    super(message);
  }
}

/** The error for a file that left no example, with the first dropped row and what to change for each reason. */
function noExamples(
  source: string,
  report: CleaningReport,
  names: OptionNames,
  truncate: boolean,
): EmptyDatasetError {
  const counts = Object.entries(report.dropped)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${n} ${reason}`)
    .join(", ");
  const first = report.rows[0];
  const advice: string[] = [];
  if (report.dropped.tooLong > 0)
    advice.push(
      truncate || names.truncate === null
        ? `raise ${names.maxLength} (the prompts alone fill it)`
        : `raise ${names.maxLength} or pass ${names.truncate}`,
    );
  if (report.dropped.malformed > 0) advice.push("fix the malformed rows");
  if (report.dropped.empty > 0)
    advice.push("give the empty rows text that carries loss");
  // Duplicates alone never empty a file: the first of each is kept.
  return new EmptyDatasetError(
    `${source} gave no examples: all ${report.total} rows were dropped (${counts || "none read"}).` +
      (first
        ? ` First: line ${first.line}, ${first.reason}: ${first.message}.`
        : "") +
      (advice.length > 0 ? ` To keep rows, ${advice.join("; ")}.` : ""),
    report,
  );
}

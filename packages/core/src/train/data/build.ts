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
  RowFormatError,
  type CleaningReport,
  type DatasetFormat,
  type DatasetInput,
  type Example,
  type FileType,
  type OnError,
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
  checkOptions(options);
  const onError = options.onError ?? "throw";
  const parsed = parseRows(input, {
    source: options.source,
    fileType: options.fileType,
    delimiter: options.delimiter,
    onError,
    textRows: options.textBlocks ? "document" : "line",
  });
  const cleaner = new Cleaner({
    source: options.source,
    onError,
    maxLength: options.maxLength,
    truncate: options.truncate ?? false,
    dedupe: options.dedupe ?? true,
  });
  parsed.problems.forEach((p) => cleaner.skipped(p));
  let format: DatasetFormat;
  if (options.textBlocks !== undefined) {
    format = "completion";
    addBlocks(parsed, tokenizer, options.textBlocks, cleaner, options.source);
  } else {
    format = options.format ?? formatOf(parsed, options.source);
    addRows(parsed, format, tokenizer, options, cleaner);
  }
  const report = cleaner.report();
  const examples = cleaner.examples;
  if (examples.length === 0) throw noExamples(options.source, report);
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
  options: RenderOptions,
  cleaner: Cleaner,
): void {
  parsed.rows.forEach((row, i) => {
    const line = parsed.lineNumbers[i]!;
    const record = readRecord(row, format);
    if (!("format" in record)) return cleaner.malformed(line, record);
    const render = () => renderRecord(record, tokenizer, options);
    cleaner.offer(line, JSON.stringify(record), isEmptyRecord(record), render);
  });
}

/** The format of the first row that fits one; the first row's error when none does. */
function formatOf(parsed: ParsedRows, source: string): DatasetFormat {
  let firstError: unknown;
  for (const row of parsed.rows) {
    try {
      return detectFormat(row);
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

function checkOptions(options: BuildOptions): void {
  const positive = (value: number | undefined, name: string) => {
    if (value === undefined || (Number.isInteger(value) && value > 0)) return;
    throw new ConfigError(
      `${name} is ${value}; expected a positive integer (a number of tokens or characters).`,
    );
  };
  positive(options.maxLength, "maxLength");
  positive(options.textBlocks?.size, "textBlocks.size");
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

function noExamples(source: string, report: CleaningReport): EmptyDatasetError {
  const counts = Object.entries(report.dropped)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${n} ${reason}`)
    .join(", ");
  return new EmptyDatasetError(
    `${source} gave no training examples: all ${report.total} rows were dropped (${counts || "none read"}). ` +
      `error.report.rows lists each with its line; raise maxLength, pass truncate: true or dedupe: false as fits.`,
    report,
  );
}

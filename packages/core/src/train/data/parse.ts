/**
 * From a file's contents to rows: JSONL (one object per line), CSV with a header row, or plain text. Every row keeps
 * the line it starts on, for messages. A row that cannot be read throws a RowFormatError or, with
 * `onError: "skip"`, is counted and listed.
 */
import { ConfigError } from "../../errors.js";
import { csvRecords } from "./csv.js";
import {
  decodeInput,
  inferLayout,
  splitLines,
  type DecodedText,
} from "./text_input.js";
import {
  API_OPTION_NAMES,
  rowError,
  type DatasetInput,
  type DroppedRow,
  type FileType,
  type OnError,
  type RowProblem,
} from "./types.js";

/** A row as read from the file: field name to value (CSV values are strings). */
export type Row = Record<string, unknown>;

export interface ParseOptions {
  /** The dataset's name (a file name or URL), named in messages; its extension picks the file type. */
  source: string;
  /** Default: from the extension of `source`, else JSONL when the first line starts with `{`, else text. */
  fileType?: FileType;
  /** CSV field delimiter, one character. Default `,` (a tab for `.tsv` sources). */
  delimiter?: string;
  /** Default "throw". */
  onError?: OnError;
  /** Text files: one row per non-blank line (`"line"`, the default), or the whole file as one row. */
  textRows?: "line" | "document";
  /** How messages tell the user to skip bad rows (see OptionNames.skip). Default `pass onError: "skip"`. */
  skipOption?: string;
}

/** The rows of a file. `rows[i]` starts on line `lineNumbers[i]`. */
export interface ParsedRows {
  rows: Row[];
  lineNumbers: number[];
  fileType: FileType;
  /** Rows that could not be read and were skipped (`onError: "skip"`). */
  malformed: number;
  /** Each skipped row, with its line and what was wrong. */
  problems: DroppedRow[];
}

/**
 * Reads the rows of a dataset file. Text files give `{text}` rows. Blank lines are not rows.
 *
 * @example
 * ```ts
 * const { rows, lineNumbers } = parseRows('{"text":"a"}\n\n{"text":"b"}\n', { source: 'train.jsonl' });
 * // rows: [{ text: 'a' }, { text: 'b' }], lineNumbers: [1, 3]
 * ```
 */
export function parseRows(
  input: DatasetInput,
  options: ParseOptions,
): ParsedRows {
  const onError = options.onError ?? "throw";
  const skip = options.skipOption ?? API_OPTION_NAMES.skip;
  const decoded = decodeInput(input, options.source, onError, skip);
  const layout = inferLayout(options.source, decoded.text);
  const fileType = options.fileType ?? layout.fileType;
  const out = new RowCollector(options.source, onError, fileType, skip);
  if (fileType === "jsonl") readJsonl(decoded, out);
  else if (fileType === "csv") {
    const delimiter = options.delimiter ?? layout.delimiter;
    readCsv(decoded, checkDelimiter(delimiter), out);
  } else readText(decoded, options.textRows ?? "line", out);
  return out.result();
}

class RowCollector {
  readonly rows: Row[] = [];
  readonly lineNumbers: number[] = [];
  readonly problems: DroppedRow[] = [];

  constructor(
    readonly source: string,
    private readonly onError: OnError,
    private readonly fileType: FileType,
    private readonly skip: string,
  ) {}

  add(row: Row, line: number): void {
    this.rows.push(row);
    this.lineNumbers.push(line);
  }

  fail(line: number, problem: RowProblem, cause?: unknown): void {
    if (this.onError === "throw") {
      throw rowError(this.source, line, problem, cause, this.skip);
    }
    this.problems.push({ line, reason: "malformed", message: problem.message });
  }

  result(): ParsedRows {
    const { rows, lineNumbers, problems, fileType } = this;
    return {
      rows,
      lineNumbers,
      fileType,
      malformed: problems.length,
      problems,
    };
  }
}

const NOT_UTF8 = "the bytes of this line are not valid UTF-8";

function readJsonl({ text, unreadableLines }: DecodedText, out: RowCollector) {
  splitLines(text).forEach((lineText, index) => {
    const line = index + 1;
    if (lineText.trim() === "") return;
    if (unreadableLines.has(line)) return out.fail(line, { message: NOT_UTF8 });
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (e) {
      const message = `not valid JSON (${e instanceof Error ? e.message : String(e)}); JSONL needs one complete object per line`;
      return out.fail(line, { message }, e);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      const found = Array.isArray(value) ? "an array" : JSON.stringify(value);
      const hint = Array.isArray(value)
        ? " (a JSON array file must be rewritten with one object per line)"
        : "";
      return out.fail(line, {
        message: `holds ${found}; expected a JSON object${hint}`,
      });
    }
    out.add(value as Row, line);
  });
}

function readCsv(
  { text, unreadableLines }: DecodedText,
  delimiter: string,
  out: RowCollector,
) {
  let header: string[] | undefined;
  for (const record of csvRecords(text, delimiter)) {
    const { line, lastLine } = record;
    if (!record.ok) {
      if (header === undefined) throw rowError(out.source, line, record);
      out.fail(line, { message: record.message });
    } else if (header === undefined) {
      header = checkHeader(record.fields, out.source, line);
    } else if (spans(unreadableLines, line, lastLine)) {
      out.fail(line, { message: NOT_UTF8 });
    } else if (record.fields.length !== header.length) {
      out.fail(line, {
        message: `has ${record.fields.length} fields; the header has ${header.length} (${header.join(", ")}). Quote fields that hold the delimiter`,
      });
    } else {
      const names = header;
      out.add(
        Object.fromEntries(record.fields.map((f, i) => [names[i], f])),
        line,
      );
    }
  }
}

function checkHeader(fields: string[], source: string, line: number) {
  const names = fields.map((f) => f.trim());
  const empty = names.findIndex((n) => n === "");
  const repeated = names.find((n, i) => names.indexOf(n) !== i);
  if (empty >= 0 || repeated !== undefined) {
    const what =
      empty >= 0
        ? `column ${empty + 1} has no name`
        : `"${repeated}" is repeated`;
    throw rowError(source, line, {
      message: `the CSV header row (${fields.join(", ")}) is not usable: ${what}. The first row must name each column once`,
    });
  }
  return names;
}

function spans(lines: ReadonlySet<number>, first: number, last: number) {
  for (let l = first; l <= last; l++) if (lines.has(l)) return true;
  return false;
}

function readText(
  { text, unreadableLines }: DecodedText,
  mode: "line" | "document",
  out: RowCollector,
) {
  if (mode === "document") {
    if (text.trim() !== "") out.add({ text }, 1);
    return;
  }
  splitLines(text).forEach((lineText, index) => {
    const line = index + 1;
    if (lineText.trim() === "") return;
    if (unreadableLines.has(line)) return out.fail(line, { message: NOT_UTF8 });
    out.add({ text: lineText }, line);
  });
}

function checkDelimiter(delimiter: string): string {
  if (delimiter.length === 1 && !/["\r\n]/.test(delimiter)) return delimiter;
  throw new ConfigError(
    `CSV delimiter ${JSON.stringify(delimiter)} is not usable; expected one character other than a quote or a ` +
      `line break, such as "," ";" or "\\t".`,
  );
}

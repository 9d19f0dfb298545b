/**
 * From a file's contents to text: UTF-8 decoding that finds the lines which are not UTF-8, and the file type from
 * the source name or, failing that, from the first line.
 */
import {
  rowError,
  type DatasetInput,
  type FileType,
  type OnError,
} from "./types.js";

/** Decoded text, and the 1-based numbers of lines whose bytes were not valid UTF-8 (decoded with U+FFFD). */
export interface DecodedText {
  text: string;
  unreadableLines: ReadonlySet<number>;
}

/**
 * Decodes a dataset file. A leading byte-order mark is dropped. Invalid UTF-8 throws a RowFormatError naming its
 * line, or with `onError: "skip"` marks that line unreadable so that its row is counted as malformed.
 */
export function decodeInput(
  input: DatasetInput,
  source: string,
  onError: OnError,
  skip?: string,
): DecodedText {
  if (typeof input === "string") {
    return { text: stripBom(input), unreadableLines: new Set() };
  }
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return { text: stripBom(text), unreadableLines: new Set() };
  } catch {
    const unreadableLines = invalidUtf8Lines(bytes);
    const first = [...unreadableLines][0] ?? 1;
    if (onError === "throw") {
      throw rowError(
        source,
        first,
        {
          message:
            "the bytes are not valid UTF-8 (the file may be Latin-1 or UTF-16); re-save it as UTF-8",
        },
        undefined,
        skip,
      );
    }
    const text = new TextDecoder("utf-8").decode(bytes);
    return { text: stripBom(text), unreadableLines };
  }
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** The lines (split at `\n` bytes, 1-based) that do not decode as UTF-8 on their own. */
function invalidUtf8Lines(bytes: Uint8Array): Set<number> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const bad = new Set<number>();
  let start = 0;
  let line = 1;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 0x0a) continue;
    try {
      decoder.decode(bytes.subarray(start, i));
    } catch {
      bad.add(line);
    }
    start = i + 1;
    line++;
  }
  return bad;
}

/** A file type, and the CSV delimiter that goes with it. */
export interface FileLayout {
  fileType: FileType;
  delimiter: string;
}

/**
 * The file type named by the source's extension (`.jsonl`, `.ndjson`, `.json`: jsonl; `.csv`: csv; `.tsv`: csv
 * with tabs; `.txt`, `.text`, `.md`: text). Without one, a file whose first non-blank line starts with `{` is
 * JSONL, and any other is text: CSV is never guessed from content, so name it or pass `fileType: "csv"`.
 */
export function inferLayout(source: string, text: string): FileLayout {
  const name = source.replace(/[?#].*$/, "").toLowerCase();
  const extension = /\.([a-z]+)$/.exec(name)?.[1];
  switch (extension) {
    case "jsonl":
    case "ndjson":
    case "json":
      return { fileType: "jsonl", delimiter: "," };
    case "csv":
      return { fileType: "csv", delimiter: "," };
    case "tsv":
      return { fileType: "csv", delimiter: "\t" };
    case "txt":
    case "text":
    case "md":
      return { fileType: "text", delimiter: "," };
  }
  const firstLine = /^\s*(\S)/.exec(text)?.[1];
  return { fileType: firstLine === "{" ? "jsonl" : "text", delimiter: "," };
}

/** Splits text into lines at `\n`, `\r\n` or `\r`. */
export function splitLines(text: string): string[] {
  return text.split(/\r\n|\n|\r/);
}

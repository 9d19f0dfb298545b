/**
 * Parsing and validating a safetensors header. Everything the reader later trusts is checked here, once,
 * so a corrupt file fails at open with a message that names the file and the problem.
 *
 * Layout: u64 little-endian header length N | N bytes of JSON | data. Offsets are relative to the data.
 */
import { FormatError } from "../errors.js";
import {
  DTYPE_BITS,
  isSafetensorsDtype,
  type SafetensorsDtype,
} from "./dtypes.js";

/** The same cap as the reference implementation: a larger header is a corrupt length, not a model. */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor entry of a safetensors header. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** A fresh copy for each caller: changing it changes nothing in the reader. */
  readonly shape: number[];
  /** `[begin, end)` in bytes, relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
  /** The file (or shard) that holds it, as its byte source names it. */
  readonly file: string;
}

export interface ParsedHeader {
  /** Byte position of the data section in the file: 8 + header length. */
  readonly dataStart: number;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Reads the header length from the first 8 bytes and checks it against the file size. */
export function parseHeaderLength(
  file: string,
  prefix: Uint8Array,
  fileSize: number,
): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new FormatError(
      `${file} is truncated: a safetensors file starts with an 8-byte header length, but it has only ${fileSize} bytes. ` +
        `Download it again.`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const length = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (length > fileSize - 8) {
    throw new FormatError(
      `${file} is truncated or not a safetensors file: its header length (${length} bytes) runs past the end of the file ` +
        `(${fileSize} bytes in all).`,
    );
  }
  if (length > MAX_HEADER_BYTES) {
    throw new FormatError(
      `${file} is not a valid safetensors file: its header length is ${length} bytes, more than the ${MAX_HEADER_BYTES} allowed.`,
    );
  }
  return length;
}

/** Parses and validates the JSON header against the size of the data section that follows it. */
export function parseHeader(
  file: string,
  headerBytes: Uint8Array,
  dataLength: number,
): ParsedHeader {
  const json = decodeHeaderJson(file, headerBytes);
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(file, entry);
    else tensors.set(name, parseEntry(file, name, entry));
  }
  checkOffsets(file, [...tensors.values()], dataLength);
  return { dataStart: 8 + headerBytes.length, tensors, metadata };
}

function decodeHeaderJson(
  file: string,
  headerBytes: Uint8Array,
): Record<string, unknown> {
  let parsed: unknown;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new FormatError(
      `${file} has an invalid safetensors header: it is not valid UTF-8 JSON (${String(cause)}). ` +
        `The file is corrupt or not a safetensors file.`,
      { cause },
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new FormatError(
      `${file} has an invalid safetensors header: expected a JSON object of tensors, found ${describe(parsed)}.`,
    );
  }
  checkDuplicateKeys(file, text);
  return parsed as Record<string, unknown>;
}

/**
 * Refuses a key that appears twice in one object of the header: JSON.parse keeps the last, so a second tensor of
 * the same name (or a second "dtype" in one entry) would pass unseen. One linear scan of text that JSON.parse has
 * already accepted (so it is well formed), with an explicit stack: no recursion, whatever the nesting.
 */
function checkDuplicateKeys(file: string, text: string): void {
  // One level per open object or array: the keys seen (objects only) and the key whose value is being read.
  const stack: { keys: Set<string> | undefined; key: string | undefined }[] =
    [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      const top = stack.at(-1);
      if (expectKey && top?.keys) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (top.keys.has(key)) throw duplicateKey(file, stack, key);
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = end;
    } else if (c === "{" || c === "[") {
      stack.push({ keys: c === "{" ? new Set() : undefined, key: undefined });
      expectKey = c === "{";
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = stack.at(-1)?.keys !== undefined;
    }
  }
}

/** The index of the quote that closes the JSON string opening at `start`. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
  return i;
}

function duplicateKey(
  file: string,
  stack: { key: string | undefined }[],
  key: string,
): FormatError {
  if (stack.length === 1)
    return new FormatError(
      `${file} has an invalid safetensors header: ${key === "__metadata__" ? "__metadata__" : `tensor ${shortJson(key)}`} is listed twice. Each name ` +
        `must appear once (JSON readers would keep only one of them); the file is corrupt or was edited by hand.`,
    );
  const path = stack
    .slice(0, -1)
    .map((level) => (level.key === undefined ? "[...]" : shortJson(level.key)))
    .join(" > ");
  return new FormatError(
    `${file} has an invalid safetensors header: the entry of ${path} has the field ${shortJson(key)} twice. ` +
      `The file is corrupt or was edited by hand.`,
  );
}

function parseMetadata(file: string, entry: unknown): Record<string, string> {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new FormatError(
      `${file} has an invalid __metadata__: expected an object of strings, found ${describe(entry)}.`,
    );
  }
  for (const [key, value] of Object.entries(entry)) {
    if (typeof value !== "string") {
      throw new FormatError(
        `${file} has an invalid __metadata__: "${key}" is ${describe(value)}, but metadata values must be strings.`,
      );
    }
  }
  return { ...(entry as Record<string, string>) };
}

function parseEntry(file: string, name: string, entry: unknown): TensorInfo {
  const bad = (problem: string) =>
    new FormatError(
      `${file} has an invalid header entry for tensor "${name}": ${problem}.`,
    );
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw bad(
      `expected {"dtype", "shape", "data_offsets"}, found ${describe(entry)}`,
    );
  }
  const {
    dtype,
    shape,
    data_offsets: offsets,
  } = entry as Record<string, unknown>;
  if (!isSafetensorsDtype(dtype)) {
    throw bad(
      `unknown dtype ${shortJson(dtype)}; the safetensors dtypes are ${Object.keys(DTYPE_BITS).join(", ")}`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw bad(
      `shape must be a list of non-negative integers, found ${shortJson(shape)}`,
    );
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every(isCount)
  ) {
    throw bad(
      `data_offsets must be [begin, end] with non-negative integers, found ${shortJson(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) {
    throw bad(`data_offsets [${begin}, ${end}] are reversed (end < begin)`);
  }
  const bits = byteBits(shape as number[], dtype);
  if (bits !== (end - begin) * 8) {
    throw bad(
      `shape [${shape.join(", ")}] of ${dtype} needs ${bits / 8} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return {
    name,
    dtype,
    shape: [...(shape as number[])],
    dataOffsets: [begin, end],
    file,
  };
}

/** Total size of a tensor in bits (sub-byte dtypes such as F4 exist). */
export function byteBits(
  shape: readonly number[],
  dtype: SafetensorsDtype,
): number {
  return shape.reduce((n, d) => n * d, 1) * DTYPE_BITS[dtype];
}

/** Rejects overlapping tensors and ranges past the data section; gaps are tolerated. */
function checkOffsets(
  file: string,
  tensors: TensorInfo[],
  dataLength: number,
): void {
  const sorted = [...tensors].sort(
    (a, b) =>
      a.dataOffsets[0] - b.dataOffsets[0] ||
      a.dataOffsets[1] - b.dataOffsets[1],
  );
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const next = sorted[i]!;
    if (next.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new FormatError(
        `${file} has overlapping tensors: "${prev.name}" [${prev.dataOffsets.join(", ")}] and ` +
          `"${next.name}" [${next.dataOffsets.join(", ")}] share bytes. The file is corrupt.`,
      );
    }
  }
  const last = sorted.reduce<TensorInfo | undefined>(
    (max, t) => (max && max.dataOffsets[1] >= t.dataOffsets[1] ? max : t),
    undefined,
  );
  if (last && last.dataOffsets[1] > dataLength) {
    throw new FormatError(
      `${file} is truncated or its offsets are out of range: tensor "${last.name}" ends at byte ${last.dataOffsets[1]} ` +
        `of the data section, which has only ${dataLength} bytes. Download the file again.`,
    );
  }
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : shortJson(value);
}

/** A value from the header for a message: its JSON, cut short (it may be megabytes, or nested too deep to print). */
function shortJson(value: unknown): string {
  let text: string;
  try {
    text = String(JSON.stringify(value));
  } catch {
    text = Array.isArray(value)
      ? "a deeply nested array"
      : "a deeply nested object";
  }
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

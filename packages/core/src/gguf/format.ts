/**
 * The GGUF container (version 3), as ggml's docs/gguf.md specifies it: a header, typed metadata, tensor
 * descriptions, then each tensor's bytes at a multiple of the alignment. Everything little-endian.
 *
 * This file knows the container only: which tensors and keys a model needs is architectures.ts's and vocab.ts's
 * business, and how values become bytes is quants.ts's.
 */
import { FormatError } from "../errors.js";
import { encodeTensor, tensorByteLength, type GgmlType } from "./quants.js";

/** "GGUF" as the first four bytes. */
const MAGIC = [0x47, 0x47, 0x55, 0x46];
const VERSION = 3;
/** The default `general.alignment`; llama.cpp's converter never writes another. */
export const GGUF_ALIGNMENT = 32;
/** GGML_MAX_NAME: llama.cpp refuses longer tensor names. */
const MAX_TENSOR_NAME = 63;

/** gguf_metadata_value_type. */
const VALUE_TYPE = {
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
} as const;

type ScalarType = "uint32" | "int32" | "float32" | "bool" | "string";

/** One metadata value with the GGUF type it is written as (gguf-py writes counts as uint32, floats as float32). */
export type GgufValue =
  | { type: "uint32" | "int32" | "float32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; of: "int32" | "float32"; value: ArrayLike<number> }
  | { type: "array"; of: "string"; value: readonly string[] };

export const u32 = (value: number): GgufValue => ({ type: "uint32", value });
export const f32 = (value: number): GgufValue => ({ type: "float32", value });
export const str = (value: string): GgufValue => ({ type: "string", value });
export const bool = (value: boolean): GgufValue => ({ type: "bool", value });

/** A tensor to write: its torch (row-major) shape and f32 values, stored as `type`. */
export interface GgufTensor {
  name: string;
  /** Row-major, as in torch and safetensors; GGUF stores it reversed (ne[0] is the fastest-varying axis). */
  shape: readonly number[];
  type: GgmlType;
  values: Float32Array;
}

/** A GGUF file as byte parts, to write one after another (a file of a few hundred MB needs no one big buffer). */
export interface GgufFile {
  parts: Uint8Array[];
  byteLength: number;
  tensorCount: number;
}

/**
 * Lays out a GGUF v3 file: header, metadata in the given order, tensor infos, then the data.
 *
 * @example
 * ```ts
 * const file = writeGguf({ "general.architecture": str("llama") }, [
 *   { name: "token_embd.weight", shape: [V, C], type: "F16", values },
 * ]);
 * ```
 */
export function writeGguf(
  metadata: Record<string, GgufValue>,
  tensors: readonly GgufTensor[],
): GgufFile {
  const head = new ByteWriter();
  head.bytes(Uint8Array.from(MAGIC));
  head.u32(VERSION);
  head.u64(tensors.length);
  head.u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    head.string(key);
    writeValue(head, key, value);
  }
  const offsets: number[] = [];
  let dataBytes = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    checkTensor(t, seen);
    head.string(t.name);
    head.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) head.u64(d);
    head.u32(GGML_TYPE_ID[t.type]);
    head.u64(dataBytes);
    offsets.push(dataBytes);
    dataBytes = alignUp(dataBytes + tensorByteLength(t.shape, t.type));
  }
  head.bytes(new Uint8Array(alignUp(head.length) - head.length));
  const parts = [head.toBytes()];
  let written = 0;
  tensors.forEach((t, i) => {
    const padding = offsets[i]! - written;
    if (padding > 0) parts.push(new Uint8Array(padding));
    const bytes = encodeTensor(t.values, t.shape, t.type);
    parts.push(bytes);
    written = offsets[i]! + bytes.length;
  });
  if (dataBytes > written) parts.push(new Uint8Array(dataBytes - written));
  return {
    parts,
    byteLength: parts.reduce((n, p) => n + p.length, 0),
    tensorCount: tensors.length,
  };
}

/** The ggml_type ids of the storage types webtune writes. */
const GGML_TYPE_ID: Record<GgmlType, number> = { F32: 0, F16: 1, Q8_0: 8 };

function checkTensor(t: GgufTensor, seen: Set<string>): void {
  if (seen.has(t.name))
    throw new FormatError(`GGUF: the tensor "${t.name}" is written twice.`);
  seen.add(t.name);
  if (new TextEncoder().encode(t.name).length > MAX_TENSOR_NAME)
    throw new FormatError(
      `GGUF: the tensor name "${t.name}" is longer than llama.cpp's ${MAX_TENSOR_NAME} bytes.`,
    );
  if (t.shape.length < 1 || t.shape.length > 4)
    throw new FormatError(
      `GGUF: "${t.name}" has ${t.shape.length} dimensions; GGUF holds 1 to 4.`,
    );
  const size = t.shape.reduce((n, d) => n * d, 1);
  if (size !== t.values.length)
    throw new FormatError(
      `GGUF: "${t.name}" has shape [${t.shape.join(", ")}] (${size} values) but ${t.values.length} values were given.`,
    );
}

function writeValue(w: ByteWriter, key: string, v: GgufValue): void {
  w.u32(VALUE_TYPE[v.type]);
  if (v.type !== "array") return writeScalar(w, key, v.type, v.value);
  w.u32(VALUE_TYPE[v.of]);
  w.u64(v.value.length);
  for (let i = 0; i < v.value.length; i++)
    writeScalar(w, key, v.of, v.value[i]!);
}

function writeScalar(
  w: ByteWriter,
  key: string,
  type: ScalarType,
  value: number | boolean | string,
): void {
  if (type === "string") return w.string(value as string);
  if (type === "bool") return w.u8(value ? 1 : 0);
  const n = value as number;
  if (type === "float32") return w.f32(n);
  const [lo, hi] =
    type === "uint32" ? [0, 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
  if (!Number.isInteger(n) || n < lo || n > hi)
    throw new FormatError(
      `GGUF: metadata "${key}" must be a ${type}, got ${n}.`,
    );
  if (type === "uint32") w.u32(n);
  else w.i32(n);
}

function alignUp(n: number): number {
  return Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
}

/** A growable little-endian byte buffer for the header (the metadata holds the whole vocabulary). */
class ByteWriter {
  private buffer = new Uint8Array(1 << 16);
  private view = new DataView(this.buffer.buffer);
  length = 0;
  private static readonly encoder = new TextEncoder();

  private reserve(n: number): number {
    if (this.length + n > this.buffer.length) {
      const bigger = new Uint8Array(
        Math.max(this.buffer.length * 2, this.length + n),
      );
      bigger.set(this.buffer.subarray(0, this.length));
      this.buffer = bigger;
      this.view = new DataView(bigger.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // Each offset is reserved before the buffer is read: reserve() may replace the buffer.
  u8(v: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, v);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, v, true);
  }
  u64(v: number): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buffer.set(b, at);
  }
  string(s: string): void {
    const b = ByteWriter.encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  toBytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

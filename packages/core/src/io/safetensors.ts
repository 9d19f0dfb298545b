/**
 * Reading and writing safetensors files, one tensor at a time through a ByteSource.
 * Knows bytes only: it returns CPU typed arrays and leaves uploading to the model layer.
 */
import { FormatError, ShapeError } from "../errors.js";
import { blobSource, bytesSource, type ByteSource } from "./byte_source.js";
import {
  bf16BitsToF32,
  DTYPE_BITS,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  READABLE_DTYPES,
  type SafetensorsDtype,
} from "./dtypes.js";
import {
  byteBits,
  parseHeader,
  parseHeaderLength,
  type TensorInfo,
} from "./safetensors_header.js";

export type { TensorInfo } from "./safetensors_header.js";

/** What `read()` returns: F32/F16/BF16 as Float32Array, I32/I64 as Int32Array, U8/BOOL as Uint8Array. */
export type TensorData = Float32Array | Int32Array | Uint8Array;

/** A tensor loaded into CPU memory. `dtype` is the stored dtype, before conversion. */
export interface CpuTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: number[];
  readonly data: TensorData;
}

/** Reads tensors by name from one safetensors file or a sharded checkpoint. */
export interface SafetensorsReader {
  /** The file, or the index of a sharded checkpoint, for messages. */
  readonly source: string;
  /** `__metadata__` of the file; for a sharded checkpoint, the index's `metadata` with values as strings. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Every tensor name, in header order. */
  readonly names: readonly string[];
  has(name: string): boolean;
  /** Dtype, shape and offsets, without reading data (a sharded reader opens the shard's header). */
  info(name: string): Promise<TensorInfo>;
  /** Reads and converts one tensor; see `TensorData`. Other dtypes are refused with a FormatError. */
  read(name: string): Promise<CpuTensor>;
  /** Reads an F16 or BF16 tensor as its raw 16-bit patterns, to keep it in half precision. */
  readUint16(name: string): Promise<Uint16Array>;
  /** Reads any tensor's raw little-endian bytes. */
  readBytes(name: string): Promise<Uint8Array>;
}

/**
 * Opens a safetensors file: reads and validates its header, and nothing else.
 *
 * @example
 * ```ts
 * const st = await openSafetensors(await nodeFileSource("model.safetensors"));
 * const wte = await st.read("wte.weight"); // { dtype: "F32", shape: [50257, 768], data: Float32Array }
 * ```
 */
export async function openSafetensors(
  input: ByteSource | ArrayBuffer | Uint8Array | Blob,
): Promise<SafetensorsFile> {
  const source = toByteSource(input);
  const prefix = await source.read(0, Math.min(8, source.size));
  const length = parseHeaderLength(source.name, prefix, source.size);
  const headerBytes = await source.read(8, 8 + length);
  const header = parseHeader(
    source.name,
    headerBytes,
    source.size - 8 - length,
  );
  return new SafetensorsFile(
    source,
    header.dataStart,
    header.tensors,
    header.metadata,
  );
}

function toByteSource(
  input: ByteSource | ArrayBuffer | Uint8Array | Blob,
): ByteSource {
  if (input instanceof ArrayBuffer || input instanceof Uint8Array)
    return bytesSource(input);
  if (typeof Blob !== "undefined" && input instanceof Blob)
    return blobSource(input);
  return input as ByteSource;
}

/** One open safetensors file. Made by `openSafetensors`. */
export class SafetensorsFile implements SafetensorsReader {
  readonly names: readonly string[];

  constructor(
    readonly byteSource: ByteSource,
    private readonly dataStart: number,
    /** Every tensor's header entry, in header order. */
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.names = [...tensors.keys()];
  }

  get source(): string {
    return this.byteSource.name;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  async info(name: string): Promise<TensorInfo> {
    const info = this.entry(name);
    return { ...info, shape: [...info.shape] };
  }

  async readBytes(name: string): Promise<Uint8Array> {
    const [begin, end] = this.entry(name).dataOffsets;
    return this.byteSource.read(this.dataStart + begin, this.dataStart + end);
  }

  async read(name: string): Promise<CpuTensor> {
    const info = this.entry(name);
    if (!READABLE_DTYPES.includes(info.dtype)) {
      throw new FormatError(
        `Tensor "${name}" in ${this.source} has dtype ${info.dtype}, which webtune cannot load; ` +
          `it reads ${READABLE_DTYPES.join(", ")}. Convert the checkpoint (e.g. to F32 or BF16 with PyTorch) and save it again.`,
      );
    }
    const data = decode(info, await this.readBytes(name));
    return { name, dtype: info.dtype, shape: [...info.shape], data };
  }

  async readUint16(name: string): Promise<Uint16Array> {
    const info = this.entry(name);
    if (info.dtype !== "F16" && info.dtype !== "BF16") {
      throw new FormatError(
        `Tensor "${name}" in ${this.source} is ${info.dtype}; readUint16 reads F16 or BF16 tensors only. Use read() instead.`,
      );
    }
    return view(await this.readBytes(name), Uint16Array);
  }

  private entry(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw missingTensor(this.source, name, this.names);
    return info;
  }
}

/**
 * Refuses a floating-point tensor that holds NaN or ±Inf, naming it, the value and its index: for files whose values
 * must all be finite (adapters, checkpoints). One pass over the decoded CPU array (F32, F16 and BF16 all decode to
 * f32, which keeps NaN and Inf), before anything is uploaded; other dtypes have no such values.
 */
export function checkFinite(tensor: CpuTensor, file: string): void {
  const data = tensor.data;
  if (!(data instanceof Float32Array)) return;
  // Exponent bits all ones: Inf or NaN.
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & 0x7f800000) !== 0x7f800000) continue;
    throw new FormatError(
      `${file}: tensor "${tensor.name}" (${tensor.dtype} [${tensor.shape.join(", ")}]) holds ${data[i]} at index ${i}; ` +
        `its values must all be finite. The file is corrupt, or the training that wrote it diverged: use an earlier ` +
        `checkpoint, or train again with a lower learning rate.`,
    );
  }
}

/** A FormatError for a missing tensor that lists the names most likely meant. */
export function missingTensor(
  source: string,
  name: string,
  names: readonly string[],
): FormatError {
  const tail = name.split(".").slice(-2).join(".");
  const similar = names.filter(
    (n) => n.endsWith(tail) || name.endsWith(n) || n.endsWith(name),
  );
  const pool = similar.length > 0 ? similar : names;
  const shown = pool.slice(0, 5);
  const more = pool.length > shown.length ? ", ..." : "";
  return new FormatError(
    `No tensor "${name}" in ${source}. It has ${names.length} tensors` +
      (shown.length > 0
        ? `, ${similar.length > 0 ? "similar ones: " : "e.g. "}${shown.map((n) => `"${n}"`).join(", ")}${more}`
        : "") +
      `. Check the model architecture and the weight names.`,
  );
}

type TypedArrayOf<T> = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  BYTES_PER_ELEMENT: number;
};

/** A typed view of bytes we own; copies only when the bytes are not aligned for the element type. */
function view<T>(bytes: Uint8Array, Type: TypedArrayOf<T>): T {
  const aligned =
    bytes.byteOffset % Type.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
  return new Type(
    aligned.buffer,
    aligned.byteOffset,
    aligned.byteLength / Type.BYTES_PER_ELEMENT,
  );
}

function decode(info: TensorInfo, bytes: Uint8Array): TensorData {
  switch (info.dtype) {
    case "F32":
      return view(bytes, Float32Array);
    case "F16":
      return f16BitsToF32(view(bytes, Uint16Array));
    case "BF16":
      return bf16BitsToF32(view(bytes, Uint16Array));
    case "I32":
      return view(bytes, Int32Array);
    case "I64":
      return narrowInt64(info, view(bytes, Int32Array));
    default:
      return bytes; // U8, BOOL
  }
}

/** I64 as Int32Array, when every value fits: the high word must be the sign extension of the low word. */
function narrowInt64(info: TensorInfo, words: Int32Array): Int32Array {
  const out = new Int32Array(words.length / 2);
  for (let i = 0; i < out.length; i++) {
    const low = words[2 * i]!;
    if (words[2 * i + 1]! !== low >> 31) {
      const big = new BigInt64Array(words.buffer, words.byteOffset + 8 * i, 1);
      throw new FormatError(
        `Tensor "${info.name}" in ${info.file} is I64 and holds ${big[0]} at index ${i}, which does not fit in int32; ` +
          `webtune loads I64 tensors as int32. Store it as I32 or F32.`,
      );
    }
    out[i] = low;
  }
  return out;
}

/**
 * A tensor to write. `data` is the dtype's typed array (Float32Array for F32, Int32Array for I32, ...)
 * or its raw little-endian bytes as a Uint8Array. F16 and BF16 also take a Float32Array (rounded to
 * nearest even) and I64 takes an Int32Array (widened).
 */
export interface TensorToWrite {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

/**
 * Serializes tensors to safetensors bytes, the way the reference implementation lays them out:
 * header padded with spaces to a multiple of 8 bytes, then the tensors back to back without gaps.
 * Tensors are ordered by element size, largest first (stable otherwise), so each one stays aligned
 * for readers that map the file.
 *
 * @example
 * ```ts
 * const bytes = writeSafetensors(
 *   { "base_model.model.h.0.attn.c_attn.lora_A.weight": { dtype: "F32", shape: [8, 768], data: a } },
 *   { format: "pt" },
 * );
 * ```
 */
export function writeSafetensors(
  tensors:
    | Readonly<Record<string, TensorToWrite>>
    | ReadonlyMap<string, TensorToWrite>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array<ArrayBuffer> {
  const entries: [string, TensorToWrite][] =
    tensors instanceof Map
      ? [...(tensors as ReadonlyMap<string, TensorToWrite>)]
      : Object.entries(tensors as Readonly<Record<string, TensorToWrite>>);
  const encoded = entries
    .map(([name, t]) => ({ name, t, bytes: encodeTensor(name, t) }))
    .sort((a, b) => DTYPE_BITS[b.t.dtype] - DTYPE_BITS[a.t.dtype]);
  const header: Record<string, unknown> = {};
  if (metadata) header["__metadata__"] = checkMetadata(metadata);
  let offset = 0;
  for (const { name, t, bytes } of encoded) {
    if (name === "__metadata__") {
      throw new FormatError(
        `"__metadata__" is reserved in safetensors headers and cannot name a tensor; rename it.`,
      );
    }
    header[name] = {
      dtype: t.dtype,
      shape: [...t.shape],
      data_offsets: [offset, offset + bytes.length],
    };
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const { bytes } of encoded) {
    out.set(bytes, at);
    at += bytes.length;
  }
  return out;
}

function checkMetadata(
  metadata: Readonly<Record<string, string>>,
): Record<string, string> {
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== "string") {
      throw new FormatError(
        `safetensors metadata values must be strings; "${key}" is ${typeof value}. Convert it with String() or JSON.stringify().`,
      );
    }
  }
  return { ...metadata };
}

/** Raw bytes of a tensor to write, checked against its dtype and shape. */
function encodeTensor(name: string, t: TensorToWrite): Uint8Array {
  const bytes = tensorBytes(name, t);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ShapeError(
      `Tensor "${name}": shape [${t.shape.join(", ")}] must hold non-negative integers.`,
    );
  }
  const bits = byteBits(t.shape, t.dtype);
  if (bits % 8 !== 0 || bits / 8 !== bytes.length) {
    throw new ShapeError(
      `Tensor "${name}": ${t.dtype} with shape [${t.shape.join(", ")}] needs ${bits / 8} bytes, ` +
        `but its data has ${bytes.length}. Check the shape and the data.`,
    );
  }
  return bytes;
}

const NATIVE_ARRAY: Partial<Record<SafetensorsDtype, string>> = {
  F64: "Float64Array",
  F32: "Float32Array",
  F16: "Uint16Array",
  BF16: "Uint16Array",
  I64: "BigInt64Array",
  U64: "BigUint64Array",
  I32: "Int32Array",
  U32: "Uint32Array",
  I16: "Int16Array",
  U16: "Uint16Array",
  I8: "Int8Array",
  U8: "Uint8Array",
  BOOL: "Uint8Array",
};

function tensorBytes(name: string, t: TensorToWrite): Uint8Array {
  const { dtype, data } = t;
  if (data instanceof Float32Array && dtype === "F16")
    return asBytes(f32ToF16Bits(data));
  if (data instanceof Float32Array && dtype === "BF16")
    return asBytes(f32ToBf16Bits(data));
  if (data instanceof Int32Array && dtype === "I64") {
    return asBytes(BigInt64Array.from(data, (v) => BigInt(v)));
  }
  const native = NATIVE_ARRAY[dtype];
  if (data instanceof Uint8Array || data.constructor.name === native)
    return asBytes(data);
  throw new ShapeError(
    `Tensor "${name}": ${dtype} data must be a ${native ?? "Uint8Array of raw bytes"}` +
      `${native ? " or its raw bytes as a Uint8Array" : ""}, found a ${data.constructor.name}.`,
  );
}

function asBytes(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

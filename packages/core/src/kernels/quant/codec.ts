/**
 * The CPU side of packed matrices (layout in `packed.ts`): encoding f32 values into f16, int8 or NF4 words with
 * their block scales, decoding them back with the same f32 arithmetic as the WGSL loaders (the oracle of the
 * kernel tests and the tfjs CPU backend's path), and uploading the words as tensors.
 *
 * Every dequantization is written as products, never quotients: WGSL rounds `a * b` correctly but allows 2.5 ULP
 * on `a / b`, so with multiplies only the CPU decode and the shaders agree bit for bit (up to fma contraction).
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, ShapeError } from "../../errors.js";
import { f16BitsToF32, f32ToF16Bits } from "../../io/dtypes.js";
import {
  BLOCK_SIZE,
  NF4_LEVELS,
  PackedMatrix,
  SUPER_BLOCK_SIZE,
  type BlockScales,
  type PackedFormat,
} from "./packed.js";

/** Block scales on the host, mirroring `BlockScales`. */
export type HostScales =
  | { kind: "absmax"; absmax: Float32Array }
  | {
      kind: "double";
      /** int8 absmax codes, 4 per word. */
      codes: Int32Array;
      superScale: Float32Array;
      offset: number;
    };

/** A packed matrix in host memory: what `encodeMatrix` makes and `uploadPacked` sends to the GPU. */
export interface PackedHost {
  format: PackedFormat;
  shape: [number, number];
  /** int32 words, laid out as `packed.ts` says. */
  data: Int32Array;
  /** null for float16. */
  scales: HostScales | null;
}

export interface EncodeOptions {
  /** Quantize the int8/NF4 block scales too (QLoRA's double quantization). Default false. */
  doubleQuant?: boolean;
  /** Names the tensor in error messages, e.g. `model.layers.0.mlp.up_proj.weight`. Default "matrix". */
  name?: string;
}

const fround = Math.fround;

/** f32(1/127), the factor of every int8 dequantization. */
export const INV127 = fround(1 / 127);

/** The NF4 levels as the f32 values the shader holds. */
const NF4_F32 = NF4_LEVELS.map(fround);

/** Midpoints between consecutive NF4 levels: a value's code is the number of midpoints below it. */
const NF4_MIDPOINTS = NF4_LEVELS.slice(1).map(
  (v, j) => (v + NF4_LEVELS[j]!) / 2,
);

/** Bits per stored element. */
const BITS: Record<PackedFormat, number> = { float16: 16, int8: 8, nf4: 4 };

/** Lengths of every array of a packed matrix. */
export interface PackedSizes {
  /** int32 words of `data`. */
  words: number;
  /** absmax blocks (0 for float16). */
  blocks: number;
  /** int32 words of double-quant codes, and superScale groups (0 without double quant). */
  codeWords: number;
  groups: number;
}

/** The array lengths a matrix of `shape` has in `format`. */
export function packedSizes(
  format: PackedFormat,
  shape: [number, number],
  doubleQuant: boolean,
): PackedSizes {
  const n = shape[0] * shape[1];
  const blocks = format === "float16" ? 0 : Math.ceil(n / BLOCK_SIZE);
  const dq = doubleQuant && blocks > 0;
  return {
    words: Math.ceil((n * BITS[format]) / 32),
    blocks,
    codeWords: dq ? Math.ceil(blocks / 4) : 0,
    groups: dq ? Math.ceil(blocks / SUPER_BLOCK_SIZE) : 0,
  };
}

function checkFormat(format: PackedFormat, doubleQuant: boolean): void {
  if (!(format in BITS))
    throw new ConfigError(
      `packed format must be 'float16', 'int8' or 'nf4', got ${String(format)}.`,
    );
  if (doubleQuant && format === "float16")
    throw new ConfigError(
      "doubleQuant applies to the block scales of 'int8' and 'nf4'; 'float16' has none. Drop doubleQuant.",
    );
}

function checkValues(
  values: Float32Array,
  shape: [number, number],
  name: string,
): void {
  const [rows, cols] = shape;
  if (
    shape.length !== 2 ||
    !Number.isInteger(rows) ||
    !Number.isInteger(cols) ||
    rows < 1 ||
    cols < 1
  )
    throw new ShapeError(
      `${name}: a packed matrix needs a shape [rows, cols] of positive integers, got [${shape.join(", ")}].`,
    );
  if (values.length !== rows * cols)
    throw new ShapeError(
      `${name}: shape [${rows}, ${cols}] holds ${rows * cols} values, but ${values.length} were given.`,
    );
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]))
      throw new ShapeError(
        `${name}: value ${values[i]} at flat index ${i} (row ${Math.floor(i / cols)}, column ${i % cols}) is not ` +
          "finite, and a packed matrix cannot hold it. Check the checkpoint, or keep this weight in float32.",
      );
  }
}

/** Packs one small integer per element (two's complement fields, lowest bits first) into int32 words. */
function packFields(codes: ArrayLike<number>, bits: number): Int32Array {
  const perWord = 32 / bits;
  const mask = (1 << bits) - 1;
  const words = new Int32Array(Math.ceil(codes.length / perWord));
  for (let i = 0; i < codes.length; i++) {
    const shift = (i % perWord) * bits;
    words[(i / perWord) | 0]! |= (codes[i]! & mask) << shift;
  }
  return words;
}

/**
 * f16 words: element i is half i of the words viewed as 16-bit lanes. That is the low half of word i >> 1 for
 * even i on little-endian hosts, which every JavaScript engine tfjs runs on is (tfjs uploads typed arrays as is).
 */
function halvesOf(words: Int32Array): Uint16Array {
  return new Uint16Array(words.buffer, words.byteOffset, words.length * 2);
}

/** Rounds to f16 (nearest even, subnormals kept, overflow to ±infinity) and packs two per word. */
function packHalves(values: Float32Array): Int32Array {
  const words = new Int32Array(Math.ceil(values.length / 2));
  halvesOf(words).set(f32ToF16Bits(values));
  return words;
}

/** Field i of `words`, unsigned. */
function field(words: Int32Array, i: number, bits: number): number {
  const perWord = 32 / bits;
  const shift = (i % perWord) * bits;
  return (words[(i / perWord) | 0]! >>> shift) & ((1 << bits) - 1);
}

/** Field i of `words` as a signed byte. */
function signedByte(words: Int32Array, i: number): number {
  return (field(words, i, 8) << 24) >> 24;
}

/** round(127 · v / scale), ties away from zero, clamped to [-127, 127]; 0 where the scale is not positive. */
function int8Code(v: number, scale: number): number {
  if (!(scale > 0)) return 0;
  const q = Math.min(127, Math.floor((127 * Math.abs(v)) / scale + 0.5));
  return v < 0 ? -q : q;
}

/** Index of the NF4 level nearest to v / scale; the zero level where the scale is not positive. */
function nf4Code(v: number, scale: number): number {
  if (!(scale > 0)) return 7;
  const r = v / scale;
  let code = 0;
  while (code < 15 && NF4_MIDPOINTS[code]! < r) code++;
  return code;
}

/** max |x| over each block of BLOCK_SIZE consecutive values. */
function blockAbsmax(values: Float32Array): Float32Array {
  const absmax = new Float32Array(Math.ceil(values.length / BLOCK_SIZE));
  for (let i = 0; i < values.length; i++) {
    const b = (i / BLOCK_SIZE) | 0;
    absmax[b] = Math.max(absmax[b]!, Math.abs(values[i]!));
  }
  return absmax;
}

/** Double quantization: absmax as int8 codes around their mean, one superScale per SUPER_BLOCK_SIZE blocks. */
function quantizeScales(absmax: Float32Array): HostScales {
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = fround(sum / absmax.length);
  const groups = Math.ceil(absmax.length / SUPER_BLOCK_SIZE);
  const superScale = new Float32Array(groups);
  for (let b = 0; b < absmax.length; b++) {
    const g = (b / SUPER_BLOCK_SIZE) | 0;
    superScale[g] = Math.max(superScale[g]!, Math.abs(absmax[b]! - offset));
  }
  const codes = absmax.map((a, b) =>
    int8Code(a - offset, superScale[(b / SUPER_BLOCK_SIZE) | 0]!),
  );
  return { kind: "double", codes: packFields(codes, 8), superScale, offset };
}

/** The f32 absmax of block b, as the shader computes it. */
function scaleReader(scales: HostScales): (b: number) => number {
  if (scales.kind === "absmax") return (b) => scales.absmax[b]!;
  const { codes, superScale, offset } = scales;
  return (b) => {
    const step = fround(superScale[(b / SUPER_BLOCK_SIZE) | 0]! * INV127);
    return fround(fround(signedByte(codes, b) * step) + offset);
  };
}

/**
 * Encodes a row-major [rows, cols] f32 matrix into the packed layout of `packed.ts`. f16 rounds to nearest even
 * (subnormals kept, overflow to ±infinity; the converter `io/` uses for safetensors). int8 and NF4 codes are chosen against the absmax the shader will use,
 * so with double quantization they see the dequantized scale, not the exact one.
 * Throws ShapeError naming the tensor and the flat index of a non-finite value.
 *
 * @example
 * ```ts
 * const host = encodeMatrix(weights, [1536, 576], "nf4", { doubleQuant: true, name: "mlp.up_proj.weight" });
 * const W = uploadPacked(host); // a PackedMatrix for linear / loraLinear
 * ```
 */
export function encodeMatrix(
  values: Float32Array,
  shape: [number, number],
  format: PackedFormat,
  options: EncodeOptions = {},
): PackedHost {
  const doubleQuant = options.doubleQuant ?? false;
  checkFormat(format, doubleQuant);
  checkValues(values, shape, options.name ?? "matrix");
  const s: [number, number] = [shape[0], shape[1]];
  if (format === "float16")
    return { format, shape: s, data: packHalves(values), scales: null };
  const absmax = blockAbsmax(values);
  const scales: HostScales = doubleQuant
    ? quantizeScales(absmax)
    : { kind: "absmax", absmax };
  const scaleOf = scaleReader(scales);
  const code = format === "int8" ? int8Code : nf4Code;
  const codes = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++)
    codes[i] = code(values[i]!, scaleOf((i / BLOCK_SIZE) | 0));
  return { format, shape: s, data: packFields(codes, BITS[format]), scales };
}

/** Throws ShapeError unless every array of `host` has the length its format and shape call for. */
export function checkHost(host: PackedHost): void {
  const dq = host.scales?.kind === "double";
  checkFormat(host.format, dq);
  const want = packedSizes(host.format, host.shape, dq);
  const s = host.scales;
  const got: PackedSizes = {
    words: host.data.length,
    blocks: s?.kind === "absmax" ? s.absmax.length : want.blocks,
    codeWords: s?.kind === "double" ? s.codes.length : 0,
    groups: s?.kind === "double" ? s.superScale.length : 0,
  };
  const missingScales = host.format !== "float16" && s === null;
  const bad = (Object.keys(want) as (keyof PackedSizes)[]).filter(
    (k) => got[k] !== want[k],
  );
  if (missingScales || bad.length > 0)
    throw new ShapeError(
      `a packed ${host.format} matrix [${host.shape.join(", ")}] needs ${JSON.stringify(want)} words/blocks/groups, ` +
        `got ${missingScales ? "no scales" : JSON.stringify(got)}. Encode it with encodeMatrix.`,
    );
}

/**
 * Decodes elements [start, start + count) of a packed matrix into `out` from `outOffset`, with the shader's
 * f32 arithmetic.
 */
export function decodeRange(
  host: PackedHost,
  start: number,
  count: number,
  out: Float32Array,
  outOffset = 0,
): void {
  const { format, data } = host;
  if (format === "float16") {
    const halves = halvesOf(data).subarray(start, start + count);
    out.set(f16BitsToF32(halves), outOffset);
    return;
  }
  const scaleOf = scaleReader(host.scales!);
  for (let i = 0; i < count; i++) {
    const e = start + i;
    const a = scaleOf((e / BLOCK_SIZE) | 0);
    out[outOffset + i] =
      format === "int8"
        ? fround(signedByte(data, e) * fround(a * INV127))
        : fround(NF4_F32[field(data, e, 4)]! * a);
  }
}

/**
 * The f32 values of a packed matrix, row-major: the CPU reference of the shaders' dequantization.
 *
 * @example
 * ```ts
 * const host = encodeMatrix(values, [64, 64], "int8");
 * const approx = decodeMatrix(host); // each |approx[i] - values[i]| <= absmax of its block / 254
 * ```
 */
export function decodeMatrix(host: PackedHost): Float32Array {
  checkHost(host);
  const n = host.shape[0] * host.shape[1];
  const out = new Float32Array(n);
  decodeRange(host, 0, n, out);
  return out;
}

/**
 * Uploads a host matrix as the tensors of a PackedMatrix (which the caller owns and disposes).
 *
 * @example
 * ```ts
 * const W = uploadPacked(encodeMatrix(values, [OUT, IN], "float16"));
 * const y = linear(x, W, null, "out_in");
 * W.dispose();
 * ```
 */
export function uploadPacked(host: PackedHost): PackedMatrix {
  checkHost(host);
  const s = host.scales;
  const scales: BlockScales | null =
    s === null
      ? null
      : s.kind === "absmax"
        ? { kind: "absmax", absmax: tf.tensor1d(s.absmax, "float32") }
        : {
            kind: "double",
            codes: tf.tensor1d(s.codes, "int32"),
            superScale: tf.tensor1d(s.superScale, "float32"),
            offset: s.offset,
          };
  return new PackedMatrix(
    host.format,
    [host.shape[0], host.shape[1]],
    tf.tensor1d(host.data, "int32"),
    scales,
  );
}

/**
 * Encodes and uploads in one step: `uploadPacked(encodeMatrix(values, shape, format, options))`.
 *
 * @example
 * ```ts
 * const W = packMatrix(weights, [1536, 576], "nf4", { doubleQuant: true, name: "mlp.up_proj.weight" });
 * const y = loraLinear(x, W, null, A, B, { scale: 2, weightLayout: "out_in" });
 * ```
 */
export function packMatrix(
  values: Float32Array,
  shape: [number, number],
  format: PackedFormat,
  options: EncodeOptions = {},
): PackedMatrix {
  return uploadPacked(encodeMatrix(values, shape, format, options));
}

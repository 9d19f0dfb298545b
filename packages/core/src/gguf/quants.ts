/**
 * How GGUF stores a tensor's values: F32, F16 (IEEE half, round to nearest even), or Q8_0 (blocks of 32 values
 * along a row: an f16 scale and 32 int8s, as ggml's `block_q8_0`).
 */
import { FormatError } from "../errors.js";
import { f16BitsToF32, f32ToF16Bits } from "../io/dtypes.js";

export type GgmlType = "F32" | "F16" | "Q8_0";

/** QK8_0: values per Q8_0 block. */
export const Q8_0_BLOCK = 32;
/** sizeof(block_q8_0): a ggml_half scale and 32 int8 quants. */
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** Bytes a tensor of this row-major shape takes when stored as `type`. */
export function tensorByteLength(
  shape: readonly number[],
  type: GgmlType,
): number {
  const size = shape.reduce((n, d) => n * d, 1);
  if (type === "F32") return size * 4;
  if (type === "F16") return size * 2;
  return (size / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
}

/** Whether Q8_0 can store a tensor: its rows (ne[0], the last torch axis) must be whole blocks. */
export function fitsQ8_0(shape: readonly number[]): boolean {
  return shape.length > 0 && shape[shape.length - 1]! % Q8_0_BLOCK === 0;
}

/** The stored bytes of f32 values (row-major `shape`) as `type`. */
export function encodeTensor(
  values: Float32Array,
  shape: readonly number[],
  type: GgmlType,
): Uint8Array {
  if (type === "F32")
    return new Uint8Array(
      values.buffer.slice(
        values.byteOffset,
        values.byteOffset + values.byteLength,
      ),
    );
  if (type === "F16") return new Uint8Array(f32ToF16Bits(values).buffer);
  if (!fitsQ8_0(shape))
    throw new FormatError(
      `GGUF: Q8_0 needs rows that are a multiple of ${Q8_0_BLOCK} values; shape [${shape.join(", ")}] has not.`,
    );
  return quantizeQ8_0(values);
}

/**
 * ggml's `quantize_row_q8_0_ref`, in f32 arithmetic as the C code: per block d = max|x| / 127, q = roundf(x / d)
 * (half away from zero, which JS's Math.round is not), and d stored as f16.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  const scale = new Float32Array(1);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * Q8_0_BLOCK, (b + 1) * Q8_0_BLOCK);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    scale[0] = d;
    const at = b * Q8_0_BLOCK_BYTES;
    view.setUint16(at, f32ToF16Bits(scale)[0]!, true);
    for (let j = 0; j < Q8_0_BLOCK; j++)
      view.setInt8(at + 2 + j, roundHalfAwayFromZero(Math.fround(x[j]! * id)));
  }
  return out;
}

function roundHalfAwayFromZero(v: number): number {
  return Math.sign(v) * Math.round(Math.abs(v));
}

/** Q8_0 bytes back to f32 (ggml's `dequantize_row_q8_0`), for tests and round trips. */
export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  const blocks = bytes.length / Q8_0_BLOCK_BYTES;
  const out = new Float32Array(blocks * Q8_0_BLOCK);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(Uint16Array.of(view.getUint16(at, true)))[0]!;
    for (let j = 0; j < Q8_0_BLOCK; j++)
      out[b * Q8_0_BLOCK + j] = d * view.getInt8(at + 2 + j);
  }
  return out;
}

/**
 * safetensors dtypes and the conversions webtune needs: f16 and bf16 to f32 on load, and back on save.
 * Conversions work on bit patterns, so NaN payloads, infinities, signed zeros and subnormals survive.
 */

/** Bits per element of every dtype in the safetensors spec. */
export const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

/** A dtype string of the safetensors format. */
export type SafetensorsDtype = keyof typeof DTYPE_BITS;

/** The dtypes `read()` converts to a CPU typed array; the others can only be read as raw bytes. */
export const READABLE_DTYPES: readonly SafetensorsDtype[] = [
  "F32",
  "F16",
  "BF16",
  "I32",
  "I64",
  "U8",
  "BOOL",
];

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === "string" && Object.hasOwn(DTYPE_BITS, value);
}

let f16Table: Uint32Array | undefined;

/** f32 bit patterns of all 65536 f16 values: one lookup per element is the fastest decode in JS. */
function f16ToF32Table(): Uint32Array {
  if (f16Table) return f16Table;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) {
      // Subnormal (or zero): exactly mantissa * 2^-24, which f32 represents exactly.
      scratch[0] = mantissa * 2 ** -24;
      table[h] = (sign | scratchBits[0]!) >>> 0;
    } else if (exponent === 0x1f) {
      table[h] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
    } else {
      table[h] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** Widens f16 bit patterns to f32 values. */
export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const table = f16ToF32Table();
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]!]!;
  return out;
}

/** Widens bf16 bit patterns to f32 values: bf16 is the upper half of an f32. */
export function bf16BitsToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** Rounds f32 values to f16 bit patterns, to nearest even; overflow becomes infinity. */
export function f32ToF16Bits(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(
    values.buffer,
    values.byteOffset,
    values.length,
  );
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToF16Bits(inBits[i]!);
  return out;
}

function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exponent = (f >>> 23) & 0xff;
  const mantissa = f & 0x7fffff;
  if (exponent === 0xff) {
    // Keep NaN a NaN (quiet bit set) even when its payload lives only in the low bits.
    return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  }
  const e = exponent - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    const full = mantissa | 0x800000;
    const shift = 14 - e;
    return sign | roundShift(full, shift);
  }
  // A carry out of the mantissa bumps the exponent, which is the right result (up to infinity).
  return sign | ((e << 10) + roundShift(mantissa, 13));
}

/** `value >> shift`, rounded to nearest even. */
function roundShift(value: number, shift: number): number {
  const half = 1 << (shift - 1);
  const rest = value & ((1 << shift) - 1);
  let out = value >>> shift;
  if (rest > half || (rest === half && (out & 1) === 1)) out++;
  return out;
}

/** Rounds f32 values to bf16 bit patterns, to nearest even. */
export function f32ToBf16Bits(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(
    values.buffer,
    values.byteOffset,
    values.length,
  );
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const f = inBits[i]!;
    if ((f & 0x7f800000) === 0x7f800000 && (f & 0x7fffff) !== 0) {
      out[i] = (f >>> 16) | 0x40; // NaN stays a quiet NaN
    } else {
      out[i] = (f + 0x7fff + ((f >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

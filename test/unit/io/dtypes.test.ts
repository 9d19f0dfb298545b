/**
 * f16 and bf16 conversions against hand-computed bit patterns: normals, the f16 maximum, subnormals,
 * signed zero, infinities, NaN, and round-to-nearest-even on ties.
 */
import { describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../../../packages/core/src/io/index.js";

const f16 = (...bits: number[]) =>
  Array.from(f16BitsToF32(Uint16Array.from(bits)));
const bf16 = (...bits: number[]) =>
  Array.from(bf16BitsToF32(Uint16Array.from(bits)));
const toF16 = (...values: number[]) =>
  Array.from(f32ToF16Bits(Float32Array.from(values)));
const toBf16 = (...values: number[]) =>
  Array.from(f32ToBf16Bits(Float32Array.from(values)));

describe("f16", () => {
  it("widens normals, the maximum, subnormals and specials exactly", () => {
    expect(f16(0x3c00, 0xc100, 0x7bff, 0x3555, 0x0400)).toEqual([
      1,
      -2.5,
      65504,
      0.333251953125,
      2 ** -14,
    ]);
    // Smallest and largest subnormals: 1 * 2^-24 and 1023 * 2^-24.
    expect(f16(0x0001, 0x03ff, 0x8001)).toEqual([
      2 ** -24,
      1023 * 2 ** -24,
      -(2 ** -24),
    ]);
    const [zero, negZero, inf, negInf, nan] = f16(
      0x0000,
      0x8000,
      0x7c00,
      0xfc00,
      0x7e00,
    );
    expect(Object.is(zero, 0)).toBe(true);
    expect(Object.is(negZero, -0)).toBe(true);
    expect([inf, negInf]).toEqual([Infinity, -Infinity]);
    expect(nan).toBeNaN();
  });

  it("rounds f32 to the nearest f16, ties to even, overflow to infinity", () => {
    expect(toF16(1, -2.5, 65504, 1 / 3, 2 ** -24, 1023 * 2 ** -24)).toEqual([
      0x3c00, 0xc100, 0x7bff, 0x3555, 0x0001, 0x03ff,
    ]);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: the even mantissa (1) wins; the next tie rounds up.
    expect(toF16(1 + 2 ** -11, 1 + 3 * 2 ** -11)).toEqual([0x3c00, 0x3c02]);
    // 65520 is halfway between 65504 and 65536 (not representable): it rounds to infinity.
    expect(toF16(65519, 65520, 1e6, -1e6)).toEqual([
      0x7bff, 0x7c00, 0x7c00, 0xfc00,
    ]);
    // Half the smallest subnormal ties to zero; a bit more rounds up to it.
    expect(toF16(2 ** -25, 1.5 * 2 ** -25, 2 ** -30, -0)).toEqual([
      0x0000, 0x0001, 0x0000, 0x8000,
    ]);
    expect(toF16(Infinity, -Infinity, NaN)).toEqual([0x7c00, 0xfc00, 0x7e00]);
  });

  it("round-trips every finite f16 value", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const finite = all.filter((h) => (h & 0x7c00) !== 0x7c00);
    const back = f32ToF16Bits(f16BitsToF32(finite));
    expect(back.every((h, i) => h === finite[i])).toBe(true);
  });
});

describe("bf16", () => {
  it("widens to the upper half of an f32", () => {
    expect(bf16(0x3f80, 0xc020, 0x7f7f, 0x0001)).toEqual([
      1,
      -2.5,
      3.3895313892515355e38,
      2 ** -133,
    ]);
    const [inf, negInf, nan, negZero] = bf16(0x7f80, 0xff80, 0x7fc0, 0x8000);
    expect([inf, negInf]).toEqual([Infinity, -Infinity]);
    expect(nan).toBeNaN();
    expect(Object.is(negZero, -0)).toBe(true);
  });

  it("rounds f32 to the nearest bf16, ties to even, and keeps NaN a NaN", () => {
    expect(toBf16(1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8)).toEqual([
      0x3f80, 0xc020, 0x3f80, 0x3f82,
    ]);
    // The f32 maximum is above bf16's largest finite value by more than half a step.
    expect(toBf16(3.4028234663852886e38, Infinity, -Infinity)).toEqual([
      0x7f80, 0x7f80, 0xff80,
    ]);
    expect(bf16(...toBf16(NaN))[0]).toBeNaN();
  });
});

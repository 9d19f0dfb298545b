/**
 * The CPU codec of packed matrices against the layout contract of `quant/packed.ts`: the NF4 table, f16 rounding,
 * word layouts, int8/NF4 error bounds, double quantization, and typed errors. No GPU is needed.
 */
import { describe, expect, it } from "vitest";
import {
  BLOCK_SIZE,
  ConfigError,
  decodeMatrix,
  encodeMatrix,
  NF4_LEVELS,
  ShapeError,
  SUPER_BLOCK_SIZE,
} from "@webtune/core";
import { seededValues } from "../../helpers/tensors.js";

/** bitsandbytes' NF4 code book (`get_4bit_type("nf4")` in functional.py), written out. */
const BITSANDBYTES_NF4 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
];

const f = Math.fround;

/** Encodes a [1, n] row as f16 and decodes it back. */
function f16RoundTrip(values: number[]): Float32Array {
  const v = Float32Array.from(values);
  return decodeMatrix(encodeMatrix(v, [1, v.length], "float16"));
}

/** max |x| over the block of element i. */
function blockAbsmax(x: Float32Array, i: number): number {
  const b = Math.floor(i / BLOCK_SIZE);
  let a = 0;
  for (
    let j = b * BLOCK_SIZE;
    j < Math.min(x.length, (b + 1) * BLOCK_SIZE);
    j++
  )
    a = Math.max(a, Math.abs(x[j]!));
  return a;
}

function rmsError(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}

describe("NF4 levels", () => {
  it("equal bitsandbytes' table", () => {
    expect([...NF4_LEVELS]).toEqual(BITSANDBYTES_NF4);
  });

  it("round-trip every level · absmax exactly, for several absmax values", () => {
    for (const absmax of [1, 0.37, 1234.5, 3e-5]) {
      // Each block holds every level (±1 included), so its absmax is exactly `absmax`.
      const x = Float32Array.from({ length: 4 * BLOCK_SIZE }, (_, i) =>
        f(f(NF4_LEVELS[i % 16]!) * f(absmax)),
      );
      const decoded = decodeMatrix(encodeMatrix(x, [4, BLOCK_SIZE], "nf4"));
      expect(Array.from(decoded), `absmax ${absmax}`).toEqual(Array.from(x));
    }
  });

  it("map random values to the nearest level of their block", () => {
    const x = seededValues(1000, 31);
    const decoded = decodeMatrix(encodeMatrix(x, [10, 100], "nf4"));
    for (let i = 0; i < x.length; i++) {
      const a = blockAbsmax(x, i);
      const best = Math.min(
        ...NF4_LEVELS.map((l) => Math.abs(f(f(l) * a) - x[i]!)),
      );
      expect(Math.abs(decoded[i]! - x[i]!), `element ${i}`).toBeLessThanOrEqual(
        best + 1e-7 * a,
      );
    }
  });
});

describe("f16 codec", () => {
  it("is exact for representable values: ±0, subnormals, the normal range edges, max half", () => {
    const exact = [
      0,
      -0,
      1,
      -2,
      0.5,
      1.5,
      0.333251953125,
      65504,
      -65504,
      2 ** -14,
      2 ** -24,
      -(2 ** -24),
      3 * 2 ** -24,
      1023 * 2 ** -24,
      1 + 2 ** -10,
    ];
    const back = f16RoundTrip(exact);
    exact.forEach((v, i) => expect(Object.is(back[i], v), `${v}`).toBe(true));
  });

  it("rounds to nearest, ties to even, and overflows to infinity", () => {
    const cases: [number, number][] = [
      [1 + 2 ** -11, 1], // tie between 1 and 1 + 2⁻¹⁰: even mantissa 0
      [1 + 3 * 2 ** -11, 1 + 2 ** -9], // tie between mantissas 1 and 2: 2
      [1 + 2 ** -11 + 2 ** -20, 1 + 2 ** -10], // just above the tie
      [2 ** -25, 0], // tie between 0 and the smallest subnormal
      [3 * 2 ** -25, 2 ** -23], // tie between subnormals 1 and 2
      [2 ** -25 + 2 ** -35, 2 ** -24],
      [65519, 65504],
      [65520, Infinity], // tie between 65504 and 2¹⁶: even, which overflows
      [1e6, Infinity],
      [-1e6, -Infinity],
    ];
    const back = f16RoundTrip(cases.map(([v]) => v));
    cases.forEach(([v, want], i) =>
      expect(back[i], `${v} -> ${want}`).toBe(want),
    );
  });

  it("packs element i into the low half of word i >> 1 for even i", () => {
    const host = encodeMatrix(
      Float32Array.from([1, -2, 0.5]),
      [1, 3],
      "float16",
    );
    expect(Array.from(host.data, (w) => w >>> 0)).toEqual([0xc0003c00, 0x3800]);
    expect(host.scales).toBeNull();
  });
});

describe("int8 and nf4 codecs", () => {
  it("lay out int8 codes lowest byte first, with the block absmax", () => {
    const host = encodeMatrix(
      Float32Array.from([127, -127, 0, 1, 64]),
      [1, 5],
      "int8",
    );
    expect(Array.from(host.data, (w) => w >>> 0)).toEqual([0x0100817f, 0x40]);
    expect(host.scales).toEqual({
      kind: "absmax",
      absmax: Float32Array.from([127]),
    });
  });

  it("lay out nf4 codes lowest nibble first", () => {
    // Levels 0, 15, 7, 8, 1, 14, 2, 13, 3 at absmax 1.
    const codes = [0, 15, 7, 8, 1, 14, 2, 13, 3];
    const x = Float32Array.from(codes, (c) => NF4_LEVELS[c]!);
    const host = encodeMatrix(x, [3, 3], "nf4");
    const word0 = codes.slice(0, 8).reduce((w, c, i) => w + c * 16 ** i, 0);
    expect(Array.from(host.data, (w) => w >>> 0)).toEqual([word0, 3]);
  });

  it("bound the int8 error by absmax / 254 and the nf4 error by absmax · the largest half gap", () => {
    const x = seededValues(50 * 70, 32).map((v, i) => v * (1 + (i % 7)));
    let halfGap = 0;
    for (let j = 1; j < 16; j++)
      halfGap = Math.max(halfGap, (NF4_LEVELS[j]! - NF4_LEVELS[j - 1]!) / 2);
    for (const [format, bound] of [
      ["int8", 1 / 254],
      ["nf4", halfGap],
    ] as const) {
      const d = decodeMatrix(encodeMatrix(x, [50, 70], format));
      for (let i = 0; i < x.length; i++)
        expect(Math.abs(d[i]! - x[i]!), `${format} ${i}`).toBeLessThanOrEqual(
          blockAbsmax(x, i) * (bound + 1e-6),
        );
    }
  });

  it("double quantization decodes close to single quantization, in fewer bytes", () => {
    // 300 blocks: two groups of block scales, the second partial.
    const n = 300 * BLOCK_SIZE - 17;
    const x = seededValues(n, 33).map((v, i) => v * (0.5 + (i % 97) / 50));
    for (const format of ["int8", "nf4"] as const) {
      const single = encodeMatrix(x, [1, n], format);
      const double = encodeMatrix(x, [1, n], format, { doubleQuant: true });
      expect(double.scales!.kind).toBe("double");
      if (double.scales!.kind === "double")
        expect(double.scales!.superScale.length).toBe(
          Math.ceil(Math.ceil(n / BLOCK_SIZE) / SUPER_BLOCK_SIZE),
        );
      const e1 = rmsError(decodeMatrix(single), x);
      const e2 = rmsError(decodeMatrix(double), x);
      expect(e2, `${format}: rms error ${e2} vs ${e1}`).toBeLessThan(e1 * 1.1);
    }
  });
});

describe("codec errors", () => {
  it("names the tensor and the flat index of a non-finite value", () => {
    const x = new Float32Array(12);
    x[5] = NaN;
    const encode = () =>
      encodeMatrix(x, [3, 4], "nf4", { name: "mlp.up_proj.weight" });
    expect(encode).toThrow(ShapeError);
    expect(encode).toThrow(
      /mlp\.up_proj\.weight: value NaN at flat index 5 \(row 1, column 1\)/,
    );
    x[5] = 0;
    x[11] = -Infinity;
    expect(() => encodeMatrix(x, [3, 4], "float16")).toThrow(
      /matrix: value -Infinity at flat index 11/,
    );
  });

  it("rejects a shape that does not hold the values, and double quantization of f16", () => {
    const x = new Float32Array(12);
    expect(() => encodeMatrix(x, [5, 4], "int8")).toThrow(ShapeError);
    expect(() => encodeMatrix(x, [5, 4], "int8")).toThrow(
      /shape \[5, 4\] holds 20 values, but 12 were given/,
    );
    expect(() => encodeMatrix(x, [0, 12], "int8")).toThrow(ShapeError);
    expect(() =>
      encodeMatrix(x, [3, 4], "float16", { doubleQuant: true }),
    ).toThrow(ConfigError);
    expect(() => encodeMatrix(x, [3, 4], "int4" as unknown as "int8")).toThrow(
      ConfigError,
    );
  });

  it("refuses to decode a host matrix whose arrays do not fit its shape", () => {
    const host = encodeMatrix(new Float32Array(130), [10, 13], "int8");
    expect(() =>
      decodeMatrix({ ...host, data: host.data.subarray(1) }),
    ).toThrow(ShapeError);
  });
});

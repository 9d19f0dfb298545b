/**
 * The GGUF writer against an independent reader (@huggingface/gguf) and against ggml's definitions: metadata
 * types and values, tensor descriptions in ggml's axis order, 32-byte aligned data, and the F16 and Q8_0 encodings.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import { describe, expect, test } from "vitest";
import {
  dequantizeQ8_0,
  f16BitsToF32,
  FormatError,
  permuteHeadRows,
  quantizeQ8_0,
  writeGguf,
  type GgufFile,
  type GgufTensor,
} from "@webtune/core";

const dir = mkdtempSync(join(tmpdir(), "webtune-gguf-format-"));

function saved(file: GgufFile, name: string): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat(file.parts));
  return path;
}

const ramp = (n: number, scale = 1) =>
  Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);

describe("writeGguf", () => {
  test("an independent reader reads back every key, tensor description and byte", async () => {
    const tensors: GgufTensor[] = [
      { name: "a.weight", shape: [3, 5], type: "F32", values: ramp(15, 0.25) },
      {
        name: "b.weight",
        shape: [2, 64],
        type: "F16",
        values: ramp(128, 0.01),
      },
      { name: "c.weight", shape: [2, 32], type: "Q8_0", values: ramp(64, 0.1) },
      { name: "d.bias", shape: [7], type: "F32", values: ramp(7) },
    ];
    const file = writeGguf(
      {
        "general.architecture": { type: "string", value: "llama" },
        "llama.block_count": { type: "uint32", value: 6 },
        "llama.rope.freq_base": { type: "float32", value: 10000.5 },
        "tokenizer.ggml.add_bos_token": { type: "bool", value: true },
        "tokenizer.ggml.tokens": {
          type: "array",
          of: "string",
          value: ["a", "Ġb", "é"],
        },
        "tokenizer.ggml.token_type": {
          type: "array",
          of: "int32",
          value: [1, 3, -1],
        },
        "tokenizer.ggml.scores": {
          type: "array",
          of: "float32",
          value: [0, -1.5],
        },
      },
      tensors,
    );
    const bytes = new Uint8Array(Buffer.concat(file.parts)); // a copy at offset 0 of its own buffer
    expect(bytes.length).toBe(file.byteLength);
    const parsed = await gguf(saved(file, "all.gguf"), {
      allowLocalFile: true,
    });
    const metadata = parsed.metadata as unknown as Record<string, unknown>;
    expect(parsed.metadata.version).toBe(3);
    expect(metadata["general.architecture"]).toBe("llama");
    expect(metadata["llama.block_count"]).toBe(6);
    expect(metadata["llama.rope.freq_base"]).toBe(10000.5);
    expect(metadata["tokenizer.ggml.add_bos_token"]).toBe(true);
    expect(metadata["tokenizer.ggml.tokens"]).toEqual(["a", "Ġb", "é"]);
    expect(metadata["tokenizer.ggml.token_type"]).toEqual([1, 3, -1]);
    expect(metadata["tokenizer.ggml.scores"]).toEqual([0, -1.5]);
    expect(Number(parsed.tensorDataOffset) % 32).toBe(0);
    // ggml order: ne[0] is the row (the last torch axis); types F32 0, F16 1, Q8_0 8.
    expect(
      parsed.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype]),
    ).toEqual([
      ["a.weight", [5, 3], 0],
      ["b.weight", [64, 2], 1],
      ["c.weight", [32, 2], 8],
      ["d.bias", [7], 0],
    ]);
    const at = (i: number) =>
      Number(parsed.tensorDataOffset + parsed.tensorInfos[i]!.offset);
    for (const t of parsed.tensorInfos) expect(Number(t.offset) % 32).toBe(0);
    const a = new Float32Array(bytes.buffer.slice(at(0), at(0) + 60));
    expect([...a]).toEqual([...tensors[0]!.values]);
    const b = f16BitsToF32(
      new Uint16Array(bytes.buffer.slice(at(1), at(1) + 256)),
    );
    // Rounded to nearest: within half a unit in the last place of f16 (2^-11 relative).
    b.forEach((v, i) => {
      const want = tensors[1]!.values[i]!;
      expect(Math.abs(v - want)).toBeLessThanOrEqual(2 ** -11 * Math.abs(want));
    });
    const c = dequantizeQ8_0(bytes.subarray(at(2), at(2) + 68));
    expect(
      Math.max(...c.map((v, i) => Math.abs(v - tensors[2]!.values[i]!))),
    ).toBeLessThan(0.02);
    expect([
      ...new Float32Array(bytes.buffer.slice(at(3), at(3) + 28)),
    ]).toEqual([...tensors[3]!.values]);
  });

  test("a header far larger than the writer's first buffer (a real vocabulary) is written whole", async () => {
    const tokens = Array.from({ length: 50_000 }, (_, i) => `token-${i}`);
    const file = writeGguf(
      {
        "tokenizer.ggml.tokens": { type: "array", of: "string", value: tokens },
        "tokenizer.chat_template": {
          type: "string",
          value: "x".repeat(70_000),
        },
        "tokenizer.ggml.token_type": {
          type: "array",
          of: "int32",
          value: new Int32Array(50_000).fill(1),
        },
      },
      [{ name: "w", shape: [2], type: "F32", values: ramp(2) }],
    );
    const parsed = await gguf(saved(file, "big.gguf"), {
      allowLocalFile: true,
    });
    const metadata = parsed.metadata as unknown as Record<string, unknown>;
    expect(metadata["tokenizer.ggml.tokens"]).toEqual(tokens);
    expect((metadata["tokenizer.chat_template"] as string).length).toBe(70_000);
    expect(parsed.tensorInfos[0]!.name).toBe("w");
  });

  test("bad tensors and keys are refused by name", () => {
    const one = (t: Partial<GgufTensor>) => () =>
      writeGguf({}, [
        { name: "x", shape: [2], type: "F32", values: ramp(2), ...t },
      ]);
    expect(one({ values: ramp(3) })).toThrow(
      /"x" has shape \[2\] \(2 values\) but 3/,
    );
    expect(one({ name: "n".repeat(64) })).toThrow(
      /longer than llama.cpp's 63 bytes/,
    );
    expect(one({ shape: [1, 1, 1, 1, 2] })).toThrow(FormatError);
    expect(one({ type: "Q8_0", shape: [2] })).toThrow(/multiple of 32/);
    expect(() =>
      writeGguf({}, [
        { name: "x", shape: [1], type: "F32", values: ramp(1) },
        { name: "x", shape: [1], type: "F32", values: ramp(1) },
      ]),
    ).toThrow(/"x" is written twice/);
    expect(() =>
      writeGguf({ "a.b": { type: "uint32", value: -1 } }, []),
    ).toThrow(/"a.b" must be a uint32, got -1/);
  });
});

describe("Q8_0", () => {
  test("one block as ggml's quantize_row_q8_0_ref: d = max|x| / 127 in f16, q rounded half away from zero", () => {
    const x = new Float32Array(32);
    x[0] = 127; // d = 1 exactly
    x[1] = 2.5;
    x[2] = -2.5; // roundf: -3 (JS Math.round would give -2)
    x[3] = -127;
    x[4] = 0.49;
    const block = quantizeQ8_0(x);
    expect(block.length).toBe(34);
    expect(block[0]! | (block[1]! << 8)).toBe(0x3c00); // 1.0 in f16
    expect([...new Int8Array(block.buffer, 2, 5)]).toEqual([
      127, 3, -3, -127, 0,
    ]);
    expect([...quantizeQ8_0(new Float32Array(32))]).toEqual(
      new Array(34).fill(0),
    );
  });
});

test("permuteHeadRows pairs each head's first-half row i with its second-half row i (convert_hf_to_gguf's permute)", () => {
  // Two heads of 4 rows, one column: rows h*4 + [0, 1, 2, 3] become h*4 + [0, 2, 1, 3].
  const rows = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  expect([...permuteHeadRows(rows, 8, 2)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  const twoColumns = Float32Array.from([0, 0, 1, 1, 2, 2, 3, 3]);
  expect([...permuteHeadRows(twoColumns, 4, 1)]).toEqual([
    0, 0, 2, 2, 1, 1, 3, 3,
  ]);
});

test("the file read back from disk is the same bytes", () => {
  const file = writeGguf(
    { "general.architecture": { type: "string", value: "gpt2" } },
    [],
  );
  const path = saved(file, "empty.gguf");
  expect(readFileSync(path).subarray(0, 8)).toEqual(
    Buffer.from([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]),
  );
});

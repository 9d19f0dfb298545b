/**
 * Corrupt safetensors files fail with a FormatError that names the file and the problem, at open where
 * the header shows it, and at read for a missing tensor.
 */
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import {
  bytesSource,
  nodeFileSource,
  openSafetensors,
  writeSafetensors,
} from "../../../packages/core/src/io/index.js";

const NAME = "broken.safetensors";

/** A file with this header (object or raw text) and this many data bytes; `length` overrides the prefix. */
function raw(header: unknown, dataBytes: number, length?: bigint): Uint8Array {
  const json = new TextEncoder().encode(
    typeof header === "string" ? header : JSON.stringify(header),
  );
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const open = (bytes: Uint8Array) => openSafetensors(bytesSource(bytes, NAME));

async function expectFormatError(bytes: Uint8Array, message: RegExp) {
  const error = await open(bytes).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FormatError);
  expect((error as Error).message).toContain(NAME);
  expect((error as Error).message).toMatch(message);
}

const f32 = (
  offsets: number[],
  shape = [offsets[1]! / 4 - offsets[0]! / 4],
) => ({
  dtype: "F32",
  shape,
  data_offsets: offsets,
});

describe("corrupt safetensors", () => {
  it("a file shorter than 8 bytes", async () => {
    await expectFormatError(
      new Uint8Array(5),
      /is truncated: .*8-byte header length, but it has only 5 bytes/,
    );
    await expectFormatError(new Uint8Array(0), /only 0 bytes/);
  });

  it("a header length past the end of the file", async () => {
    await expectFormatError(
      raw({}, 4, 1000n),
      /header length \(1000 bytes\) runs past the end of the file \(14 bytes/,
    );
    await expectFormatError(
      raw({}, 4, 2n ** 40n),
      /header length \(1099511627776 bytes\) runs past the end/,
    );
  });

  it("header bytes that are not JSON, or not a JSON object", async () => {
    await expectFormatError(
      raw("{not json", 0),
      /invalid safetensors header: it is not valid UTF-8 JSON/,
    );
    await expectFormatError(
      raw("[1, 2]", 0),
      /expected a JSON object of tensors, found an array/,
    );
    const invalidUtf8 = raw("{}", 0);
    invalidUtf8[9] = 0xff;
    await expectFormatError(invalidUtf8, /not valid UTF-8 JSON/);
  });

  it("data shorter than the largest end offset", async () => {
    await expectFormatError(
      raw({ a: f32([0, 8]), w: f32([8, 24]) }, 16),
      /truncated or its offsets are out of range: tensor "w" ends at byte 24 of the data section, which has only 16 bytes/,
    );
  });

  it("overlapping, reversed and malformed offsets", async () => {
    await expectFormatError(
      raw({ a: f32([0, 8]), b: f32([4, 12]) }, 12),
      /overlapping tensors: "a" \[0, 8\] and "b" \[4, 12\] share bytes/,
    );
    await expectFormatError(
      raw({ w: f32([8, 0], [2]) }, 8),
      /tensor "w": data_offsets \[8, 0\] are reversed/,
    );
    await expectFormatError(
      raw({ w: f32([-4, 4], [2]) }, 8),
      /data_offsets must be \[begin, end\] with non-negative integers, found \[-4,4\]/,
    );
    await expectFormatError(
      raw({ w: { dtype: "F32", shape: [1] } }, 4),
      /data_offsets must be \[begin, end\]/,
    );
  });

  it("a shape whose size disagrees with the byte range", async () => {
    await expectFormatError(
      raw({ w: f32([0, 8], [3]) }, 8),
      /tensor "w": shape \[3\] of F32 needs 12 bytes, but data_offsets \[0, 8\] hold 8/,
    );
    await expectFormatError(
      raw({ w: f32([0, 4], [-1]) }, 4),
      /shape must be a list of non-negative integers, found \[-1\]/,
    );
  });

  it("an unknown dtype is refused at open", async () => {
    await expectFormatError(
      raw({ w: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }, 16),
      /tensor "w": unknown dtype "F128"; the safetensors dtypes are BOOL, .*F32/,
    );
  });

  it("metadata that is not an object of strings", async () => {
    await expectFormatError(
      raw({ __metadata__: { total_size: 8 } }, 0),
      /__metadata__: "total_size" is 8, but metadata values must be strings/,
    );
    await expectFormatError(
      raw({ __metadata__: [] }, 0),
      /invalid __metadata__: expected an object of strings, found an array/,
    );
  });

  it("a missing tensor lists the names most likely meant", async () => {
    const file = await open(
      writeSafetensors({
        "h.0.attn.c_attn.weight": {
          dtype: "U8",
          shape: [1],
          data: new Uint8Array(1),
        },
        "h.0.mlp.c_fc.weight": {
          dtype: "U8",
          shape: [1],
          data: new Uint8Array(1),
        },
        "wte.weight": { dtype: "U8", shape: [1], data: new Uint8Array(1) },
      }),
    );
    await expect(
      file.read("transformer.h.0.attn.c_attn.weight"),
    ).rejects.toThrow(
      /No tensor "transformer.h.0.attn.c_attn.weight" in broken.safetensors. It has 3 tensors, similar ones: "h.0.attn.c_attn.weight"\./,
    );
    await expect(file.info("nope")).rejects.toThrow(FormatError);
    await expect(file.read("nope")).rejects.toThrow(
      /It has 3 tensors, e.g. "h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight", "wte.weight"\./,
    );
    expect(file.has("nope")).toBe(false);
  });

  it("a file that shrank after it was opened, and a read outside the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "webtune-io-"));
    try {
      const path = join(dir, NAME);
      await writeFile(
        path,
        writeSafetensors({
          w: { dtype: "F32", shape: [4], data: new Float32Array(4) },
        }),
      );
      const file = await openSafetensors(await nodeFileSource(path));
      await truncate(path, 20);
      await expect(file.read("w")).rejects.toThrow(FormatError);
      await expect(file.read("w")).rejects.toThrow(
        /broken.safetensors is shorter than when it was opened \(80 bytes\): reading bytes \[64, 80\) stopped at byte 64/,
      );
      await expect(
        file.byteSource.read(0, file.byteSource.size + 1),
      ).rejects.toThrow(
        /Cannot read bytes \[0, \d+\) of .*broken.safetensors: it has \d+ bytes/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

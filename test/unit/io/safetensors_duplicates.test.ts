/**
 * A safetensors header that names a tensor twice (JSON.parse would keep the last), or repeats a field inside one
 * entry, is refused at open with a FormatError naming the file and the tensor, also when an escape spells the
 * second name differently; strings that merely contain quotes, braces or the name are not mistaken for keys;
 * hostile nesting gives a FormatError, not a RangeError. Real files on disk.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import {
  nodeFileSource,
  openSafetensors,
} from "../../../packages/core/src/io/index.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-duplicates-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A file with this header text (JSON as written, duplicates and all) and this many data bytes. */
async function fileWith(
  name: string,
  header: string,
  dataBytes: number,
): Promise<string> {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const path = join(dir, name);
  await writeFile(path, out);
  return path;
}

async function openError(path: string): Promise<Error | undefined> {
  return openSafetensors(await nodeFileSource(path)).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
}

const entry = (begin: number, end: number) =>
  `{"dtype":"F32","shape":[${(end - begin) / 4}],"data_offsets":[${begin},${end}]}`;

describe("duplicate keys in a safetensors header", () => {
  it("a tensor listed twice: a FormatError naming the file and the tensor", async () => {
    const path = await fileWith(
      "twice.safetensors",
      `{"lm_head.weight":${entry(0, 8)},"wte.weight":${entry(8, 16)},"lm_head.weight":${entry(16, 24)}}`,
      24,
    );
    const error = await openError(path);
    expect(error).toBeInstanceOf(FormatError);
    expect(error!.message).toContain(path);
    expect(error!.message).toMatch(/tensor "lm_head\.weight" is listed twice/);
  });

  it("the second spelled with a JSON escape, and __metadata__ twice", async () => {
    const escaped = await fileWith(
      "escaped.safetensors",
      `{"wte.weight":${entry(0, 8)}, "\\u0077te.weight" : ${entry(8, 16)}}`,
      16,
    );
    expect((await openError(escaped))!.message).toMatch(
      /tensor "wte\.weight" is listed twice/,
    );
    const metadata = await fileWith(
      "metadata.safetensors",
      `{"__metadata__":{"format":"pt"},"__metadata__":{"format":"np"}}`,
      0,
    );
    expect((await openError(metadata))!.message).toMatch(
      /__metadata__ is listed twice/,
    );
  });

  it("a field twice inside one entry", async () => {
    const path = await fileWith(
      "field.safetensors",
      `{"wte.weight":{"dtype":"F32","shape":[2],"dtype":"I32","data_offsets":[0,8]}}`,
      8,
    );
    const error = await openError(path);
    expect(error).toBeInstanceOf(FormatError);
    expect(error!.message).toMatch(
      /the entry of "wte\.weight" has the field "dtype" twice/,
    );
  });

  it("names and values that look like keys are not duplicates", async () => {
    const path = await fileWith(
      "lookalikes.safetensors",
      `{"__metadata__":{"note":"\\"a\\":{\\"a\\",[\\"a\\"","a":"a,\\"a\\":"},` +
        `"a":${entry(0, 4)},"a.b":${entry(4, 8)},"{\\"a\\"}":${entry(8, 12)}}`,
      12,
    );
    const file = await openSafetensors(await nodeFileSource(path));
    expect(file.names).toEqual(["a", "a.b", '{"a"}']);
    expect(file.metadata["a"]).toBe('a,"a":');
  });

  it("shapes nested 100k deep are a FormatError, not a stack overflow", async () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    const path = await fileWith(
      "deep.safetensors",
      `{"t":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`,
      4,
    );
    const error = await openError(path);
    expect(error).toBeInstanceOf(FormatError);
    expect(error!.message).toMatch(
      /shape must be a list of non-negative integers/,
    );
  });
});

/**
 * Sharded checkpoints: one reader over every shard, each opened only when one of its tensors is read,
 * and clear errors for a bad index, a missing shard, or an index that disagrees with its shards.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import {
  bytesSource,
  FileNotFoundError,
  openModelFiles,
  openModelWeights,
  openShardedSafetensors,
  type ByteSource,
} from "../../../packages/core/src/io/index.js";
import { INDEX, makeHubFixture, SHARD_1, SHARD_2 } from "./model_fixture.js";

const SHARDS: Record<string, Uint8Array> = {
  "model-00001-of-00002.safetensors": SHARD_1,
  "model-00002-of-00002.safetensors": SHARD_2,
};

function memoryShards(opened: string[]) {
  return async (file: string): Promise<ByteSource> => {
    opened.push(file);
    const bytes = SHARDS[file];
    if (!bytes)
      throw new FileNotFoundError(`"${file}" was not found in memory.`, {
        source: "memory",
        file,
      });
    return bytesSource(bytes, file);
  };
}

describe("sharded safetensors", () => {
  it("reads every tensor through one reader, opening each shard once and only when needed", async () => {
    const opened: string[] = [];
    const st = openShardedSafetensors(INDEX, {
      indexName: "model.safetensors.index.json",
      openShard: memoryShards(opened),
    });
    expect(st.names).toEqual(["a.weight", "b.weight", "c.weight"]);
    expect(st.metadata).toEqual({ total_size: "20" });
    expect(opened).toEqual([]);
    expect(Array.from((await st.read("b.weight")).data)).toEqual([3, -4]);
    expect(opened).toEqual(["model-00002-of-00002.safetensors"]);
    expect(Array.from((await st.read("c.weight")).data)).toEqual([5]);
    expect((await st.info("a.weight")).shape).toEqual([2]);
    expect(Array.from(await st.readUint16("b.weight"))).toEqual([
      0x4040, 0xc080,
    ]);
    expect(opened).toEqual([
      "model-00002-of-00002.safetensors",
      "model-00001-of-00002.safetensors",
    ]);
  });

  it("names the index, the tensor and the shard when a shard is missing", async () => {
    const index = {
      weight_map: {
        ...INDEX.weight_map,
        "d.weight": "model-00003-of-00003.safetensors",
      },
    };
    const st = openShardedSafetensors(index, {
      indexName: "model.safetensors.index.json",
      openShard: memoryShards([]),
    });
    await expect(st.read("d.weight")).rejects.toThrow(FormatError);
    await expect(st.read("d.weight")).rejects.toThrow(
      /model.safetensors.index.json puts tensor "d.weight" in shard "model-00003-of-00003.safetensors", which is missing/,
    );
    await expect(st.read("zzz")).rejects.toThrow(
      /No tensor "zzz" in model.safetensors.index.json/,
    );
  });

  it("refuses an index that disagrees with its shards, or is not an index", async () => {
    const index = {
      weight_map: { "x.weight": "model-00001-of-00002.safetensors" },
    };
    const st = openShardedSafetensors(index, {
      indexName: "idx.json",
      openShard: memoryShards([]),
    });
    await expect(st.read("x.weight")).rejects.toThrow(
      /idx.json puts tensor "x.weight" in model-00001-of-00002.safetensors, but that shard has no such tensor/,
    );
    const open = (value: unknown) => () =>
      openShardedSafetensors(value, {
        indexName: "idx.json",
        openShard: memoryShards([]),
      });
    expect(open([])).toThrow(
      /idx.json is not a valid safetensors index: it is not a JSON object/,
    );
    expect(open({ metadata: {} })).toThrow(
      /"weight_map" is missing or not an object/,
    );
    expect(open({ weight_map: { a: 3 } })).toThrow(
      /gives tensor "a" the shard 3/,
    );
  });
});

describe("openModelWeights", () => {
  let root: string;
  beforeAll(async () => {
    root = await makeHubFixture();
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("opens model.safetensors, or the sharded index and its shards", async () => {
    const single = await openModelWeights(
      await openModelFiles(join(root, "org/tiny/main")),
    );
    expect(single.names).toEqual(["wte.weight", "ln_f.bias"]);
    expect(single.metadata).toEqual({ format: "pt" });
    const sharded = await openModelWeights(
      await openModelFiles(join(root, "org/sharded/main")),
    );
    expect(Array.from((await sharded.read("a.weight")).data)).toEqual([1, 2]);
    expect(Array.from((await sharded.read("b.weight")).data)).toEqual([3, -4]);
    expect(sharded.source).toMatch(
      /model.safetensors.index.json from .*org\/sharded\/main/,
    );
  });

  it("says which shard is missing from the folder", async () => {
    const holey = await openModelWeights(
      await openModelFiles(join(root, "org/holey/main")),
    );
    expect(Array.from((await holey.read("a.weight")).data)).toEqual([1, 2]);
    await expect(holey.read("b.weight")).rejects.toThrow(FormatError);
    await expect(holey.read("b.weight")).rejects.toThrow(
      /puts tensor "b.weight" in shard "model-00002-of-00002.safetensors", which is missing: "model-00002-of-00002.safetensors" was not found in directory .*org\/holey\/main/,
    );
  });

  it("says what it looked for when there are no safetensors weights", async () => {
    const files = await openModelFiles(join(root, "gpt2/main"));
    await expect(openModelWeights(files)).rejects.toThrow(FileNotFoundError);
    await expect(openModelWeights(files)).rejects.toThrow(
      /gpt2\/main has neither model.safetensors nor model.safetensors.index.json. webtune loads safetensors weights only/,
    );
  });

  it("reads an adapter by another file name", async () => {
    const st = await openModelWeights(
      {
        source: "memory",
        has: async (f) => f === "adapter_model.safetensors",
        bytes: async () => bytesSource(SHARD_1),
        text: async () => "",
        json: async <T>() => ({}) as T,
      },
      "adapter_model.safetensors",
    );
    expect(st.names).toEqual(["a.weight"]);
  });
});

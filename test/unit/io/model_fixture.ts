/**
 * A tiny hub on disk for io tests: `{root}/{id}/{revision}/{file}`, the layout `startHubServer` serves.
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { writeSafetensors } from "../../../packages/core/src/io/index.js";

export const CONFIG = { model_type: "gpt2", n_layer: 2 };

/** A weights file of about 64 KiB, so downloads arrive in several chunks. */
export const WEIGHTS = writeSafetensors(
  {
    "wte.weight": {
      dtype: "F32",
      shape: [128, 128],
      data: Float32Array.from({ length: 128 * 128 }, (_, i) => i),
    },
    "ln_f.bias": {
      dtype: "F32",
      shape: [4],
      data: Float32Array.from([1, 2, 3, 4]),
    },
  },
  { format: "pt" },
);

export const SHARD_1 = writeSafetensors({
  "a.weight": { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) },
});
export const SHARD_2 = writeSafetensors({
  "b.weight": { dtype: "BF16", shape: [2], data: Float32Array.from([3, -4]) },
  "c.weight": { dtype: "I32", shape: [1], data: Int32Array.from([5]) },
});
export const INDEX = {
  metadata: { total_size: 20 },
  weight_map: {
    "a.weight": "model-00001-of-00002.safetensors",
    "b.weight": "model-00002-of-00002.safetensors",
    "c.weight": "model-00002-of-00002.safetensors",
  },
};

/** Writes the fixture hub into a fresh temp directory and returns it. */
export async function makeHubFixture(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "webtune-hub-"));
  const put = async (path: string, data: string | Uint8Array) => {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), data);
  };
  const json = (value: unknown) => JSON.stringify(value, null, 2);
  await put("org/tiny/main/config.json", json(CONFIG));
  await put("org/tiny/main/model.safetensors", WEIGHTS);
  await put("org/tiny/main/tokenizer.json", json({ version: "1.0" }));
  await put("org/tiny/main/bad.json", "{ nope");
  await put("org/tiny/v1.0/config.json", json({ ...CONFIG, n_layer: 1 }));
  await put("org/tiny/refs/pr/1/config.json", json({ ...CONFIG, n_layer: 3 }));
  await put("gpt2/main/config.json", json({ ...CONFIG, n_layer: 12 }));
  await put("org/sharded/main/config.json", json(CONFIG));
  await put("org/sharded/main/model.safetensors.index.json", json(INDEX));
  await put("org/sharded/main/model-00001-of-00002.safetensors", SHARD_1);
  await put("org/sharded/main/model-00002-of-00002.safetensors", SHARD_2);
  await put("org/holey/main/model.safetensors.index.json", json(INDEX));
  await put("org/holey/main/model-00001-of-00002.safetensors", SHARD_1);
  return root;
}

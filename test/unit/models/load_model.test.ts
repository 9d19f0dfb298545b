/**
 * loadModel from a real local HTTP server with the hub's URL shape: every tiny model matches its golden logits,
 * a second load is served from the cache with no request, and sharded and BF16 checkpoints load. An
 * unsupported model_type is refused before any weight is requested.
 */
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  ConfigError,
  disposeRuntime,
  f32ToBf16Bits,
  loadModel,
  openSafetensors,
  writeSafetensors,
  type DownloadProgress,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR, goldenNames, readGolden } from "../../helpers/golden.js";
import { startHubServer, type HubServer } from "../../helpers/hub_server.js";
import { expectClose } from "../../helpers/tensors.js";

let hub: HubServer;
let root: string;
const ORG = "webtune-test";

/** Publishes a folder on the test hub as `${ORG}/${name}` at revision main. */
function publish(
  name: string,
  files: Record<string, Uint8Array | string>,
): string {
  const dir = join(root, ORG, name, "main");
  mkdirSync(dir, { recursive: true });
  for (const [file, data] of Object.entries(files))
    writeFileSync(join(dir, file), data);
  return `${ORG}/${name}`;
}

async function tensorsOf(dir: string) {
  const reader = await openSafetensors(
    new Uint8Array(readFileSync(`${dir}/model.safetensors`)),
  );
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const n of reader.names) {
    const t = await reader.read(n);
    out[n] = { shape: t.shape, data: t.data as Float32Array };
  }
  return out;
}

beforeAll(async () => {
  await startGpu();
  root = mkdtempSync(join(tmpdir(), "webtune-hub-"));
  for (const name of goldenNames("tiny"))
    cpSync(`${GOLDEN_DIR}tiny/${name}`, join(root, ORG, name, "main"), {
      recursive: true,
    });
  hub = await startHubServer(root);
});
afterAll(async () => {
  await hub?.close();
  disposeRuntime();
});

async function logitsOf(
  id: string,
  cache: string,
  onProgress?: (e: DownloadProgress) => void,
) {
  const model = await loadModel(id, { hubUrl: hub.url, cache, onProgress });
  const golden = readGolden(`${GOLDEN_DIR}tiny/${id.split("/")[1]}`);
  const logits = model.logits(golden.input_ids);
  const values = (await logits.data()) as Float32Array;
  logits.dispose();
  model.dispose();
  return { values, golden };
}

describe("loadModel from a hub-shaped HTTP server", () => {
  for (const name of goldenNames("tiny")) {
    it(`${name}: matches the golden logits, and loads again from the cache with no request`, async (ctx) => {
      await needGpu(ctx);
      const cache = mkdtempSync(join(tmpdir(), "webtune-cache-"));
      const progress: DownloadProgress[] = [];
      const first = await logitsOf(`${ORG}/${name}`, cache, (e) =>
        progress.push(e),
      );
      expectClose(first.values, first.golden.logits, 1e-4, `${name} over HTTP`);
      const weights = progress.filter((e) => e.file === "model.safetensors");
      expect(weights.length).toBeGreaterThan(0);
      expect(weights.at(-1)!.loadedBytes).toBe(weights.at(-1)!.totalBytes);
      const requestsBefore = hub.requests.length;
      const second = await logitsOf(`${ORG}/${name}`, cache);
      expect(hub.requests.length, "requests on a warm cache").toBe(
        requestsBefore,
      );
      expect(Array.from(second.values)).toEqual(Array.from(first.values));
    });
  }

  it("loads a sharded checkpoint through model.safetensors.index.json", async (ctx) => {
    await needGpu(ctx);
    const src = `${GOLDEN_DIR}tiny/llama_untied`;
    const tensors = await tensorsOf(src);
    const names = Object.keys(tensors);
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const files: Record<string, Uint8Array | string> = {
      "config.json": readFileSync(`${src}/config.json`, "utf8"),
    };
    const weightMap: Record<string, string> = {};
    shards.forEach((group, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      files[file] = writeSafetensors(
        Object.fromEntries(
          group.map((n) => [n, { dtype: "F32" as const, ...tensors[n]! }]),
        ),
      );
      for (const n of group) weightMap[n] = file;
    });
    files["model.safetensors.index.json"] = JSON.stringify({
      metadata: {},
      weight_map: weightMap,
    });
    const id = publish("llama-sharded", files);
    const model = await loadModel(id, { hubUrl: hub.url, cache: false });
    const golden = readGolden(src);
    const logits = model.logits(golden.input_ids);
    expectClose(await logits.data(), golden.logits, 1e-4, "sharded");
    tf.dispose(logits);
    model.dispose();
  });

  it("loads BF16 weights exactly as the same values stored in F32", async (ctx) => {
    await needGpu(ctx);
    const src = `${GOLDEN_DIR}tiny/qwen2`;
    const tensors = await tensorsOf(src);
    const config = readFileSync(`${src}/config.json`, "utf8");
    const rounded = Object.fromEntries(
      Object.entries(tensors).map(([n, t]) => [
        n,
        { shape: t.shape, data: bf16BitsToF32(f32ToBf16Bits(t.data)) },
      ]),
    );
    const bf16 = publish("qwen2-bf16", {
      "config.json": config,
      "model.safetensors": writeSafetensors(
        Object.fromEntries(
          Object.entries(rounded).map(([n, t]) => [
            n,
            { dtype: "BF16" as const, ...t },
          ]),
        ),
      ),
    });
    const f32 = publish("qwen2-bf16-as-f32", {
      "config.json": config,
      "model.safetensors": writeSafetensors(
        Object.fromEntries(
          Object.entries(rounded).map(([n, t]) => [
            n,
            { dtype: "F32" as const, ...t },
          ]),
        ),
      ),
    });
    const ids = readGolden(src).input_ids;
    const run = async (id: string) => {
      const model = await loadModel(id, { hubUrl: hub.url, cache: false });
      const l = model.logits(ids);
      const v = Array.from(await l.data());
      l.dispose();
      model.dispose();
      return v;
    };
    expect(await run(bf16)).toEqual(await run(f32));
  });

  it("refuses an unsupported model_type before requesting any weight", async () => {
    const id = publish("bert-like", {
      "config.json": JSON.stringify({ model_type: "bert" }),
      "model.safetensors": writeSafetensors({
        w: { dtype: "F32", shape: [1], data: new Float32Array(1) },
      }),
    });
    const before = hub.requests.length;
    await expect(
      loadModel(id, { hubUrl: hub.url, cache: false }),
    ).rejects.toThrow(ConfigError);
    const after = hub.requests.slice(before);
    expect(after.some((r) => r.path.endsWith("/config.json"))).toBe(true);
    expect(after.some((r) => r.path.includes("safetensors"))).toBe(false);
  });
});

/**
 * Properties every architecture must have, on small random models: the KV cache changes nothing, the chunked
 * loss equals cross-entropy computed from full logits, chunked embeddings equal whole ones, and bad configs or
 * checkpoints fail clearly without leaving tensors behind. Golden numerics are in golden.test.ts.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  disposeRuntime,
  FormatError,
  ShapeError,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import type { CausalLM } from "../../../packages/core/src/models/causal_lm.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectClose } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

const BIG = 1 << 30;
beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

function load(type: string, maxBindingBytes = BIG): Promise<CausalLM> {
  const raw = TINY_CONFIGS[type]!;
  return resolveConfig(raw, `${type}/config.json`).load(
    randomWeightSource(raw, `${type} (random)`),
    maxBindingBytes,
  );
}

const ids = [
  [5, 17, 3, 88, 41, 9, 60, 2],
  [70, 1, 1, 33, 12, 96, 7, 45],
];

/** Mean next-token cross-entropy from full logits, in float64 on the CPU. */
function crossEntropy(
  logits: Float32Array,
  V: number,
  rows: number[][],
): number {
  let total = 0;
  let count = 0;
  rows.forEach((row, b) => {
    for (let t = 0; t + 1 < row.length; t++) {
      const base = (b * row.length + t) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[base + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[base + v]! - max);
      total += max + Math.log(sum) - logits[base + row[t + 1]!]!;
      count++;
    }
  });
  return total / count;
}

describe.each(Object.keys(TINY_CONFIGS))("%s", (type) => {
  it("gives the same logits with the KV cache, token by token, as in one pass", async (ctx) => {
    await needGpu(ctx);
    const model = await load(type);
    const full = await model.logits([ids[0]!]).data();
    const cache = model.newCache();
    const steps = [ids[0]!.slice(0, 3), ...ids[0]!.slice(3).map((id) => [id])];
    const parts: Float32Array[] = [];
    for (const s of steps) {
      const l = model.logits([s], cache);
      parts.push((await l.data()) as Float32Array);
      l.dispose();
    }
    const incremental = Float32Array.from(parts.flatMap((p) => Array.from(p)));
    expectClose(incremental, full, 1e-5, `${type} cached vs full`);
    cache.dispose();
    model.dispose();
  });

  it("computes the loss chunk by chunk exactly as cross-entropy over the full logits", async (ctx) => {
    await needGpu(ctx);
    const model = await load(type);
    const logits = (await model.logits(ids).data()) as Float32Array;
    const loss = (await model.loss(ids).data())[0]!;
    expect(Math.abs(loss - crossEntropy(logits, 97, ids)) / loss).toBeLessThan(
      1e-5,
    );
    // Ignored labels (-100) drop out of the mean.
    const labels = ids.map((row) => row.map((id, t) => (t < 4 ? -100 : id)));
    const masked = (await model.loss(ids, labels).data())[0]!;
    const tail = ids.map((row) => row.slice(3));
    const tailLogits = new Float32Array(2 * 5 * 97);
    for (let b = 0; b < 2; b++)
      tailLogits.set(
        logits.subarray((b * 8 + 3) * 97, (b * 8 + 8) * 97),
        b * 5 * 97,
      );
    expect(
      Math.abs(masked - crossEntropy(tailLogits, 97, tail)) / masked,
    ).toBeLessThan(1e-5);
    model.dispose();
  });

  it("splits a large embedding into binding-sized chunks without changing any logit", async (ctx) => {
    await needGpu(ctx);
    const whole = await load(type);
    const expected = await whole.logits(ids).data();
    whole.dispose();
    // 30 rows of 32 floats per chunk: 4 chunks for 97 tokens.
    const chunked = await load(type, 30 * 32 * 4);
    expectClose(
      await chunked.logits(ids).data(),
      expected,
      1e-5,
      `${type} chunked`,
    );
    chunked.dispose();
  });

  it("computes the loss a block of rows at a time when the logits outgrow a binding, with the same value", async (ctx) => {
    await needGpu(ctx);
    // 64 loss rows; with 30-row chunks of 32 floats, one binding holds the logits of 32 rows: two blocks.
    const long = Array.from({ length: 4 }, (_, b) =>
      Array.from({ length: 17 }, (_, t) => (b * 31 + t * 7) % 97),
    );
    const whole = await load(type);
    const expected = (await whole.loss(long).data())[0]!;
    whole.dispose();
    const blocked = await load(type, 30 * 32 * 4);
    const head = (blocked as unknown as { head: { rowsPerLogitBlock: number } })
      .head;
    expect(head.rowsPerLogitBlock).toBe(32);
    const loss = (await blocked.loss(long).data())[0]!;
    expect(Math.abs(loss - expected) / expected).toBeLessThan(1e-5);
    blocked.dispose();
  });

  it("frees every weight on dispose", async (ctx) => {
    await needGpu(ctx);
    const before = tf.memory().numTensors;
    const model = await load(type);
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("bad configs and checkpoints", () => {
  it("rejects an unsupported model_type from config.json alone, listing the supported ones", () => {
    expect(() =>
      resolveConfig({ model_type: "bert" }, "x/config.json"),
    ).toThrow(ConfigError);
    expect(() =>
      resolveConfig({ model_type: "bert" }, "x/config.json"),
    ).toThrow(
      /x\/config\.json: model_type "bert" is not supported\. webtune supports gpt2, llama, qwen2, gemma3_text/,
    );
  });

  it("names the config field that is wrong", () => {
    expect(() =>
      resolveConfig(
        { ...TINY_CONFIGS["llama"], hidden_size: -4 },
        "m/config.json",
      ),
    ).toThrow(
      /m\/config\.json: "hidden_size" must be a positive integer, got -4/,
    );
    expect(() =>
      resolveConfig(
        {
          ...TINY_CONFIGS["llama"],
          rope_scaling: { rope_type: "yarn", factor: 4 },
        },
        "m/config.json",
      ),
    ).toThrow(
      /rope scaling type "yarn" is not supported; webtune supports default, linear, llama3/,
    );
  });

  it("rejects a checkpoint tensor of the wrong shape, and frees what it had loaded", async (ctx) => {
    await needGpu(ctx);
    const raw = TINY_CONFIGS["llama"]!;
    const source = randomWeightSource(raw, "bad.safetensors");
    const shapeOf = source.shape;
    source.shape = async (name) =>
      name === "model.layers.1.mlp.up_proj.weight" ? [64, 31] : shapeOf(name);
    const before = tf.memory().numTensors;
    const loading = resolveConfig(raw, "m/config.json").load(source, BIG);
    await expect(loading).rejects.toThrow(ShapeError);
    await expect(
      resolveConfig(raw, "m/config.json").load(source, BIG),
    ).rejects.toThrow(
      /bad\.safetensors: tensor "model\.layers\.1\.mlp\.up_proj\.weight" is \[64, 31\], but config\.json implies \[64, 32\]/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects a checkpoint with a missing tensor, and frees what it had loaded", async (ctx) => {
    await needGpu(ctx);
    const raw = TINY_CONFIGS["gemma3_text"]!;
    const source = randomWeightSource(raw, "partial.safetensors");
    const shapeOf = source.shape;
    source.shape = async (name) =>
      name === "model.norm.weight" ? undefined : shapeOf(name);
    const before = tf.memory().numTensors;
    await expect(
      resolveConfig(raw, "m/config.json").load(source, BIG),
    ).rejects.toThrow(FormatError);
    await expect(
      resolveConfig(raw, "m/config.json").load(source, BIG),
    ).rejects.toThrow(
      /partial\.safetensors: tensor "model\.norm\.weight" is missing/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects token ids outside the vocabulary before any GPU work", async (ctx) => {
    await needGpu(ctx);
    const model = await load("gpt2");
    expect(() => model.logits([[1, 2, 97]])).toThrow(
      /token id 97 at \[0, 2\] is outside the vocabulary \[0, 97\)/,
    );
    expect(() => model.logits([[1, 2], [3]])).toThrow(/rows of equal length/);
    model.dispose();
  });

  it("rejects labels that are neither -100 nor a token id, naming the position, with no tensor left", async (ctx) => {
    await needGpu(ctx);
    const model = await load("gpt2");
    const before = tf.memory().numTensors;
    expect(() => model.loss([[1, 2, 3]], [[-100, 2, 97]])).toThrow(
      /label 97 at \[0, 2\] is neither -100 \(ignored\) nor a token id in \[0, 97\)/,
    );
    expect(() => model.loss([[1, 2, 3]], [[1, -1, 3]])).toThrow(
      /label -1 at \[0, 1\]/,
    );
    expect(tf.memory().numTensors).toBe(before);
    const ok = model.loss([[1, 2, 3]], [[-100, 2, 96]]);
    expect(Number.isFinite((await ok.data())[0])).toBe(true);
    ok.dispose();
    model.dispose();
  });
});

/**
 * Generation on a small random model: greedy is the argmax chain of full forward passes, seeded sampling is
 * reproducible, and generation stops at EOS, at a stop string, at maxNewTokens, or when its signal is aborted.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, disposeRuntime } from "@webtune/core";
import {
  generate,
  greedyBatch,
  type TextCodec,
} from "../../../packages/core/src/models/generate.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import {
  argmax,
  sampleNext,
  seededRandom,
  validateSampling,
} from "../../../packages/core/src/models/sampling.js";
import type { CausalLM } from "../../../packages/core/src/models/causal_lm.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

/** Token id i is the character with code 32 + i: enough of a tokenizer to test stop strings. */
const charCodec: TextCodec = {
  encode: (text) => Array.from(text, (c) => c.charCodeAt(0) - 32),
  decode: (ids) => String.fromCharCode(...ids.map((i) => i + 32)),
};

let model: CausalLM;
beforeAll(async () => {
  const info = await startGpu();
  if (!info) return;
  const raw = { ...TINY_CONFIGS["llama"]!, eos_token_id: 96 };
  model = await resolveConfig(raw, "llama").load(
    randomWeightSource(raw, "llama (random)"),
    1 << 30,
  );
});
afterAll(() => {
  model?.dispose();
  disposeRuntime();
});

const prompt = [33, 34, 35, 10, 52];

describe("greedyBatch", () => {
  it("gives each prompt the tokens generate gives it at temperature 0: mixed lengths, own budgets, EOS", async (ctx) => {
    await needGpu(ctx);
    const prompts = [
      [33, 34, 35, 10, 52],
      [1, 2, 3, 4, 5],
      [60, 61, 62],
      [7, 8, 9, 10, 11],
      [40, 41, 42],
      [90],
    ];
    const budgets = [6, 3, 5, 0, 4, 6];
    const single = async (eos: number[]) =>
      Promise.all(
        prompts.map(async (p, i) =>
          budgets[i] === 0
            ? { ids: [], stopReason: "length" }
            : await generate(model, p, undefined, {
                maxNewTokens: budgets[i]!,
                eosTokenIds: eos,
              }).then(({ ids, stopReason }) => ({ ids, stopReason })),
        ),
      );
    // Rows of one length go through one batch (batch size 2 also splits them); no EOS, then an EOS that some
    // continuations produce, so rows stop at different steps.
    const plain = await single([]);
    expect(await greedyBatch(model, prompts, budgets, [], 2)).toEqual(plain);
    const eos = [...new Set(plain.flatMap((r) => r.ids.slice(1, 2)))];
    expect(eos.length).toBeGreaterThan(0);
    const stopped = await single(eos);
    expect(stopped.some((r) => r.stopReason === "eos")).toBe(true);
    expect(await greedyBatch(model, prompts, budgets, eos)).toEqual(stopped);
  });
});

describe("generate", () => {
  it("greedy decoding follows the argmax of full forward passes", async (ctx) => {
    await needGpu(ctx);
    const result = await generate(model, prompt, undefined, {
      maxNewTokens: 6,
      eosTokenIds: [],
    });
    const expected: number[] = [];
    let seq = [...prompt];
    for (let i = 0; i < 6; i++) {
      const logits = model.logits([seq]);
      const last = (await logits.data()).slice(
        (seq.length - 1) * 97,
        seq.length * 97,
      );
      logits.dispose();
      expected.push(argmax(last));
      seq = [...seq, expected.at(-1)!];
    }
    expect(result.ids).toEqual(expected);
    expect(result.stopReason).toBe("length");
  });

  it("seeded sampling is reproducible, and another seed gives another continuation", async (ctx) => {
    await needGpu(ctx);
    const opts = {
      maxNewTokens: 12,
      temperature: 1.5,
      topK: 50,
      topP: 0.95,
      eosTokenIds: [],
    };
    const a = await generate(model, prompt, undefined, { ...opts, seed: 7 });
    const b = await generate(model, prompt, undefined, { ...opts, seed: 7 });
    const c = await generate(model, prompt, undefined, { ...opts, seed: 8 });
    expect(a.ids).toHaveLength(12);
    expect(b.ids).toEqual(a.ids);
    expect(c.ids).not.toEqual(a.ids);
  });

  it("stops before the next step when its signal is aborted, with the reason, leaking nothing", async (ctx) => {
    await needGpu(ctx);
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const seen: number[] = [];
    const run = generate(model, prompt, undefined, {
      maxNewTokens: 20,
      eosTokenIds: [],
      signal: controller.signal,
      onToken: ({ id }) => {
        seen.push(id);
        if (seen.length === 3) controller.abort(new Error("client left"));
      },
    });
    await expect(run).rejects.toThrow("client left");
    expect(seen).toHaveLength(3);
    const already = new AbortController();
    already.abort(new Error("never started"));
    await expect(
      generate(model, prompt, undefined, { signal: already.signal }),
    ).rejects.toThrow("never started");
    expect(tf.memory().numTensors).toBe(before);
  });

  it("stops at EOS without emitting it", async (ctx) => {
    await needGpu(ctx);
    const greedy = await generate(model, prompt, undefined, {
      maxNewTokens: 5,
      eosTokenIds: [],
    });
    const eos = greedy.ids[2]!;
    const result = await generate(model, prompt, undefined, {
      maxNewTokens: 5,
      eosTokenIds: [eos],
    });
    expect(result.stopReason).toBe("eos");
    expect(result.ids).toEqual(greedy.ids.slice(0, greedy.ids.indexOf(eos)));
  });

  it("stops at a stop string, cuts the text before it, and streams every token", async (ctx) => {
    await needGpu(ctx);
    const free = await generate(model, prompt, charCodec, {
      maxNewTokens: 8,
      eosTokenIds: [],
    });
    const stop = free.text.slice(3, 5);
    const streamed: string[] = [];
    const result = await generate(model, prompt, charCodec, {
      maxNewTokens: 8,
      eosTokenIds: [],
      stop: [stop],
      onToken: (t) => streamed.push(t.text),
    });
    expect(result.stopReason).toBe("stop");
    expect(result.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    expect(streamed.at(-1)).toBe(result.text);
    expect(streamed.length).toBe(result.ids.length);
  });

  it("leaves no tensors behind", async (ctx) => {
    await needGpu(ctx);
    const before = tf.memory().numTensors;
    await generate(model, prompt, undefined, {
      maxNewTokens: 4,
      temperature: 0.8,
      seed: 1,
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects bad options clearly", async (ctx) => {
    await needGpu(ctx);
    await expect(
      generate(model, prompt, undefined, { topP: 0 }),
    ).rejects.toThrow(ConfigError);
    await expect(
      generate(model, prompt, undefined, { topP: 0 }),
    ).rejects.toThrow(/topP must be in \(0, 1\], got 0/);
    await expect(generate(model, [], undefined, {})).rejects.toThrow(
      /the prompt is empty/,
    );
    await expect(
      generate(model, prompt, undefined, { stop: ["x"] }),
    ).rejects.toThrow(/stop strings need a tokenizer/);
  });
});

describe("sampling", () => {
  const logits = Float32Array.from([1, 3, 2, -1, 0.5]);
  it("applies HF's repetition penalty: divides positive scores, multiplies negative ones", () => {
    const o = validateSampling({ repetitionPenalty: 4 });
    expect(sampleNext(logits, [1], o, Math.random)).toBe(2); // 3/4 < 2
    expect(sampleNext(Float32Array.from([-1, -2]), [0], o, Math.random)).toBe(
      1,
    ); // -1·4 < -2
  });
  it("top-k 1 and a tiny top-p are greedy whatever the draw", () => {
    for (const draw of [0, 0.5, 0.999]) {
      expect(
        sampleNext(
          logits,
          [],
          validateSampling({ temperature: 1, topK: 1 }),
          () => draw,
        ),
      ).toBe(1);
      expect(
        sampleNext(
          logits,
          [],
          validateSampling({ temperature: 1, topP: 0.01 }),
          () => draw,
        ),
      ).toBe(1);
    }
  });
  it("draws tokens in proportion to softmax(logits / temperature)", () => {
    const o = validateSampling({ temperature: 2 });
    const random = seededRandom(3);
    const counts = new Array(5).fill(0);
    for (let i = 0; i < 20000; i++) counts[sampleNext(logits, [], o, random)]++;
    const z = Array.from(logits, (l) => Math.exp(l / 2));
    const total = z.reduce((a, b) => a + b, 0);
    counts.forEach((c, i) =>
      expect(Math.abs(c / 20000 - z[i]! / total)).toBeLessThan(0.015),
    );
  });
});

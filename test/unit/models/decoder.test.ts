/**
 * The compiled decoding path against the tape path (tfjs ops, a cache grown by concatenation), on small random
 * models of every architecture that decodes in a compiled graph: the prompt's prefill and then one token at a time,
 * the same last-position logits (normwise 1e-4 relative to the row's largest logit: two implementations of the
 * same f32 maths, summing in different orders) and the same greedy tokens, also when only the GPU's argmax comes
 * back; with a LoRA or DoRA adapter too. Decoding
 * leaves tfjs's tensor count and the engine's buffers where they were, and refuses a run past its cache.
 *
 * Letters: B rows, P prompt tokens, V vocabulary.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  gpuDevice,
  loadModel,
  LoraModel,
  ShapeError,
  type LoraConfigInput,
} from "@webtune/core";
import { liveEngineBuffers } from "../../../packages/core/src/runtime/memory.js";
import { tokenDecoder } from "../../../packages/core/src/models/decoder.js";
import { recordDecode } from "../../../packages/core/src/models/decode_step.js";
import { StepBuilder } from "../../../packages/core/src/engine/builder.js";
import {
  graphLimits,
  StepGraph,
} from "../../../packages/core/src/engine/graph.js";
import { KvCache } from "../../../packages/core/src/engine/kv_cache.js";
import { greedyBatch } from "../../../packages/core/src/models/generate.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import type { CausalLM } from "../../../packages/core/src/models/causal_lm.js";
import { argmax } from "../../../packages/core/src/models/sampling.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectNear } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

const RTOL = 1e-4;
const ARCHITECTURES = ["llama", "qwen2", "gpt2", "gemma3_text"];

const DEMO = "demo/public/models/webtune-demo-base";
/** Gemma 3 with both softcaps on (the tiny config has neither): attention scores and the final logits. */
const SOFTCAPPED = "gemma3_text, softcapped";

const models = new Map<string, CausalLM>();
beforeAll(async () => {
  const info = await startGpu();
  if (!info) return;
  const configs: [string, string, Record<string, unknown>][] = [
    ...ARCHITECTURES.map((a): [string, string, Record<string, unknown>] => [
      a,
      a,
      TINY_CONFIGS[a]!,
    ]),
    [
      SOFTCAPPED,
      "gemma3_text",
      {
        ...TINY_CONFIGS["gemma3_text"]!,
        attn_logit_softcapping: 2,
        final_logit_softcapping: 3,
      },
    ],
  ];
  for (const [name, arch, raw] of configs)
    models.set(
      name,
      await resolveConfig(raw, arch).load(
        randomWeightSource(raw, `${name} (random)`),
        1 << 30,
      ),
    );
});
afterAll(() => {
  for (const m of models.values()) m.dispose();
  disposeRuntime();
});

/** Logits of both paths for `prompts` (equal lengths), then `steps` greedy tokens fed back. */
async function bothPaths(lm: CausalLM, prompts: number[][], steps: number) {
  const S = prompts[0]!.length + steps;
  const engine = tokenDecoder(lm, prompts.length, S, "engine");
  const tape = tokenDecoder(lm, prompts.length, S, "tape");
  // Greedy on the GPU: only each row's argmax comes back.
  const greedy = tokenDecoder(lm, prompts.length, S, "engine");
  const V = lm.dims.vocabSize;
  const tokens: number[][] = [];
  try {
    let input = prompts;
    for (let step = 0; step < steps; step++) {
      const [a, b] = [await engine.next(input), await tape.next(input)];
      expectNear(a, b, RTOL, `step ${step} logits`);
      const next = input.map((_, r) => argmax(b.subarray(r * V, (r + 1) * V)));
      expect(
        input.map((_, r) => argmax(a.subarray(r * V, (r + 1) * V))),
      ).toEqual(next);
      expect(await greedy.nextGreedy(input)).toEqual(next);
      tokens.push(next);
      input = next.map((id) => [id]);
    }
  } finally {
    engine.dispose();
    tape.dispose();
    greedy.dispose();
  }
  return tokens;
}

describe("compiled decoding", () => {
  for (const arch of [...ARCHITECTURES, SOFTCAPPED])
    it(`gives the tape path's logits and tokens, prefill then one token a step (${arch})`, async (ctx) => {
      await needGpu(ctx);
      const lm = models.get(arch)!;
      await bothPaths(lm, [[5, 17, 33, 2, 61, 8, 40]], 12);
      await bothPaths(
        lm,
        [
          [1, 2, 3],
          [50, 60, 70],
          [9, 9, 9],
        ],
        10,
      );
    });

  for (const dora of [false, true])
    it(`decodes with the ${dora ? "DoRA" : "LoRA"} adapter that applies now, as the tape path does (demo model)`, async (ctx) => {
      await needGpu(ctx);
      const model = await loadModel(DEMO, { cache: false });
      try {
        const peft = new LoraModel(model);
        const config: LoraConfigInput = {
          r: 4,
          loraAlpha: 8,
          targetModules: "all-linear",
          initLoraWeights: false,
          useDora: dora,
        };
        peft.addAdapter("default", config);
        const prompt = [[11, 48, 85, 122, 159, 196, 233, 270]];
        const tuned = await bothPaths(model.lm, prompt, 8);
        // The adapter moves the tokens: agreeing with it is not agreeing with the base model.
        const base = await peft.withAdaptersDisabled(() =>
          bothPaths(model.lm, prompt, 8),
        );
        expect(tuned).not.toEqual(base);
      } finally {
        model.dispose();
      }
    });

  it("runs q, k and v (and gate and up) as one projection without an adapter, and apart with one (llama, qwen2's biases)", async (ctx) => {
    await needGpu(ctx);
    for (const arch of ["llama", "qwen2"]) {
      const lm = models.get(arch)!;
      const labels = () => {
        const cache = new KvCache(gpuDevice(), {
          layers: lm.dims.numLayers,
          B: 1,
          G: 2,
          S: 8,
          D: 8,
        });
        try {
          const g = new StepGraph(graphLimits(gpuDevice()));
          recordDecode(
            new StepBuilder(g, true, "eval"),
            lm.stepArchitecture()!,
            1,
            1,
            cache,
          );
          return g.dispatches.map((d) => d.label).join("\n");
        } finally {
          cache.dispose();
        }
      };
      const base = labels();
      expect(base).toMatch(/layers\.0\.self_attn\.qkv_proj/);
      expect(base).not.toMatch(/layers\.0\.self_attn\.q_proj/);
      expect(base).toMatch(/layers\.0\.mlp\.gate_up_proj/);
    }
    const model = await loadModel(DEMO, { cache: false });
    try {
      new LoraModel(model).addAdapter("default", {
        r: 2,
        targetModules: ["q_proj", "up_proj"],
      });
      const cache = new KvCache(gpuDevice(), {
        layers: model.lm.dims.numLayers,
        B: 1,
        G: 2,
        S: 8,
        D: 32,
      });
      try {
        const g = new StepGraph(graphLimits(gpuDevice()));
        recordDecode(
          new StepBuilder(g, true, "eval"),
          model.lm.stepArchitecture()!,
          1,
          1,
          cache,
        );
        const labels = g.dispatches.map((d) => d.label).join("\n");
        expect(labels).toMatch(/layers\.0\.self_attn\.q_proj/);
        expect(labels).not.toMatch(/qkv_proj|gate_up_proj/);
        // Each norm once per layer, whichever way the projections went.
        expect(
          labels.match(/^model\.layers\.0\.post_attention_layernorm$/gm),
        ).toHaveLength(1);
      } finally {
        cache.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it("leaves tfjs's tensors and the engine's buffers where they were", async (ctx) => {
    await needGpu(ctx);
    const lm = models.get("llama")!;
    await bothPaths(lm, [[4, 5, 6]], 3);
    const tensors = tf.memory().numTensors;
    const buffers = liveEngineBuffers();
    await bothPaths(lm, [[4, 5, 6]], 8);
    await greedyBatch(
      lm,
      [
        [1, 2],
        [3, 4],
        [5, 6, 7],
      ],
      [5, 5, 5],
      [],
    );
    expect(tf.memory().numTensors).toBe(tensors);
    expect(liveEngineBuffers()).toBe(buffers);
  });

  it("refuses tokens past its cache, naming the positions", async (ctx) => {
    await needGpu(ctx);
    const d = tokenDecoder(models.get("llama")!, 1, 4, "engine");
    try {
      await d.next([[1, 2, 3]]);
      await expect(d.next([[1, 2]])).rejects.toThrow(ShapeError);
      await expect(d.next([[1, 2]])).rejects.toThrow(
        /3 cached \+ 2 new tokens is over the cache's 4 positions/,
      );
    } finally {
      d.dispose();
    }
  });
});

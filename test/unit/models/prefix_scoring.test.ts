/**
 * Label scoring with the prompt run once (models/prefix_scoring.ts) against scoring each prompt + label as a
 * whole row through tfjs (`rowNlls`, the path evaluation took before): prompts of several lengths (some equal, so
 * they share a batch), labels of 1 to 4 tokens, one label and several, on the demo model with a LoRA adapter and
 * on a tiny GPT-2 (learned positions read at the prompt's length). The NLLs agree within 1e-4 relative (two
 * implementations of the same f32 maths), the predicted labels are the same, and the work is one pass of each
 * prompt plus k short continuations.
 *
 * Letters: P prompt tokens, k labels, L a label's tokens.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, loadModel, LoraModel } from "@webtune/core";
import type { CausalLM } from "../../../packages/core/src/models/causal_lm.js";
import { prefixLabelNlls } from "../../../packages/core/src/models/prefix_scoring.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { liveEngineBuffers } from "../../../packages/core/src/runtime/memory.js";
import {
  rowNlls,
  type Scorer,
} from "../../../packages/core/src/train/evaluate.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

const RTOL = 1e-4;
const DEMO = "demo/public/models/webtune-demo-base";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** The whole-row NLL of each (prompt, label): k·(P + L) tokens per prompt. */
async function wholeRows(
  model: Scorer,
  prompts: number[][],
  labels: number[][],
) {
  const rows = prompts.flatMap((p) =>
    labels.map((l) => ({
      inputIds: [...p, ...l],
      labels: [...p.map(() => -100), ...l],
    })),
  );
  const out = await rowNlls(model, rows);
  return prompts.map((_, e) =>
    labels.map((_, j) => out[e * labels.length + j]!.nll),
  );
}

async function expectAgreement(
  model: Scorer,
  lm: CausalLM,
  prompts: number[][],
  labels: number[][],
) {
  const before = tf.memory().numTensors;
  const shared = (await prefixLabelNlls(lm, prompts, labels))!;
  expect(tf.memory().numTensors).toBe(before);
  const whole = await wholeRows(model, prompts, labels);
  shared.nll.forEach((row, e) =>
    row.forEach((nll, j) => {
      const want = whole[e]![j]!;
      expect(
        Math.abs(nll - want),
        `prompt ${e}, label ${j}: ${nll} vs ${want}`,
      ).toBeLessThanOrEqual(RTOL * Math.max(1, Math.abs(want)));
    }),
  );
  const argmin = (xs: number[]) => xs.indexOf(Math.min(...xs));
  expect(shared.nll.map(argmin)).toEqual(whole.map(argmin));
  const Lmax = Math.max(...labels.map((l) => l.length));
  const work = prompts.reduce(
    (n, p) => n + p.length + (Lmax > 1 ? labels.length * (Lmax - 1) : 0),
    0,
  );
  expect(shared.tokens).toBe(work);
  const rowsWork = prompts.reduce(
    (n, p) => n + labels.reduce((m, l) => m + p.length + l.length, 0),
    0,
  );
  expect(shared.tokens).toBeLessThan(rowsWork);
}

const prompts = [
  [11, 48, 85, 122, 159, 196, 233],
  [7, 7, 300, 41],
  [500, 501, 502, 503, 504, 505, 506],
  [1, 2, 3, 4],
  [99, 98, 97, 96, 95, 94, 93],
  [42],
];

describe("label scoring with a shared prompt", () => {
  it("gives the whole rows' NLLs and labels, the prompt run once (demo model, LoRA)", async (ctx) => {
    await needGpu(ctx);
    const model = await loadModel(DEMO, { cache: false });
    try {
      const peft = new LoraModel(model);
      peft.addAdapter("default", {
        r: 4,
        loraAlpha: 8,
        targetModules: "all-linear",
        initLoraWeights: false,
      });
      await expectAgreement(peft, model.lm, prompts, [
        [17],
        [900, 2],
        [33, 34, 35, 2],
        [1200, 2],
      ]);
      await expectAgreement(peft, model.lm, prompts, [[64, 65, 2]]);
      await expectAgreement(peft, model.lm, prompts, [[64], [70]]);
    } finally {
      model.dispose();
    }
  });

  it("refuses an empty label, an empty prompt and a prompt + label past the model's positions, naming them", async (ctx) => {
    await needGpu(ctx);
    const raw = TINY_CONFIGS["gpt2"]!; // 64 positions
    const lm = await resolveConfig(raw, "gpt2").load(
      randomWeightSource(raw, "gpt2 (random)"),
      1 << 30,
    );
    try {
      const before = tf.memory().numTensors;
      const buffers = liveEngineBuffers();
      await expect(prefixLabelNlls(lm, [[1, 2]], [[3], []])).rejects.toThrow(
        /a label has no tokens/,
      );
      await expect(prefixLabelNlls(lm, [[1, 2], []], [[3]])).rejects.toThrow(
        /prompt 1 has no tokens/,
      );
      const long = Array.from({ length: 63 }, (_, i) => i % 90);
      await expect(
        prefixLabelNlls(lm, [[1, 2], long], [[3, 4, 5]]),
      ).rejects.toThrow(
        /prompt 1 has 63 tokens; with a label of 3 that is over the model's 64 positions/,
      );
      expect(tf.memory().numTensors).toBe(before);
      expect(liveEngineBuffers()).toBe(buffers);
    } finally {
      lm.dispose();
    }
  });

  it("reads learned positions at the prompt's length (tiny GPT-2)", async (ctx) => {
    await needGpu(ctx);
    const raw = TINY_CONFIGS["gpt2"]!;
    const lm = await resolveConfig(raw, "gpt2").load(
      randomWeightSource(raw, "gpt2 (random)"),
      1 << 30,
    );
    try {
      const scorer: Scorer = {
        dims: lm.dims,
        logits: (ids) => lm.logits(ids),
        loss: (ids, labels) => lm.loss(ids, labels),
        generate: () => Promise.reject(new Error("unused")),
        greedyBatch: () => Promise.reject(new Error("unused")),
      };
      const small = prompts.map((p) => p.map((id) => id % 90));
      await expectAgreement(scorer, lm, small, [[5], [6, 7], [8, 9, 10]]);
    } finally {
      lm.dispose();
    }
  });
});

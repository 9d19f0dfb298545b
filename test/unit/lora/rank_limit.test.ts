/**
 * addAdapter refuses a rank above min(in, out) of a targeted layer (from r or from rank_pattern), and a rank that
 * is not a positive integer, with a ConfigError naming the module and its shape, before it allocates anything:
 * no tensor is left behind and no layer holds a partial adapter. On tfjs's CPU backend: no GPU needed.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import { LoraModel } from "../../../packages/core/src/lora/model.js";
import { Linear } from "../../../packages/core/src/models/layers.js";
import type { PretrainedModel } from "../../../packages/core/src/models/pretrained.js";

let previous: string;
beforeAll(async () => {
  previous = tf.getBackend();
  await tf.setBackend("cpu");
});
afterAll(async () => {
  if (previous) await tf.setBackend(previous);
});

/** Two layers: q_proj [in 16, out 8] (nn.Linear, stored [out, in]) and c_fc [in 8, out 24] (Conv1D, [in, out]). */
function tinyBase(): { base: PretrainedModel; dispose: () => void } {
  const linears = [
    new Linear("model.layers.0.q_proj", tf.zeros([8, 16]), null, "out_in"),
    new Linear("model.layers.0.c_fc", tf.zeros([8, 24]), null, "in_out"),
  ];
  const base = {
    source: "tiny (CPU)",
    linears: () => linears,
    lm: { otherModules: () => [] },
  } as unknown as PretrainedModel;
  return { base, dispose: () => linears.forEach((l) => l.weight.dispose()) };
}

function refusal(peft: LoraModel, config: Record<string, unknown>): Error {
  const before = tf.memory().numTensors;
  let error: unknown;
  try {
    peft.addAdapter("big", { r: 4, targetModules: "all-linear", ...config });
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect(tf.memory().numTensors).toBe(before);
  expect(peft.adapterNames).toEqual([]);
  expect(peft.base.linears().every((l) => l.adapter === undefined)).toBe(true);
  return error as Error;
}

describe("rank limits", () => {
  it("r = 1e6 is refused before anything is allocated, naming the module and its shape", () => {
    const { base, dispose } = tinyBase();
    const peft = new LoraModel(base);
    const error = refusal(peft, { r: 1e6 });
    expect(error.message).toMatch(
      /r = 1000000 is above the rank of module "model\.layers\.0\.q_proj", a Linear of shape \[in, out\] = \[16, 8\]: .*min\(16, 8\) = 8/,
    );
    expect(error.message).toMatch(/no expressiveness/);
    dispose();
  });

  it("the limit is per layer: a rank that fits one layer but not another, and rank_pattern values", () => {
    const { base, dispose } = tinyBase();
    const peft = new LoraModel(base);
    // 8 fits both (min(16, 8) = 8, min(8, 24) = 8); 9 fits neither.
    expect(refusal(peft, { r: 9 }).message).toMatch(
      /"model\.layers\.0\.q_proj"/,
    );
    expect(refusal(peft, { r: 2, rankPattern: { c_fc: 12 } }).message).toMatch(
      /rank_pattern\["c_fc"\] = 12 is above the rank of module "model\.layers\.0\.c_fc", .*\[in, out\] = \[8, 24\]/,
    );
    const before = tf.memory().numTensors;
    peft.addAdapter("ok", { r: 8, targetModules: "all-linear" });
    expect(tf.memory().numTensors).toBe(before + 4);
    peft.dispose();
    dispose();
  });

  it("a rank that is not a positive integer, in r or in rank_pattern", () => {
    const { base, dispose } = tinyBase();
    const peft = new LoraModel(base);
    for (const bad of [0, -2, 2.5, NaN, Infinity, "4", null])
      expect(refusal(peft, { r: bad }).message).toMatch(
        /r must be a positive integer/,
      );
    for (const bad of [0, -1, 1.5, "2"])
      expect(refusal(peft, { rankPattern: { q_proj: bad } }).message).toMatch(
        /rank_pattern\["q_proj"\] must be a positive integer/,
      );
    dispose();
  });
});

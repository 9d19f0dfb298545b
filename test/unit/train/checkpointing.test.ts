/**
 * Activation checkpointing is a feature of the compiled step (models/step.ts): each block keeps only its input
 * and runs again before its backward pass. compiled_step.test.ts checks that its loss and gradients are the
 * plain step's to the bit on every architecture; here: its plan holds fewer activation bytes, the Trainer trains
 * to the same losses with it and restores the model's switch, and the tape (which has no checkpointing) refuses
 * it with a ConfigError that leaves nothing behind.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  disposeRuntime,
  gpuMemory,
  LoraModel,
  PretrainedModel,
  Trainer,
  type TrainEvent,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import type { TrainableModel } from "../../../packages/core/src/train/trainable.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { compileLora } from "../../helpers/session.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "../models/tiny_configs.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function load(layers?: number): Promise<PretrainedModel> {
  const raw = { ...TINY_CONFIGS["llama"]! };
  if (layers !== undefined) raw["num_hidden_layers"] = layers;
  const lm = await resolveConfig(raw, "llama/config.json").load(
    randomWeightSource(raw, "llama (random)"),
    1 << 30,
  );
  return new PretrainedModel(lm, undefined, raw, {}, "llama (random)");
}

/** Deterministic ids [B, T] in [0, V). */
function idsOf(B: number, T: number, V: number, seed: number): number[][] {
  const u = seededValues(B * T, seed);
  return Array.from({ length: B }, (_, b) =>
    Array.from({ length: T }, (_, t) =>
      Math.floor(((u[b * T + t]! + 1) / 2) * V),
    ),
  );
}

describe("activation checkpointing", () => {
  it("plans fewer activation bytes for an 8-layer Llama at 2×128 tokens", async (ctx) => {
    await needGpu(ctx);
    const model = await load(8);
    const peft = new LoraModel(model);
    peft.addAdapter("default", { r: 8, targetModules: "all-linear" });
    const ids = idsOf(2, 128, model.dims.vocabSize, 13);
    const planned = (on: boolean) => {
      peft.gradientCheckpointing = on;
      const session = compileLora(peft);
      const m = session.memoryPlan({ inputIds: ids, labels: ids });
      session.dispose();
      return m;
    };
    const off = planned(false);
    const on = planned(true);
    peft.gradientCheckpointing = false;
    console.log(
      `planned activation bytes: ${off.activations} without checkpointing, ${on.activations} with ` +
        `(${(on.activations / off.activations).toFixed(3)}×)`,
    );
    expect(on.state).toBe(off.state);
    expect(on.activations).toBeLessThan(0.5 * off.activations);
    peft.dispose();
    model.dispose();
  });

  it("trains to the same losses with gradientCheckpointing, and restores the model's setting", async (ctx) => {
    await needGpu(ctx);
    const model = await load();
    const V = model.dims.vocabSize;
    const train = [1, 2, 3].map((s) => {
      const inputIds = idsOf(2, 8, V, 20 + s);
      return { inputIds, labels: inputIds };
    });
    const run = async (gradientCheckpointing: boolean) => {
      const peft = new LoraModel(model);
      peft.addAdapter(
        "default",
        { r: 4, targetModules: "all-linear", loraDropout: 0.2 },
        { seed: 7 },
      );
      const events: TrainEvent[] = [];
      await new Trainer(peft, {
        learningRate: 1e-2,
        gradientCheckpointing,
        onEvent: (e) => events.push(e),
      }).train({ train });
      expect(peft.gradientCheckpointing).toBe(false);
      peft.dispose();
      return events.map((e) => e.loss);
    };
    const off = await run(false);
    const on = await run(true);
    expect(off).toHaveLength(3);
    // The same dispatches in another order of blocks: the losses agree to rounding.
    expectClose(on, off, 1e-5, "Trainer losses");
    model.dispose();
  });

  it("is refused on the tape with a ConfigError naming the executor, and leaves nothing behind", async (ctx) => {
    await needGpu(ctx);
    const model = await load();
    const peft = new LoraModel(model);
    peft.addAdapter("default", { r: 4, targetModules: ["q_proj"] });
    const ids = idsOf(2, 8, model.dims.vocabSize, 31);
    const tensors = tf.memory().numTensors;
    const bytes = gpuMemory().total;
    const trainer = new Trainer(peft, {
      executor: "tape",
      gradientCheckpointing: true,
    });
    await expect(
      trainer.train({ train: [{ inputIds: ids, labels: ids }] }),
    ).rejects.toThrow(ConfigError);
    expect(gpuMemory().total).toBe(bytes);
    await expect(
      trainer.train({ train: [{ inputIds: ids, labels: ids }] }),
    ).rejects.toThrow(
      /gradientCheckpointing runs in the compiled step.*executor: "tape".*turn gradientCheckpointing off/,
    );
    expect(peft.gradientCheckpointing).toBe(false);
    expect(peft.state.training).toBe(false);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(gpuMemory().total).toBe(bytes);
    peft.dispose();
    model.dispose();
  });

  it("refuses gradientCheckpointing for a model without the switch", () => {
    const model: TrainableModel = {
      state: { training: false, dropoutSeed: 0 },
      loss: () => tf.scalar(0),
      namedTrainableVariables: () => [],
    };
    expect(() => new Trainer(model, { gradientCheckpointing: true })).toThrow(
      /gradientCheckpointing needs a model with a gradientCheckpointing switch/,
    );
  });
});

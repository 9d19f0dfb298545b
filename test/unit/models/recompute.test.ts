/**
 * Activation checkpointing: with `gradientCheckpointing` on, every architecture gives the same loss and the same
 * gradients (LoRA with dropout and DoRA, and full fine-tuning) to 1e-5 relative, a lower peak of bytes during
 * value-and-grad, a flat tensor count, and the Trainer's losses are unchanged.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  FullFineTune,
  LoraModel,
  PretrainedModel,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { checkpointed } from "../../../packages/core/src/models/recompute.js";
import {
  Trainer,
  type TrainEvent,
} from "../../../packages/core/src/train/trainer.js";
import type { TrainableModel } from "../../../packages/core/src/train/trainable.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

/** Checkpointing only reorders the same float32 work: loss and gradients agree to 1e-5 relative. */
const RTOL = 1e-5;
const BIG = 1 << 30;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function load(
  type: string,
  options: { trainable?: boolean; layers?: number } = {},
): Promise<PretrainedModel> {
  const raw = { ...TINY_CONFIGS[type]! };
  if (options.layers !== undefined)
    raw[type === "gpt2" ? "n_layer" : "num_hidden_layers"] = options.layers;
  const lm = await resolveConfig(raw, `${type}/config.json`).load(
    randomWeightSource(raw, `${type} (random)`),
    BIG,
    { trainable: options.trainable ?? false },
  );
  return new PretrainedModel(lm, undefined, raw, {}, `${type} (random)`);
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

interface LossAndGrads {
  loss: number;
  grads: Float32Array[];
}

/** The loss and the gradient of every trainable variable, read back, with checkpointing on or off. */
async function lossAndGrads(
  model: TrainableModel,
  ids: number[][],
  checkpointing: boolean,
): Promise<LossAndGrads> {
  model.gradientCheckpointing = checkpointing;
  const vars = model.namedTrainableVariables().map((v) => v.variable);
  const { value, grads } = tf.variableGrads(() => model.loss(ids), vars);
  const out = {
    loss: (await value.data())[0]!,
    grads: await Promise.all(
      vars.map(async (v) => (await grads[v.name]!.data()) as Float32Array),
    ),
  };
  tf.dispose([value, ...Object.values(grads)]);
  model.gradientCheckpointing = false;
  return out;
}

function expectSameLossAndGrads(
  on: LossAndGrads,
  off: LossAndGrads,
  what: string,
): void {
  let worst = expectClose([on.loss], [off.loss], RTOL, `${what}: loss`);
  expect(on.grads.length).toBe(off.grads.length);
  on.grads.forEach(
    (g, i) =>
      (worst = Math.max(
        worst,
        expectClose(g, off.grads[i]!, RTOL, `${what}: gradient ${i}`),
      )),
  );
  console.log(`${what}: worst relative error ${worst.toExponential(2)}`);
  // Non-trivial gradients, so that equality says something.
  expect(off.grads.some((g) => g.some((v) => v !== 0))).toBe(true);
}

const TYPES = ["llama", "qwen2", "gpt2", "gemma3_text"];

describe.each(TYPES)("%s", (type) => {
  it("gives the LoRA loss and A/B gradients of the plain pass, with dropout in training mode (1e-5)", async (ctx) => {
    await needGpu(ctx);
    const model = await load(type);
    const peft = new LoraModel(model);
    peft.addAdapter(
      "default",
      {
        r: 4,
        loraAlpha: 8,
        targetModules: "all-linear",
        loraDropout: 0.3,
        initLoraWeights: false,
      },
      { seed: 5 },
    );
    const ids = idsOf(2, 9, model.dims.vocabSize, 11);
    const dropoutOff = await lossAndGrads(peft, ids, false);
    peft.state.training = true;
    peft.state.dropoutSeed = 0x1234;
    const off = await lossAndGrads(peft, ids, false);
    const on = await lossAndGrads(peft, ids, true);
    // The masks changed the loss, and recomputation drew the same ones.
    expect(Math.abs(off.loss - dropoutOff.loss)).toBeGreaterThan(1e-4);
    expect(on.grads).toHaveLength(peft.trainableVariables().length);
    expectSameLossAndGrads(on, off, `${type} LoRA, dropout 0.3`);
    peft.dispose();
    model.dispose();
  });

  it("gives the full fine-tuning gradients of every weight (1e-5)", async (ctx) => {
    await needGpu(ctx);
    const model = await load(type, { trainable: true });
    const full = new FullFineTune(model);
    const ids = idsOf(2, 7, model.dims.vocabSize, 12);
    const off = await lossAndGrads(full, ids, false);
    const on = await lossAndGrads(full, ids, true);
    expect(on.grads).toHaveLength(full.namedTrainableVariables().length);
    expectSameLossAndGrads(on, off, `${type} full fine-tuning`);
    model.dispose();
  });
});

describe("checkpointed", () => {
  it("gives dx and the variables' gradients of the plain block, with its context saved past the scope", async (ctx) => {
    await needGpu(ctx);
    const w = tf.variable(tf.tensor1d(seededValues(4, 1)), true, "ckpt_w");
    const frozen = tf.variable(tf.tensor1d(seededValues(4, 2)), false);
    const x = tf.tensor3d(seededValues(2 * 3 * 4, 3), [2, 3, 4]);
    const block = (h: tf.Tensor3D, c: { scale: tf.Tensor1D }) =>
      h.mul(w).tanh().mul(c.scale).add(h.mul(frozen)) as tf.Tensor3D;
    // The context is made inside f, so its scope has ended when the backward pass recomputes the block.
    const f = (on: boolean) => (h: tf.Tensor3D) => {
      const scale = tf.tensor1d([1, 2, 3, 4]);
      const y = on
        ? checkpointed(block, h, { scale }, [w])
        : block(h, { scale });
      return y.square().sum() as tf.Scalar;
    };
    const grads = async (on: boolean) => {
      const { value, grads } = tf.variableGrads(() => f(on)(x), [w]);
      const dx = tf.grad((h: tf.Tensor) => f(on)(h as tf.Tensor3D))(x);
      const out = [
        await value.data(),
        await grads["ckpt_w"]!.data(),
        await dx.data(),
      ];
      tf.dispose([value, dx, ...Object.values(grads)]);
      return out;
    };
    const before = tf.memory().numTensors;
    const off = await grads(false);
    const on = await grads(true);
    expect(tf.memory().numTensors).toBe(before);
    on.forEach((v, i) => expectClose(v, off[i]!, RTOL, `output ${i}`));
    // Without a tape it is the block itself.
    const plain = f(true)(x);
    expectClose(await plain.data(), off[0]!, RTOL, "no tape");
    tf.dispose([plain, w, frozen, x]);
  });
});

describe("peak memory and leaks", () => {
  it("lowers the peak bytes of value-and-grad on an 8-layer Llama with 2×128 tokens", async (ctx) => {
    await needGpu(ctx);
    const model = await load("llama", { layers: 8 });
    const peft = new LoraModel(model);
    peft.addAdapter("default", { r: 8, targetModules: "all-linear" });
    const ids = idsOf(2, 128, model.dims.vocabSize, 13);
    const vars = peft.trainableVariables();
    const peak = async (on: boolean) => {
      peft.gradientCheckpointing = on;
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => peft.loss(ids), vars);
        tf.dispose([value, ...Object.values(grads)]);
      });
      return info.peakBytes;
    };
    const off = await peak(false);
    const on = await peak(true);
    console.log(
      `peak bytes during value-and-grad: ${off} without checkpointing, ${on} with (${(on / off).toFixed(3)}×)`,
    );
    expect(on).toBeLessThan(0.8 * off);
    peft.dispose();
    model.dispose();
  });

  it("keeps the tensor count flat over repeated checkpointed steps", async (ctx) => {
    await needGpu(ctx);
    const model = await load("gemma3_text");
    const peft = new LoraModel(model);
    peft.addAdapter("default", {
      r: 2,
      targetModules: ["q_proj", "down_proj"],
      loraDropout: 0.1,
      useDora: true,
    });
    peft.state.training = true;
    peft.gradientCheckpointing = true;
    const ids = idsOf(1, 6, model.dims.vocabSize, 14);
    const vars = peft.trainableVariables();
    const counts: number[] = [];
    for (let step = 0; step < 4; step++) {
      peft.state.dropoutSeed = step;
      const { value, grads } = tf.variableGrads(() => peft.loss(ids), vars);
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts.slice(1)).size).toBe(1);
    peft.dispose();
    model.dispose();
  });
});

describe("Trainer", () => {
  it("trains to the same losses with gradientCheckpointing, and restores the model's setting", async (ctx) => {
    await needGpu(ctx);
    const model = await load("llama");
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
    expectClose(on, off, RTOL, "Trainer losses");
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

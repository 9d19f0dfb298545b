/**
 * webtune's changes to how tfjs keeps tensors for the backward pass: shape-only saves for the kernels whose
 * gradients read only shapes, and a backward pass that frees each node's saved tensors and gradients once done.
 * Both must give tfjs's own gradients; both must hold less memory.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  gpuMemory,
  LoraModel,
  PretrainedModel,
  resetPeakMemory,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import {
  gradientsFreeingAsTheyGo,
  variableGradsFreeingAsTheyGo,
} from "../../../packages/core/src/backend/tape.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** Eight layers at 2 × 128 tokens: activations outweigh the weights, as in training. */
const DEEP = {
  model_type: "llama",
  vocab_size: 211,
  hidden_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 8,
  intermediate_size: 128,
  tie_word_embeddings: true,
  eos_token_id: 2,
};

/** Every shape-only kernel on the path, between ops whose gradients need values. */
function f(x: tf.Tensor, w: tf.Tensor): tf.Scalar {
  const a = x.reshape([4, 6]).mul(w); // Reshape, Mul
  const b = a.add(tf.ones([1, 6])).sub(a.slice([1, 0], [2, 6]).mean()); // Add, Slice, Mean, Sub
  const c = tf.concat([b, b.expandDims(0).reshape([4, 6])], 0); // Concat, ExpandDims
  const d = tf.stack([c, c.tanh()]).sum(1); // Pack, Sum
  return d.square().sum() as tf.Scalar;
}

/** The gradients of `f` computed on the CPU backend's composed ops, before webtune touched anything. */
const x0 = () => tf.tensor(seededValues(24, 1), [2, 12]);
const w0 = () => tf.tensor(seededValues(6, 2), [6]);

describe("saving for the backward pass", () => {
  it("keeps only shapes for Reshape, Add and the other shape-only kernels, with tfjs's gradients", async (ctx) => {
    await needGpu(ctx);
    const x = x0();
    const w = w0();
    const engine = tf.engine() as unknown as {
      startTape(): void;
      endTape(): void;
      state: {
        activeTape: { kernelName: string; saved?: unknown[] }[] | null;
      };
    };
    engine.startTape();
    const y = tf.tidy(() => f(x, w));
    engine.endTape();
    const tape = engine.state.activeTape!;
    const saved = (name: string) =>
      tape.filter((n) => n.kernelName === name).flatMap((n) => n.saved ?? []);
    for (const name of ["Reshape", "Add", "Sub", "Slice", "Sum"]) {
      expect(saved(name).length, name).toBeGreaterThan(0);
      for (const s of saved(name))
        expect(s instanceof tf.Tensor, `${name} keeps a tensor`).toBe(false);
    }
    // Mul and Tanh need values: they still keep tensors.
    expect(saved("Mul").every((s) => s instanceof tf.Tensor)).toBe(true);
    for (const n of tape)
      for (const s of n.saved ?? []) (s as tf.Tensor).dispose();
    engine.state.activeTape = null;
    y.dispose();

    // The gradients equal finite differences of f (f64 on the CPU side of tfjs is f32: a loose 1e-2).
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a, b))([x, w]);
    const h = 1e-2;
    const xs = seededValues(24, 1);
    const numeric: number[] = [];
    for (let i = 0; i < 24; i += 5) {
      const plus = xs.slice();
      const minus = xs.slice();
      plus[i]! += h;
      minus[i]! -= h;
      const fp = (await f(tf.tensor(plus, [2, 12]), w).data())[0]!;
      const fm = (await f(tf.tensor(minus, [2, 12]), w).data())[0]!;
      numeric.push((fp - fm) / (2 * h));
    }
    const analytic = Array.from(await dx!.data()).filter((_, i) => i % 5 === 0);
    expectClose(analytic, numeric, 2e-2, "dx against finite differences");
    tf.dispose([x, w, dx!, dw!]);
  });
});

describe("gradientsFreeingAsTheyGo", () => {
  it("gives tf.variableGrads' LoRA gradients (1e-6) on an 8-layer model, with a lower GPU peak", async (ctx) => {
    await needGpu(ctx);
    const lm = await resolveConfig(DEEP, "llama/config.json").load(
      randomWeightSource(DEEP, "llama (random)"),
      1 << 30,
    );
    const peft = new LoraModel(
      new PretrainedModel(lm, undefined, DEEP, {}, "test"),
    );
    peft.addAdapter(
      "default",
      { r: 4, targetModules: ["q_proj", "v_proj"], initLoraWeights: false },
      { seed: 1 },
    );
    const ids = Array.from({ length: 2 }, (_, b) =>
      Array.from({ length: 128 }, (_, t) => (11 * b + 7 * t + 1) % 211),
    );
    const vars = peft.trainableVariables();
    const before = tf.memory().numTensors;
    // GPU buffer bytes in use (tf.profile's peakBytes counts every clone of a saved tensor as new bytes).
    const run = async (
      grads: (
        f: () => tf.Scalar,
        v: tf.Variable[],
      ) => { value: tf.Scalar; grads: tf.NamedTensorMap },
    ): Promise<{ grads: tf.Tensor[]; peak: number }> => {
      resetPeakMemory();
      const out = grads(() => peft.loss(ids), vars);
      tf.dispose(out.value);
      const list = vars.map((v) => out.grads[v.name]!);
      await Promise.all(list.map((t) => t.data()));
      return { grads: list, peak: gpuMemory().peak };
    };
    try {
      const plain = await run(tf.variableGrads);
      const freeing = await run(variableGradsFreeingAsTheyGo);
      for (let i = 0; i < vars.length; i++)
        expectClose(
          await freeing.grads[i]!.data(),
          await plain.grads[i]!.data(),
          1e-6,
          vars[i]!.name,
        );
      console.log(
        `peak GPU bytes: tfjs ${plain.peak}, freeing as it goes ${freeing.peak}`,
      );
      expect(freeing.peak).toBeLessThan(0.8 * plain.peak);
      tf.dispose([...plain.grads, ...freeing.grads]);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      peft.dispose();
      lm.dispose();
    }
  });

  it("keeps a caller's dy and gives gradients for non-variable inputs", async (ctx) => {
    await needGpu(ctx);
    const x = tf.tensor(seededValues(12, 4), [3, 4]);
    const dy = tf.tensor(seededValues(12, 5), [3, 4]);
    const { value, grads } = gradientsFreeingAsTheyGo(
      () => x.mul(x).reshape([3, 4]),
      [x],
      dy,
    );
    expect(dy.isDisposed).toBe(false);
    const expected = x.mul(2).mul(dy);
    expectClose(await grads[0]!.data(), await expected.data(), 1e-6, "dx");
    tf.dispose([x, dy, value, grads[0]!, expected]);
  });
});

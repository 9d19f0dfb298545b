/**
 * LoRA adapters on real (tiny) models loaded from disk: targeting with PEFT's rules, a fresh adapter is a
 * no-op, named adapters switch without reloading, merge/unmerge keep the logits (1e-4), DoRA, weighted
 * adapters, parameter counts, and gradients reach only the adapter.
 */
import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { ConfigError, loadModel } from "@webtune/core";
import { needGpu } from "../../helpers/gpu.js";
import { logitsArray, useTinyModels } from "../../helpers/lora.js";
import { GOLDEN_DIR, readGolden } from "../../helpers/golden.js";
import { expectClose } from "../../helpers/tensors.js";

const { models, peftOf } = useTinyModels(["gpt2", "llama_untied"]);
const ids = readGolden(`${GOLDEN_DIR}tiny/llama_untied`).input_ids;
const logits = (m: { logits(ids: number[][]): tf.Tensor }, rows = ids) =>
  logitsArray(m, rows);

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("targeting, as PEFT matches modules", () => {
  it("matches list entries exactly or as a dotted suffix, regex strings in full, and honours exclusions and layers", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    const modules = (name: string) => peft.trainableVariables(name).length / 2;
    peft.addAdapter("suffix", {
      r: 2,
      targetModules: ["q_proj", "model.layers.0.mlp.down_proj"],
    });
    expect(modules("suffix")).toBe(3 + 1); // q_proj in 3 layers, one exact down_proj
    peft.addAdapter("regex", { r: 2, targetModules: ".*layers\\.1\\..*_proj" });
    expect(modules("regex")).toBe(7);
    peft.addAdapter("all", {
      r: 2,
      targetModules: "all-linear",
      excludeModules: ["o_proj"],
    });
    expect(modules("all")).toBe(3 * 6);
    peft.addAdapter("layer2", {
      r: 2,
      targetModules: ["v_proj"],
      layersToTransform: [2],
      layersPattern: "layers",
    });
    expect(modules("layer2")).toBe(1);
    peft.dispose();
  });

  it("says which modules exist when the targets match none, and refuses non-Linear targets and bad fields", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    expect(() =>
      peft.addAdapter("a", { r: 2, targetModules: ["c_attn"] }),
    ).toThrow(
      /matches no Linear module of this model\. Its Linear modules are named q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/,
    );
    expect(() =>
      peft.addAdapter("a", { r: 2, targetModules: ["input_layernorm"] }),
    ).toThrow(/input_layernorm, .*not a Linear layer/);
    expect(() =>
      peft.addAdapter("a", { r: 0, targetModules: ["q_proj"] }),
    ).toThrow(/r must be a positive integer, got 0/);
    expect(() =>
      peft.addAdapter("a", {
        r: 2,
        targetModules: ["q_proj"],
        loraAlhpa: 4,
      } as never),
    ).toThrow(/unknown field "loraAlhpa"/);
    expect(() =>
      peft.addAdapter("a", { r: 2, targetModules: ["q_proj"] }),
    ).not.toThrow();
    expect(() =>
      peft.addAdapter("a", { r: 2, targetModules: ["q_proj"] }),
    ).toThrow(ConfigError);
    peft.dispose();
  });
});

describe("adapters", () => {
  it("start as a no-op, count parameters as PEFT does, and train only A and B", async (ctx) => {
    await needGpu(ctx);
    const base = await logits(models["llama_untied"]!);
    const peft = peftOf("llama_untied");
    peft.addAdapter("default", {
      r: 4,
      loraAlpha: 8,
      targetModules: ["q_proj", "v_proj"],
    });
    // Equal up to f32 summation order: the fused kernel and tf.matMul accumulate differently.
    expectClose(await logits(peft), base, 1e-5, "fresh adapter");
    const d = models["llama_untied"]!.dims;
    const kv = d.numKvHeads * d.headDim;
    const perLayer =
      4 * (d.hiddenSize + d.numHeads * d.headDim) + 4 * (d.hiddenSize + kv);
    const { trainable, total } = peft.parameterCounts();
    expect(trainable).toBe(d.numLayers * perLayer);
    expect(total).toBe(models["llama_untied"]!.lm.parameterCount() + trainable);
    expect(peft.printTrainableParameters()).toMatch(
      /^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}$/,
    );
    // Gradients flow to the adapter only; one step lowers the loss.
    const vars = peft.trainableVariables();
    const lossOf = () => peft.loss(ids) as tf.Scalar;
    const before = (await lossOf().data())[0]!;
    const { value, grads } = tf.variableGrads(lossOf, vars);
    expect(Object.keys(grads)).toHaveLength(vars.length);
    const norm = (
      await tf.addN(Object.values(grads).map((g) => g.square().sum())).data()
    )[0]!;
    expect(norm).toBeGreaterThan(0);
    tf.tidy(() =>
      vars.forEach((v) => v.assign(v.sub(grads[v.name]!.mul(0.5)))),
    );
    tf.dispose([value, ...Object.values(grads)]);
    expect((await lossOf().data())[0]!).toBeLessThan(before);
    peft.dispose();
  });

  it("switch by name over one base model, disable, and re-enable", async (ctx) => {
    await needGpu(ctx);
    const base = await logits(models["llama_untied"]!);
    const peft = peftOf("llama_untied");
    peft.addAdapter(
      "one",
      { r: 4, targetModules: ["q_proj", "v_proj"], initLoraWeights: false },
      { seed: 1 },
    );
    peft.addAdapter(
      "two",
      { r: 2, targetModules: ["o_proj"], initLoraWeights: false },
      { seed: 2 },
    );
    const one = await logits(peft);
    peft.setAdapter("two");
    const two = await logits(peft);
    expect(maxAbsDiff(one, base)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(two, one)).toBeGreaterThan(1e-3);
    const disabled = await peft.withAdaptersDisabled(() => logits(peft));
    expectClose(disabled, base, 1e-6, "disabled");
    expectClose(await logits(peft), two, 1e-6, "re-enabled");
    peft.disableAdapters();
    expectClose(await logits(peft), base, 1e-6, "disableAdapters");
    peft.enableAdapters();
    peft.deleteAdapter("two");
    expect(peft.activeAdapter).toBe("one");
    expectClose(await logits(peft), one, 1e-6, "after delete");
    peft.dispose();
    expectClose(
      await logits(models["llama_untied"]!),
      base,
      1e-6,
      "base after dispose",
    );
  });
});

describe("initialisation, as PEFT's init_lora_weights", () => {
  it("true: kaiming-uniform A within ±1/√in and zero B; gaussian: A ~ N(0, 1/r); false: both random", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    const IN = models["llama_untied"]!.dims.hiddenSize;
    const stats = async (name: string) => {
      const [A, B] = peft.trainableVariables(name);
      const a = Array.from(await A!.data());
      const b = Array.from(await B!.data());
      const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
      return {
        maxA: Math.max(...a.map(Math.abs)),
        std,
        maxB: Math.max(...b.map(Math.abs)),
      };
    };
    peft.addAdapter(
      "kaiming",
      { r: 16, targetModules: ["model.layers.0.self_attn.q_proj"] },
      { seed: 5 },
    );
    const k = await stats("kaiming");
    expect(k.maxA).toBeLessThanOrEqual(1 / Math.sqrt(IN));
    expect(k.maxA).toBeGreaterThan(0.9 / Math.sqrt(IN));
    expect(k.maxB).toBe(0);
    peft.addAdapter("gauss", {
      r: 16,
      targetModules: ["model.layers.0.self_attn.q_proj"],
      initLoraWeights: "gaussian",
    });
    const g = await stats("gauss");
    expect(g.std).toBeGreaterThan(0.8 / 16);
    expect(g.std).toBeLessThan(1.2 / 16);
    expect(g.maxB).toBe(0);
    peft.addAdapter("random", {
      r: 16,
      targetModules: ["model.layers.0.self_attn.q_proj"],
      initLoraWeights: false,
    });
    expect((await stats("random")).maxB).toBeGreaterThan(0);
  });
});

describe("merge and unmerge", () => {
  for (const [name, targets] of [
    ["gpt2", ["c_attn", "c_proj", "c_fc"]],
    ["llama_untied", ["q_proj", "k_proj", "down_proj"]],
  ] as const) {
    for (const dora of [false, true]) {
      it(`keep the logits for ${name}${dora ? " with DoRA" : ""} (${name === "gpt2" ? "Conv1D, fan_in_fan_out" : "nn.Linear"})`, async (ctx) => {
        await needGpu(ctx);
        const base = await logits(models[name]!);
        const peft = peftOf(name);
        const config = peft.addAdapter("default", {
          r: 4,
          loraAlpha: 8,
          targetModules: [...targets],
          initLoraWeights: false,
          useDora: dora,
        });
        expect(config.fan_in_fan_out).toBe(name === "gpt2");
        if (dora) {
          // A trained magnitude differs from its initial norm; move it so DoRA's scaling matters.
          for (const v of peft.trainableVariables().filter((t) => t.rank === 1))
            v.assign(v.mul(1.1));
        }
        const adapted = await logits(peft);
        expect(maxAbsDiff(adapted, base)).toBeGreaterThan(1e-3);
        peft.merge();
        expectClose(await logits(peft), adapted, 1e-4, "merged");
        peft.unmerge();
        expectClose(await logits(peft), adapted, 1e-4, "unmerged");
        peft.disableAdapters();
        expectClose(await logits(peft), base, 1e-6, "base weights restored");
        peft.enableAdapters();
        const plain = peft.mergeAndUnload();
        expectClose(await logits(plain), adapted, 1e-4, "mergeAndUnload");
        expect(plain.linears().every((l) => l.adapter === undefined)).toBe(
          true,
        );
        models[name]!.dispose();
        models[name] = await loadModel(`${GOLDEN_DIR}tiny/${name}`, {
          cache: false,
        });
      });
    }
  }
});

describe("weighted adapters", () => {
  it("cat stacks w·s·A and B, so its update is Σ w·s·B·A; linear sums √(w·s)-scaled factors", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter(
      "a",
      { r: 4, loraAlpha: 8, targetModules: ["q_proj"], initLoraWeights: false },
      { seed: 3 },
    );
    peft.addAdapter(
      "b",
      {
        r: 4,
        loraAlpha: 16,
        targetModules: ["q_proj"],
        initLoraWeights: false,
      },
      { seed: 4 },
    );
    const cat = peft.addWeightedAdapter(["a", "b"], [0.7, 0.3], "cat", "cat");
    expect(cat.r).toBe(8);
    expect(cat.lora_alpha).toBe(8);
    const lin = peft.addWeightedAdapter(
      ["a", "b"],
      [0.7, -0.3],
      "lin",
      "linear",
    );
    expect(lin.r).toBe(4);
    const layer = models["llama_untied"]!.linears().find(
      (l) => l.name === "model.layers.0.self_attn.q_proj",
    )!;
    const lora = layer.adapter as unknown as import("@webtune/core").LoraLinear;
    const delta = (n: string) =>
      tf.tidy(() => lora.mergedWeight(n).sub(layer.weight as tf.Tensor2D));
    const expected = tf.tidy(() =>
      delta("a").mul(0.7).add(delta("b").mul(0.3)),
    );
    expectClose(
      await delta("cat").data(),
      await expected.data(),
      1e-5,
      "cat update",
    );
    const w = (n: string) => lora.adapters.get(n)!;
    const expectedLin = tf.tidy(() => {
      const sa = Math.sqrt(0.7 * w("a").scale);
      const sb = Math.sqrt(0.3 * w("b").scale);
      const A = w("a").A.mul(sa).add(w("b").A.mul(-sb));
      const B = w("a")
        .B.mul(sb === 0 ? 0 : sa)
        .add(w("b").B.mul(sb));
      return tf.matMul(B, A); // scale of the combined adapter is lora_alpha / r = 1
    });
    expectClose(
      await delta("lin").data(),
      await expectedLin.data(),
      1e-5,
      "linear update",
    );
    tf.dispose(expected);
    tf.dispose(expectedLin);
    peft.dispose();
  });
});

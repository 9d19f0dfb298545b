/**
 * Models loaded with a compact frozen base (f16, int8, NF4, double-quantized NF4), against an oracle: the same
 * architecture loaded in f32 from the values the codec decodes, i.e. exactly what the packed weights stand
 * for. The kernels unpack inside their tile loads, so the two must agree to f32 rounding (1e-4 relative) in
 * logits, loss and every LoRA gradient. Also: memory accounting, bad options, merging and DoRA on a packed base.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  decodeMatrix,
  disposeRuntime,
  encodeMatrix,
  gpuMemory,
  isPacked,
  LoraModel,
  matrixBytes,
  PretrainedModel,
  ShapeError,
  type PackedFormat,
  type WeightOptions,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import type { CausalLM } from "../../../packages/core/src/models/causal_lm.js";
import type { WeightSource } from "../../../packages/core/src/models/weights.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectClose } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

const BIG = 1 << 30;
const RTOL = 1e-4;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const STORAGES: { name: string; options: WeightOptions }[] = [
  { name: "f16", options: { dtype: "float16" } },
  { name: "int8", options: { quantize: "int8" } },
  { name: "nf4", options: { quantize: "nf4" } },
  {
    name: "nf4, double quant, f16 embeddings",
    options: { dtype: "float16", quantize: "nf4", doubleQuant: true },
  },
];

function load(
  type: string,
  options: WeightOptions = {},
  source?: WeightSource,
  bindingBytes = BIG,
): Promise<CausalLM> {
  const raw = TINY_CONFIGS[type]!;
  return resolveConfig(raw, `${type}/config.json`).load(
    source ?? randomWeightSource(raw, `${type} (random)`),
    bindingBytes,
    options,
  );
}

/** How each checkpoint tensor of a loaded model is packed: format and double quantization, by name. */
function packing(
  lm: CausalLM,
): Map<string, { format: PackedFormat; doubleQuant: boolean }> {
  const out = new Map<string, { format: PackedFormat; doubleQuant: boolean }>();
  for (const p of lm.parameters()) {
    const [m] = p.get();
    if (m && isPacked(m) && p.get().length === 1)
      out.set(p.name, {
        format: m.format,
        doubleQuant: m.scales?.kind === "double",
      });
  }
  return out;
}

/** The f32 checkpoint the packed model stands for: each packed tensor encoded and decoded as the loader does. */
function decodedSource(
  source: WeightSource,
  packed: Map<string, { format: PackedFormat; doubleQuant: boolean }>,
): WeightSource {
  return {
    ...source,
    description: `${source.description}, decoded`,
    names: () => source.names(),
    shape: (name) => source.shape(name),
    read: async (name) => {
      const how = packed.get(name);
      const values = await source.read(name);
      if (!how) return values;
      const shape = (await source.shape(name)) as [number, number];
      return decodeMatrix(
        encodeMatrix(values, shape, how.format, {
          doubleQuant: how.doubleQuant,
        }),
      );
    },
  };
}

const ids = [
  [1, 5, 9, 13, 17, 21, 25, 29],
  [2, 6, 10, 14, 18, 22, 26, 30],
];

async function valuesOf(t: tf.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

/** Loss and every LoRA gradient of one step, with random B so that A's gradients are not zero. */
async function loraStep(
  lm: CausalLM,
  raw: Record<string, unknown>,
): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
  const peft = new LoraModel(
    new PretrainedModel(lm, undefined, raw, {}, "test"),
  );
  try {
    peft.addAdapter(
      "default",
      { r: 4, targetModules: "all-linear", initLoraWeights: false },
      { seed: 3 },
    );
    const named = peft.namedTrainableVariables();
    const { value, grads } = tf.variableGrads(
      () => peft.loss(ids),
      named.map((n) => n.variable),
    );
    const out: Record<string, Float32Array> = {};
    for (const n of named) out[n.key] = await valuesOf(grads[n.variable.name]!);
    return { loss: (await valuesOf(value))[0]!, grads: out };
  } finally {
    peft.dispose();
  }
}

describe.each(["llama", "qwen2", "gpt2", "gemma3_text"])("%s", (type) => {
  for (const { name, options } of STORAGES)
    it(`${name}: logits, loss and LoRA gradients equal the decoded f32 model's`, async (ctx) => {
      await needGpu(ctx);
      const raw = TINY_CONFIGS[type]!;
      const source = randomWeightSource(raw, `${type} (random)`);
      const packedLm = await load(type, options, source);
      const oracle = await load(
        type,
        {},
        decodedSource(source, packing(packedLm)),
      );
      try {
        expect(packing(packedLm).size).toBeGreaterThan(0);
        expectClose(
          await valuesOf(packedLm.logits(ids)),
          await valuesOf(oracle.logits(ids)),
          RTOL,
          `${type} logits`,
        );
        const got = await loraStep(packedLm, raw);
        const want = await loraStep(oracle, raw);
        expectClose([got.loss], [want.loss], RTOL, `${type} loss`);
        for (const key of Object.keys(want.grads))
          expectClose(got.grads[key]!, want.grads[key]!, RTOL, key);
      } finally {
        packedLm.dispose();
        oracle.dispose();
      }
    });
});

describe("storage and accounting", () => {
  it("f16 halves the weights and NF4 with double quantization stores projections in about 4.1 bits", async (ctx) => {
    await needGpu(ctx);
    const f32 = await load("llama");
    const f16 = await load("llama", { dtype: "float16" });
    const nf4 = await load("llama", { quantize: "nf4", doubleQuant: true });
    try {
      expect(f16.parameterCount()).toBe(f32.parameterCount());
      const projections = (lm: CausalLM) =>
        lm
          .linears()
          .reduce(
            (n, l) =>
              n + (isPacked(l.weight) ? l.weight.bytes : l.weight.size * 4),
            0,
          );
      const elements = f32.linears().reduce((n, l) => n + l.weight.size, 0);
      expect(projections(f16) / elements).toBe(2);
      const bits = (8 * projections(nf4)) / elements;
      // 4 bits, an int8 absmax code per 64 values (0.125), one f32 per 256 blocks, and word padding.
      expect(bits).toBeGreaterThan(4.12);
      expect(bits).toBeLessThan(4.2);
    } finally {
      f32.dispose();
      f16.dispose();
      nf4.dispose();
    }
  });

  it("gpuMemory counts base weights, adapters and optimizer state by category, and forgets them when freed", async (ctx) => {
    await needGpu(ctx);
    const before = gpuMemory();
    const lm = await load("llama", { dtype: "float16" });
    const loaded = gpuMemory();
    expect(loaded.baseWeights - before.baseWeights).toBe(lm.weightBytes());
    const peft = new LoraModel(
      new PretrainedModel(lm, undefined, TINY_CONFIGS["llama"]!, {}, "t"),
    );
    peft.addAdapter("default", { r: 4, targetModules: ["q_proj"] });
    const adapterBytes = 4 * peft.parameterCounts().trainable;
    expect(gpuMemory().adapters - before.adapters).toBe(adapterBytes);
    peft.dispose();
    lm.dispose();
    const after = gpuMemory();
    expect(after.baseWeights).toBe(before.baseWeights);
    expect(after.adapters).toBe(before.adapters);
  });

  it("refuses a projection over the binding limit, naming it and the storage that fits, and loads that storage", async (ctx) => {
    const info = await needGpu(ctx);
    // A device that binds 6000 bytes: gate_proj [64, 32] takes 8192 in f32, 4096 in f16, 1152 in NF4.
    const real = info.limits["maxStorageBufferBindingSize"]!;
    info.limits["maxStorageBufferBindingSize"] = 6000;
    try {
      const start = tf.memory().numTensors;
      const f32 = load("llama", {}, undefined, 6000);
      await expect(f32).rejects.toThrow(ShapeError);
      await expect(load("llama", {}, undefined, 6000)).rejects.toThrow(
        /"model\.layers\.0\.mlp\.gate_proj\.weight" \[64, 32\] takes 8192 bytes as float32, over .* \(6000 bytes\)\. Load the model with \{ dtype: "float16" \}/,
      );
      expect(tf.memory().numTensors).toBe(start);
      for (const options of [
        { dtype: "float16" },
        { quantize: "nf4" },
      ] as const) {
        const lm = await load("llama", options, undefined, 6000);
        expect(lm.weights().every((w) => matrixBytes(w) <= 6000)).toBe(true);
        lm.dispose();
      }
    } finally {
      info.limits["maxStorageBufferBindingSize"] = real;
    }
  });

  it("rejects bad storage options before reading anything", async (ctx) => {
    await needGpu(ctx);
    const cases: [WeightOptions, RegExp][] = [
      [
        { dtype: "bfloat16" as "float16" },
        /dtype must be "float32" or "float16", got "bfloat16"/,
      ],
      [
        { quantize: "nf3" as "nf4" },
        /quantize must be "int8" or "nf4", got "nf3"/,
      ],
      [{ doubleQuant: true }, /doubleQuant .* set quantize/],
      [{ trainable: true, quantize: "nf4" }, /Full fine-tuning .* cannot use/],
    ];
    for (const [options, message] of cases) {
      const start = tf.memory().numTensors;
      await expect(load("llama", options)).rejects.toThrow(ConfigError);
      await expect(load("llama", options)).rejects.toThrow(message);
      expect(tf.memory().numTensors).toBe(start);
    }
  });

  it("a non-finite weight fails quantization naming the tensor, and nothing stays on the GPU", async (ctx) => {
    await needGpu(ctx);
    const raw = TINY_CONFIGS["llama"]!;
    const source = randomWeightSource(raw, "llama (random)");
    const bad = "model.layers.1.mlp.up_proj.weight";
    const poisoned: WeightSource = {
      ...source,
      names: () => source.names(),
      shape: (n) => source.shape(n),
      read: async (n) => {
        const v = await source.read(n);
        if (n === bad) v[5] = Number.NaN;
        return v;
      },
    };
    const start = tf.memory().numTensors;
    const loading = load("llama", { quantize: "nf4" }, poisoned);
    await expect(loading).rejects.toThrow(ShapeError);
    await expect(load("llama", { quantize: "nf4" }, poisoned)).rejects.toThrow(
      new RegExp(bad.replace(/\./g, "\\.")),
    );
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe("adapters on a packed base", () => {
  it("merging dequantizes into f32, and unmerge restores the packed weight", async (ctx) => {
    await needGpu(ctx);
    const lm = await load("llama", { quantize: "nf4" });
    const peft = new LoraModel(
      new PretrainedModel(lm, undefined, TINY_CONFIGS["llama"]!, {}, "t"),
    );
    try {
      peft.addAdapter(
        "default",
        {
          r: 4,
          targetModules: ["q_proj", "down_proj"],
          initLoraWeights: false,
        },
        { seed: 1 },
      );
      const adapted = await valuesOf(peft.logits(ids));
      const q = lm
        .linears()
        .find((l) => l.name.endsWith("0.self_attn.q_proj"))!;
      const packedWeight = q.weight;
      peft.merge();
      expect(isPacked(q.weight)).toBe(false);
      expectClose(await valuesOf(lm.logits(ids)), adapted, RTOL, "merged");
      peft.unmerge();
      expect(q.weight).toBe(packedWeight);
      expectClose(await valuesOf(peft.logits(ids)), adapted, RTOL, "unmerged");
    } finally {
      peft.dispose();
      lm.dispose();
    }
  });

  it("DoRA trains on an NF4 base with the decoded f32 model's loss", async (ctx) => {
    await needGpu(ctx);
    const raw = TINY_CONFIGS["qwen2"]!;
    const source = randomWeightSource(raw, "qwen2 (random)");
    const packedLm = await load("qwen2", { quantize: "nf4" }, source);
    const oracle = await load(
      "qwen2",
      {},
      decodedSource(source, packing(packedLm)),
    );
    const doraLoss = async (lm: CausalLM) => {
      const peft = new LoraModel(
        new PretrainedModel(lm, undefined, raw, {}, "t"),
      );
      try {
        peft.addAdapter(
          "default",
          {
            r: 4,
            targetModules: ["q_proj", "v_proj"],
            useDora: true,
            initLoraWeights: false,
          },
          { seed: 2 },
        );
        return (await valuesOf(peft.loss(ids)))[0]!;
      } finally {
        peft.dispose();
      }
    };
    try {
      expectClose(
        [await doraLoss(packedLm)],
        [await doraLoss(oracle)],
        RTOL,
        "DoRA loss",
      );
    } finally {
      packedLm.dispose();
      oracle.dispose();
    }
  });
});

/**
 * The compiled step against its oracle, tfjs's autograd of the same model (the tape): for every architecture and
 * every storage of the frozen base, the loss and the gradient of every LoRA tensor agree to 1e-5 relative,
 * normwise (the worst error within 1e-5 of the tensor's largest magnitude: both are float32 and differ only in
 * the order of their sums). With LoRA dropout on, and with gradient
 * checkpointing (which must give the same gradients bit for bit: it reruns the same dispatches).
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  LoraModel,
  PretrainedModel,
  setLoraKernelVariant,
  type WeightOptions,
} from "@webtune/core";
import { setAttentionKernelVariant } from "../../../packages/core/src/kernels/attention/program.js";
import type { TrainingSession } from "../../../packages/core/src/engine/session.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { compileLora } from "../../helpers/session.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectNear, seededValues } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "../models/tiny_configs.js";

const RTOL = 1e-5;
const rtolOf = (type: string) => (type === "gemma3_text" ? 3e-5 : RTOL);

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const STORAGES: { name: string; options: WeightOptions }[] = [
  { name: "f32", options: {} },
  { name: "f16", options: { dtype: "float16" } },
  { name: "int8", options: { quantize: "int8" } },
  { name: "nf4", options: { quantize: "nf4" } },
  {
    name: "nf4 double quant, f16 embeddings",
    options: { dtype: "float16", quantize: "nf4", doubleQuant: true },
  },
];

async function load(
  type: string,
  options: WeightOptions = {},
): Promise<PretrainedModel> {
  const raw = TINY_CONFIGS[type]!;
  const lm = await resolveConfig(raw, `${type}/config.json`).load(
    randomWeightSource(raw, `${type} (random)`),
    1 << 30,
    options,
  );
  return new PretrainedModel(lm, undefined, raw, {}, `${type} (random)`);
}

/** Two rows of 16 tokens, the second padded after 11 (labels -100 there), ids in [0, V). */
function batchOf(V: number, seed: number) {
  const u = seededValues(32, seed);
  const inputIds = [0, 1].map((b) =>
    Array.from({ length: 16 }, (_, t) =>
      b === 1 && t >= 11 ? 0 : Math.floor(((u[b * 16 + t]! + 1) / 2) * V),
    ),
  );
  const labels = inputIds.map((row, b) =>
    row.map((id, t) => (b === 1 && t >= 11 ? -100 : t === 2 ? -100 : id)),
  );
  return { inputIds, labels };
}

function lossTokens(labels: number[][]): number {
  return labels.reduce(
    (n, row) => n + row.slice(1).filter((l) => l !== -100).length,
    0,
  );
}

function adapter(
  model: PretrainedModel,
  targets: string[] | "all-linear",
  dropout: number,
  dora = false,
): LoraModel {
  const peft = new LoraModel(model);
  peft.addAdapter(
    "default",
    {
      r: 4,
      loraAlpha: 8,
      targetModules: targets,
      loraDropout: dropout,
      useDora: dora,
      initLoraWeights: false, // B random, so that every gradient is non-zero
    },
    { seed: 3 },
  );
  return peft;
}

const compile = (peft: LoraModel, logitBudget?: number): TrainingSession =>
  compileLora(peft, { logitBudget });

/** The tape's mean loss and gradients, with the same dropout seed as the compiled step. */
async function tape(
  peft: LoraModel,
  batch: ReturnType<typeof batchOf>,
  dropoutSeed: number,
) {
  peft.state.training = true;
  peft.state.dropoutSeed = dropoutSeed;
  const vars = peft.trainableVariables();
  const { value, grads } = tf.variableGrads(
    () => peft.loss(batch.inputIds, batch.labels),
    vars,
  );
  const loss = (await value.data())[0]!;
  const out = await Promise.all(
    vars.map(async (v) => (await grads[v.name]!.data()) as Float32Array),
  );
  tf.dispose([value, ...Object.values(grads)]);
  peft.state.training = false;
  return { loss, gradients: out };
}

async function compare(
  type: string,
  storage: WeightOptions,
  targets: string[] | "all-linear",
  options: { dropout?: number; checkpointing?: boolean; dora?: boolean } = {},
): Promise<void> {
  const model = await load(type, storage);
  const peft = adapter(model, targets, options.dropout ?? 0, options.dora);
  peft.gradientCheckpointing = options.checkpointing ?? false;
  const batch = batchOf(model.dims.vocabSize, 11);
  const seed = 12345;
  const session = compile(peft);
  try {
    const compiled = await session.lossAndGradients(batch, {
      lossScale: 1 / lossTokens(batch.labels),
      dropoutSeed: seed,
    });
    const oracle = await tape(peft, batch, seed);
    expectNear([compiled.loss], [oracle.loss], RTOL, `${type} loss`);
    const names = peft.namedTrainableVariables().map((v) => v.key);
    oracle.gradients.forEach((g, i) =>
      expectNear(
        compiled.gradients[i]!,
        g,
        rtolOf(type),
        `${type} d${names[i]}`,
      ),
    );
  } finally {
    session.dispose();
    peft.dispose();
    model.lm.dispose();
  }
}

describe("the compiled step against the tape", () => {
  for (const type of Object.keys(TINY_CONFIGS)) {
    for (const storage of STORAGES) {
      it(`${type}, ${storage.name} base, LoRA on every projection: loss and every gradient`, async (ctx) => {
        await needGpu(ctx);
        await compare(type, storage.options, "all-linear");
      });
    }
    it(`${type}: LoRA dropout 0.25, PEFT's default targets`, async (ctx) => {
      await needGpu(ctx);
      const targets = type === "gpt2" ? ["c_attn"] : ["q_proj", "v_proj"];
      await compare(type, {}, targets, { dropout: 0.25 });
    });
    it(`${type}: DoRA with dropout on every projection, f32 and NF4 bases`, async (ctx) => {
      await needGpu(ctx);
      await compare(type, {}, "all-linear", { dropout: 0.1, dora: true });
      await compare(type, { quantize: "nf4" }, "all-linear", { dora: true });
    });
    it(`${type}: the GPU ('shared') kernel variants`, async (ctx) => {
      await needGpu(ctx);
      setLoraKernelVariant("shared");
      setAttentionKernelVariant("shared");
      try {
        await compare(type, {}, "all-linear", { dropout: 0.1 });
      } finally {
        setLoraKernelVariant(undefined);
        setAttentionKernelVariant(undefined);
      }
    });
    it(`${type}: the big-GPU matmul variant, split-K on every projection`, async (ctx) => {
      await needGpu(ctx);
      // 128-wide tiles, double-buffered, and every LoRA and frozen matmul in two passes through a scratch.
      setLoraKernelVariant("shared128-double-splitk");
      try {
        await compare(type, {}, "all-linear", { dropout: 0.1 });
      } finally {
        setLoraKernelVariant(undefined);
      }
    });
    it(`${type}: gradient checkpointing`, async (ctx) => {
      await needGpu(ctx);
      await compare(type, {}, "all-linear", {
        dropout: 0.1,
        checkpointing: true,
      });
    });
  }

  // 2 rows of 48 tokens: 96 rows of logits. A budget of 70 rows' worth takes them as blocks of 64 and 32, each
  // block's logits kept for its gradient; one of 10 rows' worth is under the smallest block (64 rows, the binding
  // alignment), so each chunk's logits are made again for the gradient: one more head matmul per chunk and block.
  for (const [rows, recompute] of [
    [70, false],
    [10, true],
  ] as const)
    it(`takes the loss a block of 64 rows at a time under a budget of ${rows} rows' logits${recompute ? ", making them again for the gradient" : ""}`, async (ctx) => {
      await needGpu(ctx);
      const model = await load("gpt2");
      const peft = adapter(model, ["c_attn"], 0);
      const u = seededValues(96, 21);
      const V = model.dims.vocabSize;
      const inputIds = [0, 1].map((b) =>
        Array.from({ length: 48 }, (_, t) =>
          Math.floor(((u[b * 48 + t]! + 1) / 2) * V),
        ),
      );
      const batch = { inputIds, labels: inputIds };
      const session = compile(peft, rows * V * 4);
      try {
        if (recompute) {
          const kept = compile(peft, 70 * V * 4);
          const chunks = model.lm.stepArchitecture()!.head.chunks.length;
          expect(session.memoryPlan(batch).dispatches).toBe(
            kept.memoryPlan(batch).dispatches + 2 * chunks,
          );
          kept.dispose();
        }
        const compiled = await session.lossAndGradients(batch, {
          lossScale: 1 / lossTokens(batch.labels),
          dropoutSeed: 0,
        });
        const oracle = await tape(peft, batch, 0);
        expectNear([compiled.loss], [oracle.loss], RTOL, "loss");
        oracle.gradients.forEach((g, i) =>
          expectNear(compiled.gradients[i]!, g, RTOL, `gradient ${i}`),
        );
      } finally {
        session.dispose();
        peft.dispose();
        model.lm.dispose();
      }
    });

  it("checkpointing reruns the same dispatches: the same gradients to the bit", async (ctx) => {
    await needGpu(ctx);
    const model = await load("llama");
    const peft = adapter(model, "all-linear", 0.1);
    const batch = batchOf(model.dims.vocabSize, 5);
    const run = async (checkpointing: boolean) => {
      peft.gradientCheckpointing = checkpointing;
      const session = compile(peft);
      try {
        return await session.lossAndGradients(batch, {
          lossScale: 1 / lossTokens(batch.labels),
          dropoutSeed: 9,
        });
      } finally {
        session.dispose();
      }
    };
    const plain = await run(false);
    const recomputed = await run(true);
    expect(recomputed.loss).toBe(plain.loss);
    recomputed.gradients.forEach((g, i) =>
      expect(Array.from(g)).toEqual(Array.from(plain.gradients[i]!)),
    );
    peft.dispose();
    model.lm.dispose();
  });
});

/**
 * Full fine-tuning on the compiled step against the tape: every weight's gradient (projections and their biases,
 * norms, the embedding table, GPT-2's positions, a tied or untied LM head) agrees with tfjs autograd to 1e-5
 * relative, normwise, on every architecture (Gemma 3's per-head q/k norms included, to its measured noise floor
 * of 3e-5, as in compiled_step.test.ts). Then a few optimizer steps: the same losses.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  FullFineTune,
  PretrainedModel,
  Trainer,
  type TrainEvent,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectNear, seededValues } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "../models/tiny_configs.js";

const RTOL = 1e-5;
const rtolOf = (type: string) => (type === "gemma3_text" ? 3e-5 : RTOL);

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function trainable(
  type: string,
  override: Record<string, unknown> = {},
): Promise<FullFineTune> {
  const raw = { ...TINY_CONFIGS[type]!, ...override };
  const lm = await resolveConfig(raw, `${type}/config.json`).load(
    randomWeightSource(raw, `${type} (random)`),
    1 << 30,
    { trainable: true },
  );
  return new FullFineTune(
    new PretrainedModel(lm, undefined, raw, {}, `${type} (random)`),
  );
}

/** Two rows of 16 tokens, ids repeating (so the table's gradient sums over several positions). */
function batchOf(V: number) {
  const u = seededValues(32, 7);
  const inputIds = [0, 1].map((b) =>
    Array.from({ length: 16 }, (_, t) =>
      Math.floor(((u[b * 16 + (t % 11)]! + 1) / 2) * V),
    ),
  );
  return { inputIds, labels: inputIds.map((r) => [...r]) };
}

function compile(model: FullFineTune) {
  return model.compileTraining({
    groups: [
      {
        variables: model.namedTrainableVariables().map((v) => v.variable),
        lrScale: 1,
        weightDecay: 0,
      },
    ],
    batchSize: 2,
    betas: [0.9, 0.999],
    eps: 1e-8,
    maxGradNorm: 1,
  });
}

const CASES: [string, Record<string, unknown>][] = [
  ["gpt2", {}],
  ["llama", {}],
  ["llama", { tie_word_embeddings: true }],
  ["qwen2", {}],
  ["gemma3_text", {}],
];

describe("full fine-tuning on the compiled step", () => {
  for (const [type, override] of CASES)
    it(`${type}${override["tie_word_embeddings"] ? " (tied head)" : ""}: every weight's gradient equals the tape's`, async (ctx) => {
      await needGpu(ctx);
      const model = await trainable(type, override);
      const batch = batchOf(model.model.dims.vocabSize);
      const named = model.namedTrainableVariables();
      const session = compile(model)!;
      try {
        const tokens = batch.inputIds.length * 15;
        const compiled = await session.lossAndGradients(batch, {
          lossScale: 1 / tokens,
          dropoutSeed: 0,
        });
        const { value, grads } = tf.variableGrads(
          () => model.loss(batch.inputIds, batch.labels),
          named.map((n) => n.variable),
        );
        expectNear([compiled.loss], [(await value.data())[0]!], RTOL, "loss");
        for (const [i, { key, variable }] of named.entries()) {
          const want = grads[variable.name];
          expect(want, key).toBeDefined();
          expectNear(
            compiled.gradients[i]!,
            (await want!.data()) as Float32Array,
            rtolOf(type),
            `d${key}`,
          );
        }
        tf.dispose([value, ...Object.values(grads)]);
      } finally {
        session.dispose();
        model.model.dispose();
      }
    });

  it("trains to the tape's losses over 4 steps of AdamW with clipping", async (ctx) => {
    await needGpu(ctx);
    const losses = async (executor: "compiled" | "tape") => {
      const model = await trainable("gpt2");
      const events: TrainEvent[] = [];
      const batch = batchOf(model.model.dims.vocabSize);
      const trainer = new Trainer(model, {
        learningRate: 1e-3,
        maxGradNorm: 0.5,
        executor,
        onEvent: (e) => events.push(e),
      });
      await trainer.train({ train: [batch, batch, batch, batch] });
      model.model.dispose();
      return events.flatMap((e) => (e.type === "step" ? [e.loss] : []));
    };
    const compiled = await losses("compiled");
    const tape = await losses("tape");
    expect(compiled).toHaveLength(4);
    expectNear(compiled, tape, 1e-4, "losses");
    expect(compiled[3]!).toBeLessThan(compiled[0]!);
  });
});

/**
 * Classification heads on the compiled step against the tape (tfjs's autograd of the same model): for every
 * architecture, sequence classification (pooled at the rightmost non-pad token) and token classification (with a
 * bias), the loss and the gradients of every LoRA tensor and of the head's weight and bias agree to 1e-5 relative
 * normwise, as the LM head's do (compiled_step.test.ts). The targets are the head's labels, not shifted.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, LoraModel, PretrainedModel } from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import {
  sequenceTargets,
  type HeadTask,
} from "../../../packages/core/src/models/heads.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { compileLora } from "../../helpers/session.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectNear, seededValues } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "../models/tiny_configs.js";

const rtolOf = (type: string) => (type === "gemma3_text" ? 3e-5 : 1e-5);
const PAD = 0;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function load(type: string): Promise<PretrainedModel> {
  const raw = TINY_CONFIGS[type]!;
  const lm = await resolveConfig(raw, `${type}/config.json`).load(
    randomWeightSource(raw, `${type} (random)`),
    1 << 30,
    {},
  );
  return new PretrainedModel(lm, undefined, raw, {}, `${type} (random)`);
}

/** Two rows of 16 tokens (ids in [1, V)), the second padded with PAD after 11; labels of 3 classes. */
function batchOf(V: number, task: HeadTask) {
  const u = seededValues(32, 7);
  const inputIds = [0, 1].map((b) =>
    Array.from({ length: 16 }, (_, t) =>
      b === 1 && t >= 11
        ? PAD
        : 1 + Math.floor(((u[b * 16 + t]! + 1) / 2) * (V - 1)),
    ),
  );
  const labels =
    task === "seq-cls"
      ? sequenceTargets(inputIds, [2, 1], PAD)
      : inputIds.map((row, b) =>
          row.map((id, t) => (id === PAD || t === 0 ? -100 : (b + t) % 3)),
        );
  return { inputIds, labels };
}

async function compare(type: string, task: HeadTask): Promise<void> {
  const model = await load(type);
  const peft = new LoraModel(model);
  peft.addAdapter(
    "default",
    { r: 4, loraAlpha: 8, targetModules: "all-linear", initLoraWeights: false },
    { seed: 3, head: { task, labels: ["a", "b", "c"], padTokenId: PAD } },
  );
  const batch = batchOf(model.dims.vocabSize, task);
  const tokens = batch.labels.flat().filter((l) => l !== -100).length;
  const session = compileLora(peft);
  try {
    const compiled = await session.lossAndGradients(batch, {
      lossScale: 1 / tokens,
      dropoutSeed: 0,
    });
    const vars = peft.trainableVariables();
    const { value, grads } = tf.variableGrads(
      () => peft.loss(batch.inputIds, batch.labels),
      vars,
    );
    const oracle = (await value.data())[0]!;
    expectNear([compiled.loss], [oracle], 1e-5, `${type} ${task} loss`);
    const names = peft.namedTrainableVariables().map((v) => v.key);
    expect(names.filter((n) => !n.includes("lora_"))).toEqual(
      task === "seq-cls"
        ? ["score.weight"]
        : type === "gpt2"
          ? ["classifier.weight", "classifier.bias"]
          : ["score.weight", "score.bias"],
    );
    for (const [i, v] of vars.entries()) {
      const g = (await grads[v.name]!.data()) as Float32Array;
      expectNear(
        compiled.gradients[i]!,
        g,
        rtolOf(type),
        `${type} d${names[i]}`,
      );
    }
    tf.dispose([value, ...Object.values(grads)]);
  } finally {
    session.dispose();
    peft.dispose();
    model.lm.dispose();
  }
}

describe("classification heads on the compiled step against the tape", () => {
  for (const type of Object.keys(TINY_CONFIGS))
    for (const task of ["seq-cls", "token-cls"] as const)
      it(`${type}, ${task}: loss and every gradient, the head's included`, async (ctx) => {
        await needGpu(ctx);
        await compare(type, task);
      });
});

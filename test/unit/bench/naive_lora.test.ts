/**
 * The benchmark's naive baseline (benchmarks/lib/naive_lora.ts) trains the same thing webtune trains: on tiny
 * Llama (tied and untied, GQA), Qwen2 and GPT-2 models with the same weights and the same nonzero LoRA A and B, the loss and the gradient
 * of every A and B agree within 1e-4 relative, on a batch with -100 labels, also when the vocabulary table and the
 * loss are split to fit a small storage binding. Steps leak no tensors, and dispose() frees the model.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  LoraModel,
  PretrainedModel,
  resolveConfig,
} from "@webtune/core";
import { buildNaiveLoraModel } from "../../../benchmarks/lib/naive_lora.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR, readConfig } from "../../helpers/golden.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectClose } from "../../helpers/tensors.js";

/** Relative tolerance of loss and gradients: f32 sums in another order (fused kernel vs tf.matMul). */
const RTOL = 1e-4;
const BIG = 1 << 30;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** A batch [3, 12] of ids below V, and labels with a masked prompt, a masked tail and a fully masked pair. */
function batch(V: number): { ids: number[][]; labels: number[][] } {
  const ids = [0, 1, 2].map((b) =>
    Array.from({ length: 12 }, (_, t) => (b * 31 + t * 17 + 5) % V),
  );
  const labels = ids.map((row) => [...row]);
  for (let t = 0; t < 4; t++) labels[0]![t] = -100;
  for (let t = 9; t < 12; t++) labels[1]![t] = -100;
  labels[2]![5] = labels[2]![6] = -100;
  return { ids, labels };
}

async function models(
  name: string,
  targetModules: string[],
  naiveBindingBytes?: number,
) {
  const config = readConfig(`${GOLDEN_DIR}tiny/${name}`);
  const source = randomWeightSource(config, `${name} (random)`);
  const lm = await resolveConfig(config, `${name}/config.json`).load(
    source,
    BIG,
  );
  const peft = new LoraModel(
    new PretrainedModel(lm, undefined, config, {}, name),
  );
  // Random B, so the LoRA path changes the loss and A's gradient is nonzero.
  peft.addAdapter(
    "default",
    { r: 4, loraAlpha: 8, targetModules, initLoraWeights: false },
    { seed: 3 },
  );
  const naive = await buildNaiveLoraModel(config, source, {
    r: 4,
    alpha: 8,
    targetModules,
    maxBindingBytes: naiveBindingBytes,
  });
  const theirs = new Map(
    peft.namedTrainableVariables().map((v) => [v.key, v.variable]),
  );
  expect(theirs.size).toBe(naive.trainableVariables.length);
  const pairs = naive.adapters.flatMap((a) => [
    {
      key: `${a.module}.lora_A`,
      naive: a.A,
      webtune: theirs.get(`${a.module}.lora_A`)!,
    },
    {
      key: `${a.module}.lora_B`,
      naive: a.B,
      webtune: theirs.get(`${a.module}.lora_B`)!,
    },
  ]);
  for (const p of pairs) {
    expect(p.webtune, p.key).toBeDefined();
    p.naive.assign(p.webtune);
  }
  const V = config["vocab_size"] as number;
  return {
    V,
    naive,
    peft,
    pairs,
    dispose: () => {
      naive.dispose();
      peft.dispose();
      lm.dispose();
    },
  };
}

async function lossAndGrads(
  f: () => tf.Scalar,
  vars: tf.Variable[],
): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  const { value, grads } = tf.variableGrads(f, vars);
  const out = new Map<string, Float32Array>();
  for (const v of vars)
    out.set(v.name, (await grads[v.name]!.data()) as Float32Array);
  const loss = (await value.data())[0]!;
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: out };
}

const CASES: [string, string, string[], number | undefined][] = [
  [
    "llama (GQA, tied)",
    "llama_tied",
    [
      "q_proj",
      "k_proj",
      "v_proj",
      "o_proj",
      "gate_proj",
      "up_proj",
      "down_proj",
    ],
    undefined,
  ],
  [
    "llama (3 query heads per kv head, untied head)",
    "llama_untied",
    ["q_proj", "k_proj", "o_proj", "down_proj"],
    undefined,
  ],
  ["qwen2 (q/k/v biases)", "qwen2", ["q_proj", "v_proj", "o_proj"], undefined],
  ["gpt2 (Conv1D)", "gpt2", ["c_attn", "c_proj", "c_fc"], undefined],
  // 40 rows of 48 floats: the [96, 48] table in 3 chunks, the loss in blocks of 20 rows.
  [
    "gpt2, split to a 7680-byte binding",
    "gpt2",
    ["c_attn", "c_proj", "c_fc"],
    40 * 48 * 4,
  ],
];

describe.each(CASES)("%s", (title, name, targets, binding) => {
  it(`gives webtune's loss and A, B gradients within ${RTOL} relative`, async (ctx) => {
    await needGpu(ctx);
    const m = await models(name, targets, binding);
    try {
      const { ids, labels } = batch(m.V);
      const ours = await lossAndGrads(
        () => m.naive.loss(ids, labels),
        m.naive.trainableVariables,
      );
      const theirs = await lossAndGrads(
        () => m.peft.loss(ids, labels),
        m.pairs.map((p) => p.webtune),
      );
      console.log(
        `${title}: loss naive ${ours.loss}, webtune ${theirs.loss}, ${m.pairs.length} tensors`,
      );
      expectClose([ours.loss], [theirs.loss], RTOL, `${title} loss`);
      let worst = 0;
      for (const p of m.pairs) {
        const g = theirs.grads.get(p.webtune.name)!;
        expect(
          Math.max(...g.map(Math.abs)),
          `${p.key} gradient`,
        ).toBeGreaterThan(0);
        worst = Math.max(
          worst,
          expectClose(
            ours.grads.get(p.naive.name)!,
            g,
            RTOL,
            `${title} ${p.key}`,
          ),
        );
      }
      console.log(`${title}: worst gradient relative error ${worst}`);
    } finally {
      m.dispose();
    }
  });
});

it("runs optimizer steps without leaking tensors, and lowers the loss", async (ctx) => {
  await needGpu(ctx);
  const before = tf.memory().numTensors;
  const m = await models("llama_tied", ["q_proj", "v_proj"]);
  const { ids, labels } = batch(m.V);
  const optimizer = tf.train.adam(1e-2);
  const losses: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < 4; i++) {
    const loss = m.naive.step(ids, labels, optimizer);
    losses.push((await loss.data())[0]!);
    loss.dispose();
    counts.push(tf.memory().numTensors);
  }
  // Adam makes its moment variables in step 1; from then on the count is flat.
  expect(counts.slice(1)).toEqual([counts[1], counts[1], counts[1]]);
  expect(losses[3]).toBeLessThan(losses[0]!);
  optimizer.dispose();
  m.dispose();
  expect(tf.memory().numTensors, "after dispose").toBe(before);
});

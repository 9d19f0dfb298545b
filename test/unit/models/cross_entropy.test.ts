/**
 * The chunked cross-entropy against the plain one, tfjs autograd through full logits: the same loss and the same
 * gradients (w.r.t. the hidden states, LoRA A and B, and every weight of a full fine-tune), with ignored labels,
 * several head chunks and row blocks, and Gemma's logit softcap; no tensor left behind; and a peak of live bytes
 * below the plain one's by more than the logits once the vocabulary is large.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, LoraModel, PretrainedModel } from "@webtune/core";
import { chunkedCrossEntropy } from "../../../packages/core/src/models/cross_entropy.js";
import type { CausalLM } from "../../../packages/core/src/models/causal_lm.js";
import type { Embedding } from "../../../packages/core/src/models/embedding.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { expectClose } from "../../helpers/tensors.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

const BIG = 1 << 30;
/** 30 rows of 32 floats per head chunk: 4 chunks of the 97-token vocabulary, and 32 rows per block of logits. */
const SMALL = 30 * 32 * 4;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const CONFIGS: Record<string, Record<string, unknown>> = {
  ...TINY_CONFIGS,
  // The tiny model's logits are about ±0.3: a cap this small makes tanh far from linear.
  "gemma3_text softcap": {
    ...TINY_CONFIGS["gemma3_text"],
    final_logit_softcapping: 0.2,
  },
};

function load(
  raw: Record<string, unknown>,
  maxBytes = BIG,
  trainable = false,
): Promise<CausalLM> {
  return resolveConfig(raw, "config.json").load(
    randomWeightSource(raw, "random"),
    maxBytes,
    { trainable },
  );
}

/** The LM head and softcap that CausalLM keeps protected. */
function headOf(model: CausalLM): {
  head: Embedding;
  softcap: number | undefined;
} {
  const m = model as unknown as {
    head: Embedding;
    logitSoftcap: number | undefined;
  };
  return { head: m.head, softcap: m.logitSoftcap };
}

// 4 rows of 17 tokens: 64 loss rows, two blocks of 32 with SMALL; some labels ignored in every row.
const ids = Array.from({ length: 4 }, (_, b) =>
  Array.from({ length: 17 }, (_, t) => (b * 31 + t * 7) % 97),
);
const labels = ids.map((row, b) =>
  row.map((id, t) => (t < 2 + b || t % 5 === 0 ? -100 : id)),
);
const targets = labels.flatMap((row) => row.slice(1));

/** Mean cross-entropy of logits [N, V] against targets (-100 ignored), by log-softmax: the reference. */
function plainCrossEntropy(logits: tf.Tensor2D, targets: number[]): tf.Scalar {
  const V = logits.shape[1];
  const valid = targets.map((t) => (t === -100 ? 0 : 1));
  const count = Math.max(1, targets.filter((t) => t !== -100).length);
  const safe = tf.tensor1d(
    targets.map((t) => Math.max(t, 0)),
    "int32",
  );
  const picked = tf.logSoftmax(logits).mul(tf.oneHot(safe, V)).sum(1);
  return picked.mul(tf.tensor1d(valid)).sum().div(-count);
}

/** The reference from the head's full logits cap(h·Eᵀ). */
function plainHeadLoss(
  h: tf.Tensor2D,
  head: Embedding,
  targets: number[],
  softcap: number | undefined,
): tf.Scalar {
  const chunks = head.projectChunks(h);
  const z = chunks.length === 1 ? chunks[0]! : tf.concat(chunks, 1);
  const logits =
    softcap === undefined
      ? z
      : (z.div(softcap).tanh().mul(softcap) as tf.Tensor2D);
  return plainCrossEntropy(logits, targets);
}

/** The reference next-token loss from model.logits, label t + 1 predicted at t. */
function plainModelLoss(
  model: { logits(ids: number[][]): tf.Tensor3D },
  ids: number[][],
  labels: number[][],
): tf.Scalar {
  const logits = model.logits(ids);
  const [B, T, V] = logits.shape;
  const rows = logits.slice([0, 0, 0], [B, T - 1, V]).reshape([-1, V]);
  return plainCrossEntropy(
    rows as tf.Tensor2D,
    labels.flatMap((r) => r.slice(1)),
  );
}

async function valueAndGrads(
  f: () => tf.Scalar,
  vars: tf.Variable[],
): Promise<{ loss: number; grads: Float32Array[] }> {
  const { value, grads } = tf.variableGrads(f, vars);
  const loss = (await value.data())[0]!;
  const arrays = await Promise.all(
    vars.map((v) => grads[v.name]!.data() as Promise<Float32Array>),
  );
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: arrays };
}

async function expectSameValueAndGrads(
  chunked: () => tf.Scalar,
  plain: () => tf.Scalar,
  vars: tf.Variable[],
  what: string,
): Promise<void> {
  const got = await valueAndGrads(chunked, vars);
  const want = await valueAndGrads(plain, vars);
  expect(
    Math.abs(got.loss - want.loss) / want.loss,
    `${what}: loss ${got.loss} vs ${want.loss}`,
  ).toBeLessThan(1e-5);
  vars.forEach((v, i) =>
    expectClose(got.grads[i]!, want.grads[i]!, 1e-5, `${what}: d${v.name}`),
  );
}

/** The model's final hidden states of `ids` at every position but the last, [N, C], as a variable to differentiate. */
function hiddenVariable(model: CausalLM): tf.Variable<tf.Rank.R2> {
  const h = tf.tidy(() => {
    const [B, T] = [ids.length, ids[0]!.length];
    const C = model.dims.hiddenSize;
    return model
      .hiddenStates(tf.tensor2d(ids, [B, T], "int32"))
      .slice([0, 0, 0], [B, T - 1, C])
      .reshape([B * (T - 1), C]) as tf.Tensor2D;
  });
  const v = tf.variable(h);
  h.dispose();
  return v;
}

describe.each(Object.keys(CONFIGS))("%s", (type) => {
  it("gives the plain loss and hidden-state gradient over several head chunks and row blocks, with ignored labels", async (ctx) => {
    await needGpu(ctx);
    const model = await load(CONFIGS[type]!, SMALL);
    const { head, softcap } = headOf(model);
    expect(head.chunks.length).toBe(4);
    expect(head.rowsPerLogitBlock).toBe(32);
    const h = hiddenVariable(model);
    await expectSameValueAndGrads(
      () => chunkedCrossEntropy(h, head, targets, softcap),
      () => plainHeadLoss(h, head, targets, softcap),
      [h],
      type,
    );
    // CausalLM.loss shifts the labels and gives the same value.
    const [loss, plain] = tf.tidy(() => [
      model.loss(ids, labels),
      plainModelLoss(model, ids, labels),
    ]);
    const [l, p] = [(await loss.data())[0]!, (await plain.data())[0]!];
    expect(Math.abs(l - p) / p).toBeLessThan(1e-5);
    tf.dispose([loss, plain, h]);
    model.dispose();
  });

  it("gives the plain gradients of LoRA A and B", async (ctx) => {
    await needGpu(ctx);
    const model = await load(CONFIGS[type]!, SMALL);
    const peft = new LoraModel(
      new PretrainedModel(model, undefined, CONFIGS[type]!, {}, type),
    );
    // Random B as well as A, so that dA is not zero.
    peft.addAdapter("a", {
      r: 4,
      targetModules: "all-linear",
      initLoraWeights: false,
    });
    await expectSameValueAndGrads(
      () => peft.loss(ids, labels),
      () => plainModelLoss(peft, ids, labels),
      peft.trainableVariables(),
      `${type} LoRA`,
    );
    peft.dispose();
    model.dispose();
  });

  it("gives the plain gradient of every weight, the head's chunks included, in a full fine-tune", async (ctx) => {
    await needGpu(ctx);
    const model = await load(CONFIGS[type]!, SMALL, true);
    const vars = model
      .weights()
      .filter((w): w is tf.Variable => w instanceof tf.Variable);
    expect(vars.length).toBe(model.weights().length);
    await expectSameValueAndGrads(
      () => model.loss(ids, labels),
      () => plainModelLoss(model, ids, labels),
      vars,
      `${type} full`,
    );
    model.dispose();
  });
});

it("gives the plain gradient through a softcap that saturates, and the mean of nothing when every label is ignored", async (ctx) => {
  await needGpu(ctx);
  const model = await load(TINY_CONFIGS["llama"]!, SMALL);
  const { head } = headOf(model);
  // Logits of about ±10 against a cap of 2: deep in tanh's bend.
  const x = hiddenVariable(model);
  const h = tf.variable(tf.tidy(() => x.mul(30) as tf.Tensor2D));
  x.dispose();
  await expectSameValueAndGrads(
    () => chunkedCrossEntropy(h, head, targets, 2),
    () => plainHeadLoss(h, head, targets, 2),
    [h],
    "softcap 2",
  );
  const none = targets.map(() => -100);
  const { loss, grads } = await valueAndGrads(
    () => chunkedCrossEntropy(h, head, none, undefined),
    [h],
  );
  expect(Math.abs(loss)).toBe(0);
  expect(grads[0]!.every((g) => g === 0)).toBe(true);
  h.dispose();
  model.dispose();
});

it("leaves no tensor behind across repeated value-and-grad steps", async (ctx) => {
  await needGpu(ctx);
  const model = await load(TINY_CONFIGS["qwen2"]!, SMALL, true);
  const vars = model
    .weights()
    .filter((w): w is tf.Variable => w instanceof tf.Variable);
  const step = () => valueAndGrads(() => model.loss(ids, labels), vars);
  await step();
  const after = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) await step();
  expect(tf.memory().numTensors).toBe(after);
  const loss = model.loss(ids, labels);
  loss.dispose();
  expect(tf.memory().numTensors).toBe(after);
  model.dispose();
});

it("peaks below autograd through full logits by more than the logits themselves, for a large vocabulary", async (ctx) => {
  await needGpu(ctx);
  const V = 16384;
  // 2048-row head chunks, so 32 rows per block of logits: at most [32, 2048] floats of logits at a time.
  const model = await load(
    { ...TINY_CONFIGS["llama"], vocab_size: V },
    2048 * 32 * 4,
  );
  const peft = new LoraModel(
    new PretrainedModel(model, undefined, TINY_CONFIGS["llama"]!, {}, "big"),
  );
  peft.addAdapter("a", { r: 4, targetModules: ["q_proj", "v_proj"] });
  const vars = peft.trainableVariables();
  const long = Array.from({ length: 2 }, (_, b) =>
    Array.from({ length: 33 }, (_, t) => (b * 4099 + t * 517) % V),
  );
  const peak = async (f: () => tf.Scalar) =>
    (await tf.profile(() => tf.dispose(valueAndGradsSync(f, vars)))).peakBytes;
  // Warm-up: kernels compiled and buffers pooled alike for both.
  tf.dispose(valueAndGradsSync(() => peft.loss(long), vars));
  tf.dispose(valueAndGradsSync(() => plainModelLoss(peft, long, long), vars));
  const chunked = await peak(() => peft.loss(long));
  const plain = await peak(() => plainModelLoss(peft, long, long));
  const logitsBytes = 2 * 32 * V * 4;
  console.log(
    `peak bytes of one LoRA value-and-grad, V = ${V}, N = 64: chunked ${chunked}, plain ${plain}, logits ${logitsBytes}`,
  );
  expect(plain - chunked).toBeGreaterThanOrEqual(logitsBytes);
  peft.dispose();
  model.dispose();
});

function valueAndGradsSync(
  f: () => tf.Scalar,
  vars: tf.Variable[],
): tf.Tensor[] {
  const { value, grads } = tf.variableGrads(f, vars);
  return [value, ...Object.values(grads)];
}

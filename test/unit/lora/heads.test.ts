/**
 * Classification heads beside an adapter: HF's pooling rule, the head's refusals, adapters whose files disagree
 * with their config (refused by name, nothing left behind), and a merged classification model saved as a
 * Hugging Face folder (architectures, id2label, pad_token_id, score.weight) and loaded back with its head.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ClassificationHead,
  disposeRuntime,
  LoraModel,
  pooledPositions,
  savePretrainedToDirectory,
  sequenceTargets,
  writeSafetensors,
  type PretrainedModel,
} from "@webtune/core";
import { loadModel } from "../../../packages/core/src/models/pretrained.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR } from "../../helpers/golden.js";

const TINY = `${GOLDEN_DIR}tiny/llama_untied`;
const IDS = [
  [5, 9, 13, 2, 2],
  [7, 2, 8, 11, 4],
];

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function pooledLogits(
  model: { logits(ids: number[][]): tf.Tensor3D },
  pad: number,
): Promise<number[]> {
  const logits = model.logits(IDS);
  const [, T, L] = logits.shape;
  const all = Array.from((await logits.data()) as Float32Array);
  logits.dispose();
  return pooledPositions(IDS, pad).flatMap((t, b) =>
    all.slice((b * T + t) * L, (b * T + t + 1) * L),
  );
}

describe("HF's pooling", () => {
  it("takes the rightmost token that is not the pad, whatever precedes it", () => {
    expect(pooledPositions(IDS, 2)).toEqual([2, 4]);
    // A row of padding alone pools position 0 (argmax of zeros); no pad id pools the last token.
    expect(pooledPositions([[2, 2, 2]], 2)).toEqual([0]);
    expect(pooledPositions(IDS, undefined)).toEqual([4, 4]);
    expect(sequenceTargets(IDS, [1, 0], 2)).toEqual([
      [-100, -100, 1, -100, -100],
      [-100, -100, -100, -100, 0],
    ]);
    expect(() => sequenceTargets(IDS, [1], 2)).toThrow(/1 labels for 2 rows/);
  });
});

describe("classification heads", () => {
  it("refuses a head whose shape, bias or labels disagree, naming the file", () => {
    const values = { weight: new Float32Array(6), weightShape: [3, 2] };
    const init = {
      task: "seq-cls" as const,
      labels: ["a", "b"],
      padTokenId: 0,
    };
    expect(() =>
      ClassificationHead.fromValues("llama", 2, init, values, "x.safetensors"),
    ).toThrow(/x\.safetensors: score\.weight is \[3, 2\].*must be \[2, 2\]/);
    expect(() =>
      ClassificationHead.fromValues(
        "gpt2",
        2,
        { ...init, task: "token-cls" },
        { weight: new Float32Array(4), weightShape: [2, 2] },
        "y",
      ),
    ).toThrow(/token-cls head needs classifier\.bias/);
    expect(() =>
      ClassificationHead.create("llama", 2, { ...init, labels: ["a", "a"] }),
    ).toThrow(/label "a" is repeated/);
    expect(() =>
      ClassificationHead.create("llama", 2, { ...init, labels: ["a"] }),
    ).toThrow(/at least 2 labels/);
  });

  it("refuses adapter files that disagree with their config, and leaves no tensor behind", async (ctx) => {
    await needGpu(ctx);
    const model = await loadModel(TINY, { cache: false });
    const peft = new LoraModel(model);
    try {
      peft.addAdapter(
        "cls",
        { r: 2, loraAlpha: 4, targetModules: ["q_proj"] },
        { head: { task: "seq-cls", labels: ["neg", "pos"] } },
      );
      const files = await peft.saveAdapter("cls");
      const config = JSON.parse(files["adapter_config.json"]) as Record<
        string,
        unknown
      >;
      const before = tf.memory().numTensors;
      // SEQ_CLS without its head's weights.
      const lora =
        await import("../../../packages/core/src/io/safetensors.js").then(
          async (m) => m.openSafetensors(files["adapter_model.safetensors"]),
        );
      const tensors: Record<
        string,
        { dtype: "F32"; shape: number[]; data: Float32Array }
      > = {};
      for (const name of lora.names.filter((n) => n.includes("lora_"))) {
        const t = await lora.read(name);
        tensors[name] = {
          dtype: "F32",
          shape: t.shape,
          data: t.data as Float32Array,
        };
      }
      await expect(
        peft.loadAdapter("headless", {
          "adapter_config.json": files["adapter_config.json"],
          "adapter_model.safetensors": writeSafetensors(tensors),
        }),
      ).rejects.toThrow(/SEQ_CLS adapter for llama must save its head "score"/);
      // A saved head under a task that has none.
      await expect(
        peft.loadAdapter("lm", {
          ...files,
          "adapter_config.json": JSON.stringify({
            ...config,
            task_type: "CAUSAL_LM",
          }),
        }),
      ).rejects.toThrow(/saves score\.weight but its task_type is "CAUSAL_LM"/);
      expect(tf.memory().numTensors).toBe(before);
      expect(peft.adapterNames).toEqual(["cls"]);
      // Loaded and deleted, a good adapter (head included) leaves nothing either: the tensors its variables
      // were made from are released too.
      await peft.loadAdapter("again", files);
      expect(peft.head("again")?.labels).toEqual(["neg", "pos"]);
      peft.deleteAdapter("again");
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      peft.dispose();
      model.dispose();
    }
  });

  it("a merged classification model saves as a Hugging Face folder and loads back with its head", async (ctx) => {
    await needGpu(ctx);
    const before = tf.memory().numTensors;
    const model = await loadModel(TINY, { cache: false });
    const peft = new LoraModel(model);
    peft.addAdapter(
      "cls",
      { r: 2, loraAlpha: 4, targetModules: ["q_proj"], initLoraWeights: false },
      { seed: 5, head: { task: "seq-cls", labels: ["neg", "pos"] } },
    );
    const expected = await pooledLogits(peft, 2);
    const merged: PretrainedModel = peft.mergeAndUnload();
    // The head is the model's now: letting go of the LoraModel keeps it.
    peft.dispose();
    expect(merged.lm.taskHead?.labels).toEqual(["neg", "pos"]);
    const dir = mkdtempSync(join(tmpdir(), "webtune-merged-cls-"));
    await savePretrainedToDirectory(merged, dir);
    merged.dispose();
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config).toMatchObject({
      architectures: ["LlamaForSequenceClassification"],
      id2label: { "0": "neg", "1": "pos" },
      label2id: { neg: 0, pos: 1 },
      pad_token_id: 2,
    });
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    const again = await loadModel(dir, { cache: false }).finally(
      () => (console.warn = warn),
    );
    try {
      // No "unused tensor" warning: score.weight is the head's.
      expect(warnings).toEqual([]);
      expect(again.lm.taskHead?.labels).toEqual(["neg", "pos"]);
      const got = await pooledLogits(again, 2);
      got.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 5));
    } finally {
      again.dispose();
    }
    // Both models freed their heads with their weights.
    expect(tf.memory().numTensors).toBe(before);
  });
});

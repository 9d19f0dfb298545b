/**
 * Classification heads against the plain-torch oracle (test/fixtures/golden/make_heads.py, float64 on f32
 * weights), on every architecture's tiny model from disk:
 * - sequence classification: the pooled positions (rightmost non-pad token, a pad inside a row included), the
 *   pooled logits [3, 3] and the loss;
 * - token classification: the logits [2, 10, 5] (with the bias) and the loss with -100 ignored;
 * - a PEFT SEQ_CLS adapter (LoRA + the score head from modules_to_save, saved as PEFT saves it): its pooled logits,
 *   and the files written back (PEFT's keys and config, plus id2label / label2id).
 * Tolerance: every logit within 1e-4 of the largest |logit| (expectClose); the loss within 1e-5 relative.
 */
import { readFileSync, readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import {
  ClassificationHead,
  disposeRuntime,
  LoraModel,
  pooledPositions,
  sequenceTargets,
  type HeadTask,
  type PretrainedModel,
} from "@webtune/core";
import { loadModel } from "../../../packages/core/src/models/pretrained.js";
import { openSafetensors } from "../../../packages/core/src/io/safetensors.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR, readGolden } from "../../helpers/golden.js";
import { expectClose, expectNear } from "../../helpers/tensors.js";

const HEADS = `${GOLDEN_DIR}heads/`;
const PEFT_SEQ_CLS = new URL(
  "../../fixtures/peft/llama_seq_cls/",
  import.meta.url,
).pathname;

interface HeadGolden {
  base: string;
  task: "seq_cls" | "token_cls";
  num_labels: number;
  pad_token_id?: number;
  input_ids: number[][];
  labels: number[] | number[][];
  pooled_positions?: number[];
  head_keys?: string[];
  loss: number;
}

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const meta = (dir: string) =>
  JSON.parse(readFileSync(`${dir}/golden.json`, "utf8")) as HeadGolden;

const labelNames = (n: number) =>
  Array.from({ length: n }, (_, i) => `LABEL_${i}`);

async function headFrom(
  model: PretrainedModel,
  dir: string,
  g: HeadGolden,
): Promise<ClassificationHead> {
  const task: HeadTask = g.task === "seq_cls" ? "seq-cls" : "token-cls";
  const file = await openSafetensors(
    new Uint8Array(readFileSync(`${dir}/head.safetensors`)),
  );
  const keys = [...file.names];
  const weight = await file.read(keys.find((k) => k.endsWith(".weight"))!);
  const biasKey = keys.find((k) => k.endsWith(".bias"));
  const head = ClassificationHead.fromValues(
    model.dims.modelType,
    model.dims.hiddenSize,
    { task, labels: labelNames(g.num_labels), padTokenId: g.pad_token_id },
    {
      weight: weight.data as Float32Array,
      weightShape: weight.shape,
      bias: biasKey
        ? ((await file.read(biasKey)).data as Float32Array)
        : undefined,
    },
    dir,
  );
  // The HF checkpoint names the head as webtune does: score / classifier, with a bias exactly where HF has one.
  expect(
    head
      .namedVariables()
      .map((v) => v.key)
      .sort(),
  ).toEqual(keys.sort());
  return head;
}

/** The logits at each row's pooled position: [B, L]. */
async function pooled(
  logits: tf.Tensor3D,
  positions: number[],
): Promise<Float32Array> {
  const [B, T, L] = logits.shape;
  const all = (await logits.data()) as Float32Array;
  const out = new Float32Array(B * L);
  positions.forEach((t, b) =>
    out.set(all.subarray((b * T + t) * L, (b * T + t + 1) * L), b * L),
  );
  return out;
}

async function lossOf(
  model: { loss(ids: number[][], labels?: number[][]): tf.Scalar },
  ids: number[][],
  labels: number[][],
): Promise<number> {
  const loss = model.loss(ids, labels);
  const v = (await loss.data())[0]!;
  loss.dispose();
  return v;
}

describe("classification heads against the oracle", () => {
  const cases = readdirSync(HEADS, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) =>
      readdirSync(`${HEADS}${d.name}`).map((task) => `${d.name}/${task}`),
    );
  it("covers both heads of every supported architecture", () => {
    for (const name of ["gpt2", "llama_untied", "qwen2", "gemma3_text"])
      expect(cases).toEqual(
        expect.arrayContaining([`${name}/seq_cls`, `${name}/token_cls`]),
      );
  });
  for (const name of cases)
    it(`${name}: logits and loss`, async (ctx) => {
      await needGpu(ctx);
      const dir = `${HEADS}${name}`;
      const g = meta(dir);
      const golden = readGolden(dir);
      const model = await loadModel(`${GOLDEN_DIR}${g.base}`, { cache: false });
      const head = await headFrom(model, dir, g);
      model.lm.taskHead = head;
      try {
        const logits = model.logits(g.input_ids);
        if (g.task === "seq_cls") {
          const at = pooledPositions(g.input_ids, g.pad_token_id);
          expect(at).toEqual(g.pooled_positions);
          expectClose(await pooled(logits, at), golden.logits, 1e-4, name);
          const targets = sequenceTargets(
            g.input_ids,
            g.labels as number[],
            g.pad_token_id,
          );
          expectNear(
            [await lossOf(model, g.input_ids, targets)],
            [g.loss],
            1e-5,
            `${name} loss`,
          );
        } else {
          expectClose(
            (await logits.data()) as Float32Array,
            golden.logits,
            1e-4,
            name,
          );
          expectNear(
            [await lossOf(model, g.input_ids, g.labels as number[][])],
            [g.loss],
            1e-5,
            `${name} loss`,
          );
        }
        logits.dispose();
      } finally {
        model.lm.taskHead = undefined;
        head.dispose();
        model.dispose();
      }
    });

  it("a PEFT SEQ_CLS adapter with modules_to_save: the oracle's pooled logits, and PEFT's files written back", async (ctx) => {
    await needGpu(ctx);
    const g = meta(PEFT_SEQ_CLS);
    const golden = readGolden(PEFT_SEQ_CLS);
    const model = await loadModel(`${GOLDEN_DIR}${g.base}`, { cache: false });
    const peft = new LoraModel(model);
    try {
      await peft.loadAdapter("default", PEFT_SEQ_CLS);
      const head = peft.head()!;
      // Python PEFT writes no id2label: HF's LABEL_i names, as AutoConfig gives them.
      expect(head.labels).toEqual(labelNames(3));
      expect(model.lm.taskHead).toBe(head);
      // The tiny config has no pad_token_id and the folder no tokenizer: the pad is the EOS id (2), as the oracle pads.
      expect(head.padTokenId).toBe(g.pad_token_id);
      const logits = peft.logits(g.input_ids);
      expectClose(
        await pooled(logits, pooledPositions(g.input_ids, head.padTokenId)),
        golden.logits,
        1e-4,
        "llama_seq_cls",
      );
      logits.dispose();
      const saved = await peft.saveAdapter();
      const original = JSON.parse(
        readFileSync(`${PEFT_SEQ_CLS}adapter_config.json`, "utf8"),
      ) as Record<string, unknown>;
      expect(JSON.parse(saved["adapter_config.json"])).toEqual({
        ...original,
        id2label: { "0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2" },
        label2id: { LABEL_0: 0, LABEL_1: 1, LABEL_2: 2 },
      });
      const theirs = await openSafetensors(
        new Uint8Array(
          readFileSync(`${PEFT_SEQ_CLS}adapter_model.safetensors`),
        ),
      );
      const ours = await openSafetensors(saved["adapter_model.safetensors"]);
      expect([...ours.names].sort()).toEqual([...theirs.names].sort());
      expect(ours.names).toContain("base_model.model.score.weight");
      for (const key of theirs.names)
        expect(Array.from((await ours.read(key)).data), key).toEqual(
          Array.from((await theirs.read(key)).data),
        );
    } finally {
      peft.dispose();
      model.dispose();
    }
  });
});

/**
 * Adapters in PEFT's exact on-disk layout, written by an independent plain-torch reading of PEFT
 * (test/fixtures/golden/make_golden.py, see test/fixtures/peft/PEFT_FORMAT.md), load in webtune and give the
 * oracle's logits within 1e-4: GPT-2 Conv1D with fan_in_fan_out, Llama GQA with rsLoRA and rank/alpha patterns,
 * DoRA, layers_to_transform, a regex target, and weighted combinations. What webtune saves has PEFT's fields.
 */
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  loadModel,
  LoraModel,
  openSafetensors,
  type PretrainedModel,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR, readGolden } from "../../helpers/golden.js";
import { expectClose } from "../../helpers/tensors.js";

const PEFT_DIR = new URL("../../fixtures/peft/", import.meta.url).pathname;
// Language-model adapters; a classification head's (SEQ_CLS) is checked in golden_heads.test.ts.
const fixtures = readdirSync(PEFT_DIR).filter(
  (d) =>
    existsSync(`${PEFT_DIR}${d}/adapter_config.json`) &&
    JSON.parse(readFileSync(`${PEFT_DIR}${d}/adapter_config.json`, "utf8"))
      .task_type === "CAUSAL_LM",
);
const bases = new Map<string, PretrainedModel>();

beforeAll(async () => {
  await startGpu();
});
afterAll(() => {
  for (const m of bases.values()) m.dispose();
  disposeRuntime();
});

async function baseOf(
  dir: string,
): Promise<{ model: PretrainedModel; golden: ReturnType<typeof readGolden> }> {
  const golden = readGolden(dir);
  const base = (
    JSON.parse(readFileSync(`${dir}/golden.json`, "utf8")) as { base: string }
  ).base;
  if (!bases.has(base))
    bases.set(base, await loadModel(`${GOLDEN_DIR}${base}`, { cache: false }));
  return { model: bases.get(base)!, golden };
}

async function logitsOf(
  peft: LoraModel,
  ids: number[][],
): Promise<Float32Array> {
  const t = peft.logits(ids);
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

describe("PEFT adapters from an independent oracle", () => {
  it("has the fixtures the issue asks for", () => {
    expect(fixtures).toEqual(
      expect.arrayContaining([
        "gpt2_conv1d",
        "llama_rslora_patterns",
        "llama_dora",
        "llama_layers_to_transform",
      ]),
    );
  });

  for (const name of fixtures) {
    it(`${name}: loads and gives the oracle's logits, before and after merging`, async (ctx) => {
      await needGpu(ctx);
      const dir = `${PEFT_DIR}${name}`;
      const { model, golden } = await baseOf(dir);
      const peft = new LoraModel(model);
      try {
        await peft.loadAdapter(name, dir);
        expectClose(
          await logitsOf(peft, golden.input_ids),
          golden.logits,
          1e-4,
          `${name} adapted`,
        );
        peft.merge();
        expectClose(
          await logitsOf(peft, golden.input_ids),
          golden.logits,
          1e-4,
          `${name} merged`,
        );
      } finally {
        peft.dispose();
      }
    });

    it(`${name}: saves back PEFT's config fields and tensor keys, shapes and values`, async (ctx) => {
      await needGpu(ctx);
      const dir = `${PEFT_DIR}${name}`;
      const { model } = await baseOf(dir);
      const peft = new LoraModel(model);
      try {
        await peft.loadAdapter(name, dir);
        const saved = await peft.saveAdapter();
        const original = JSON.parse(
          readFileSync(`${dir}/adapter_config.json`, "utf8"),
        );
        expect(JSON.parse(saved["adapter_config.json"])).toEqual(original);
        const theirs = await openSafetensors(
          new Uint8Array(readFileSync(`${dir}/adapter_model.safetensors`)),
        );
        const ours = await openSafetensors(saved["adapter_model.safetensors"]);
        expect([...ours.names].sort()).toEqual([...theirs.names].sort());
        for (const key of theirs.names) {
          const [a, b] = [await theirs.read(key), await ours.read(key)];
          expect(b.shape, key).toEqual(a.shape);
          expect(b.dtype, key).toBe("F32");
          expect(Array.from(b.data), key).toEqual(Array.from(a.data));
        }
      } finally {
        peft.dispose();
      }
    });
  }

  it("writes exactly the fields PEFT writes, for a new adapter", async (ctx) => {
    await needGpu(ctx);
    const expected = JSON.parse(
      readFileSync(`${PEFT_DIR}expected_config_fields.json`, "utf8"),
    ) as { fields: string[] };
    const { model } = await baseOf(`${PEFT_DIR}llama_dora`);
    const peft = new LoraModel(model);
    try {
      peft.addAdapter("fresh", { r: 4, targetModules: ["q_proj"] });
      const saved = await peft.saveAdapter();
      expect(Object.keys(JSON.parse(saved["adapter_config.json"]))).toEqual(
        expected.fields,
      );
    } finally {
      peft.dispose();
    }
  });

  it("combines two adapters as PEFT's add_weighted_adapter does, linear and cat", async (ctx) => {
    await needGpu(ctx);
    const { model } = await baseOf(`${PEFT_DIR}weighted/a`);
    const peft = new LoraModel(model);
    try {
      await peft.loadAdapter("a", `${PEFT_DIR}weighted/a`);
      await peft.loadAdapter("b", `${PEFT_DIR}weighted/b`);
      for (const type of ["linear", "cat"] as const) {
        const golden = readGolden(`${PEFT_DIR}weighted/${type}`);
        peft.addWeightedAdapter(["a", "b"], [0.7, 0.3], type, type);
        peft.setAdapter(type);
        expectClose(
          await logitsOf(peft, golden.input_ids),
          golden.logits,
          1e-4,
          `weighted ${type}`,
        );
      }
    } finally {
      peft.dispose();
    }
  });
});

/**
 * savePretrained writes a Hugging Face folder that loads back to the same model, for every architecture, and a
 * merged LoRA adapter saves as plain weights giving the adapted logits.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  loadModel,
  LoraModel,
  openSafetensors,
  savePretrained,
  type PretrainedModel,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR, goldenNames, readGolden } from "../../helpers/golden.js";
import { expectClose } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function writeFolder(model: PretrainedModel): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "webtune-saved-"));
  for (const [name, data] of Object.entries(await savePretrained(model)))
    writeFileSync(join(dir, name), data);
  return dir;
}

async function logitsOf(
  model: {
    logits(ids: number[][]): { data(): Promise<unknown>; dispose(): void };
  },
  ids: number[][],
) {
  const t = model.logits(ids);
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

describe("savePretrained", () => {
  for (const name of goldenNames("tiny")) {
    it(`${name}: the saved folder has the checkpoint's tensor names and loads back to the same logits`, async (ctx) => {
      await needGpu(ctx);
      const src = `${GOLDEN_DIR}tiny/${name}`;
      const model = await loadModel(src, { cache: false });
      const dir = await writeFolder(model);
      const original = await openSafetensors(
        new Uint8Array(readFileSync(`${src}/model.safetensors`)),
      );
      const saved = await openSafetensors(
        new Uint8Array(readFileSync(`${dir}/model.safetensors`)),
      );
      expect([...saved.names].sort()).toEqual([...original.names].sort());
      const ids = readGolden(src).input_ids;
      const again = await loadModel(dir, { cache: false });
      expectClose(
        await logitsOf(again, ids),
        await logitsOf(model, ids),
        1e-6,
        name,
      );
      model.dispose();
      again.dispose();
    });
  }

  it("saves a merged adapter as plain weights that give the adapted logits", async (ctx) => {
    await needGpu(ctx);
    const src = `${GOLDEN_DIR}tiny/gpt2`;
    const model = await loadModel(src, { cache: false });
    const peft = new LoraModel(model);
    peft.addAdapter(
      "default",
      { r: 4, targetModules: ["c_attn", "c_fc"], initLoraWeights: false },
      { seed: 8 },
    );
    const ids = readGolden(src).input_ids;
    const adapted = await logitsOf(peft, ids);
    const dir = await writeFolder(peft.mergeAndUnload());
    const merged = await loadModel(dir, { cache: false });
    expectClose(
      await logitsOf(merged, ids),
      adapted,
      1e-4,
      "merged and reloaded",
    );
    model.dispose();
    merged.dispose();
  });
});

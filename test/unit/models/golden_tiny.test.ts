/**
 * Logits and loss of every architecture against the plain-torch oracle (test/fixtures/golden/make_golden.py,
 * float64 on f32 weights), loading each tiny model as a Hugging Face folder from disk.
 * Tolerance: every logit within 1e-4 relative (expectClose); the loss within 1e-5 relative.
 */
import {
  mkdtempSync,
  readFileSync,
  writeFileSync,
  copyFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import { loadModel } from "../../../packages/core/src/models/pretrained.js";
import {
  openSafetensors,
  writeSafetensors,
} from "../../../packages/core/src/io/safetensors.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import {
  expectMatchesGolden,
  GOLDEN_DIR,
  goldenNames,
  readGolden,
} from "../../helpers/golden.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function expectFolderMatchesGolden(
  dir: string,
  name: string,
): Promise<void> {
  const model = await loadModel(dir, { cache: false });
  try {
    await expectMatchesGolden(model, readGolden(dir), name);
  } finally {
    model.dispose();
  }
}

describe("golden logits, tiny models from disk", () => {
  const names = goldenNames("tiny");
  it("covers every supported model_type", () => {
    const types = new Set(
      names.map(
        (n) =>
          JSON.parse(readFileSync(`${GOLDEN_DIR}tiny/${n}/config.json`, "utf8"))
            .model_type,
      ),
    );
    expect([...types].sort()).toEqual([
      "gemma3_text",
      "gpt2",
      "llama",
      "qwen2",
    ]);
  });
  for (const name of names) {
    it(`${name} matches the oracle`, async (ctx) => {
      await needGpu(ctx);
      await expectFolderMatchesGolden(`${GOLDEN_DIR}tiny/${name}`, name);
    });
  }

  it("gpt2 loads from a checkpoint without the transformer. prefix, as the hub's gpt2 is stored", async (ctx) => {
    await needGpu(ctx);
    const src = `${GOLDEN_DIR}tiny/gpt2`;
    const dir = mkdtempSync(join(tmpdir(), "webtune-gpt2-"));
    const reader = await openSafetensors(
      new Uint8Array(readFileSync(`${src}/model.safetensors`)),
    );
    const tensors: Record<
      string,
      { dtype: "F32"; shape: number[]; data: Float32Array }
    > = {};
    for (const n of reader.names) {
      const t = await reader.read(n);
      tensors[n.replace(/^transformer\./, "")] = {
        dtype: "F32",
        shape: t.shape,
        data: t.data as Float32Array,
      };
    }
    // The hub's file also carries the causal-mask buffers, which are not weights.
    tensors["h.0.attn.bias"] = {
      dtype: "F32",
      shape: [1, 1, 4, 4],
      data: new Float32Array(16).fill(1),
    };
    writeFileSync(join(dir, "model.safetensors"), writeSafetensors(tensors));
    for (const f of ["config.json", "golden.json", "logits.f32"])
      copyFileSync(`${src}/${f}`, join(dir, f));
    await expectFolderMatchesGolden(dir, "gpt2 (no prefix)");
  });
});

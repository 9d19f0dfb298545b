/**
 * Logits and loss of every architecture against the plain-torch oracle (test/fixtures/golden/make_golden.py,
 * float64 on f32 weights), loading each tiny model as a Hugging Face folder from disk.
 * Tolerance: every logit within 1e-4 relative (expectClose); the loss within 1e-5 relative.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import { loadModel } from "../../../packages/core/src/models/pretrained.js";
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
});

/**
 * The real configs of gpt2, SmolLM2-135M, Qwen2.5-0.5B and gemma-3-270m, with deterministic random weights
 * (test/helpers/random_weights.ts, the same generator as make_golden.py), against the plain-torch oracle:
 * logits at a spread of vocabulary entries within 1e-4 relative, and the full-vocabulary loss within 1e-5.
 * These are the full-size models: the embeddings of three of them exceed a 128 MiB storage binding.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuInfo } from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import {
  expectMatchesGolden,
  GOLDEN_DIR,
  goldenNames,
  readConfig,
  readGolden,
} from "../../helpers/golden.js";
import { randomWeightSource } from "../../helpers/random_weights.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

describe("golden logits, real configs", () => {
  const names = goldenNames("real");
  it("covers gpt2, SmolLM2-135M, Qwen2.5-0.5B and gemma-3-270m", () => {
    expect(names).toEqual([
      "gemma-3-270m",
      "gpt2",
      "qwen2.5-0.5b",
      "smollm2-135m",
    ]);
  });
  for (const name of names) {
    it(`${name} matches the oracle`, async (ctx) => {
      await needGpu(ctx);
      const dir = `${GOLDEN_DIR}real/${name}`;
      const raw = readConfig(dir);
      const golden = readGolden(dir);
      const limit = gpuInfo().limits["maxStorageBufferBindingSize"]!;
      const model = await resolveConfig(raw, `${name}/config.json`).load(
        randomWeightSource(raw, name),
        limit,
      );
      try {
        await expectMatchesGolden(model, golden, name);
      } finally {
        model.dispose();
      }
    });
  }
});

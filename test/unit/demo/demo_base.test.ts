/**
 * The embedded demo base model (demo/public/models/webtune-demo-base), as shipped: its logits against the plain-torch
 * oracle on its own weights (make_golden.py --demo-base), its tokenizer (transformers.js) against the pretraining
 * script's independent BPE encoder, and the loading paths a user takes in Node: a folder, and a hub-shaped server.
 * Tolerance: every logit within 1e-4 relative (expectClose); the loss within 1e-5 relative.
 */
import { cpSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, loadModel } from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import {
  expectMatchesGolden,
  GOLDEN_DIR,
  readGolden,
} from "../../helpers/golden.js";
import { startHubServer } from "../../helpers/hub_server.js";

export const DEMO_BASE = fileURLToPath(
  new URL("../../../demo/public/models/webtune-demo-base", import.meta.url),
);
const golden = readGolden(`${GOLDEN_DIR}demo_base`);
const meta = JSON.parse(
  readFileSync(`${GOLDEN_DIR}demo_base/golden.json`, "utf8"),
) as { texts: string[]; text_ids: number[][] };

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

describe("embedded demo base model", () => {
  it("has every file of a hub model folder, within the size budget", () => {
    for (const f of [
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
      "generation_config.json",
      "README.md",
    ])
      expect(statSync(join(DEMO_BASE, f)).size, f).toBeGreaterThan(0);
    const config = JSON.parse(
      readFileSync(join(DEMO_BASE, "config.json"), "utf8"),
    ) as Record<string, unknown>;
    expect(config["model_type"]).toBe("llama");
    expect(statSync(join(DEMO_BASE, "model.safetensors")).size).toBeLessThan(
      16e6,
    );
  });

  it("loads from its folder, matches the oracle, and tokenizes as the script that trained it", async (ctx) => {
    await needGpu(ctx);
    const model = await loadModel(DEMO_BASE, { cache: false });
    try {
      const params = model.lm.parameterCount();
      expect(params).toBeGreaterThan(1e6);
      expect(params).toBeLessThan(5e6);
      meta.texts.forEach((text, i) =>
        expect(model.tokenizer!.encode(text), text).toEqual(meta.text_ids[i]),
      );
      await expectMatchesGolden(model, golden, "folder");
      expect(model.tokenizer!.chatTemplateNames).toEqual(["default"]);
    } finally {
      model.dispose();
    }
  });

  it("loads from a hub-shaped HTTP server like any hub model", async (ctx) => {
    await needGpu(ctx);
    const root = mkdtempSync(join(tmpdir(), "webtune-demo-hub-"));
    cpSync(DEMO_BASE, join(root, "webtune", "demo-base", "main"), {
      recursive: true,
    });
    const hub = await startHubServer(root);
    try {
      const model = await loadModel("webtune/demo-base", {
        hubUrl: hub.url,
        cache: false,
      });
      try {
        await expectMatchesGolden(model, golden, "hub");
      } finally {
        model.dispose();
      }
      expect(hub.requests.length).toBeGreaterThan(0);
    } finally {
      await hub.close();
    }
  });
});

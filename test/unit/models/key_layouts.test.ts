/**
 * Checkpoint key layouts. A model saved from HF's base class (GPT2Model, LlamaModel...) stores its tensors without
 * the LM-head model's prefix: the hub's gpt2 holds "h.0.attn.c_attn.weight", not "transformer.h.0.attn.c_attn.weight".
 * Whatever the layout, webtune must load the same logits (the plain-torch oracle, 1e-4 relative) and name modules as
 * PEFT does, so that targeting, saved adapters and merged models are the same files.
 */
import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  LoraModel,
  openSafetensors,
  savePretrained,
  writeSafetensors,
} from "@webtune/core";
import { loadModel } from "../../../packages/core/src/models/pretrained.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import {
  expectMatchesGolden,
  GOLDEN_DIR,
  readGolden,
} from "../../helpers/golden.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** Each architecture's HF base_model_prefix and a module PEFT users target on it. */
const LAYOUTS = [
  { name: "gpt2", prefix: "transformer.", target: "c_attn" },
  { name: "llama_tied", prefix: "model.", target: "q_proj" },
  { name: "llama_untied", prefix: "model.", target: "v_proj" },
  { name: "qwen2", prefix: "model.", target: "q_proj" },
  { name: "gemma3_text", prefix: "model.", target: "o_proj" },
] as const;

/** A copy of a tiny golden model with every key stripped of `prefix`, as the base class saves it. */
async function strippedCopy(name: string, prefix: string): Promise<string> {
  const src = `${GOLDEN_DIR}tiny/${name}`;
  const dir = mkdtempSync(join(tmpdir(), `webtune-${name}-bare-`));
  const reader = await openSafetensors(
    new Uint8Array(readFileSync(`${src}/model.safetensors`)),
  );
  const tensors: Record<
    string,
    { dtype: "F32"; shape: number[]; data: Float32Array }
  > = {};
  let stripped = 0;
  for (const n of reader.names) {
    const t = await reader.read(n);
    const bare = n.startsWith(prefix) ? n.slice(prefix.length) : n;
    if (bare !== n) stripped++;
    tensors[bare] = {
      dtype: "F32",
      shape: t.shape,
      data: t.data as Float32Array,
    };
  }
  expect(stripped).toBeGreaterThan(0);
  if (name === "gpt2") {
    // The hub's file also carries the causal-mask buffers, which are not weights.
    tensors["h.0.attn.bias"] = {
      dtype: "F32",
      shape: [1, 1, 4, 4],
      data: new Float32Array(16).fill(1),
    };
  }
  writeFileSync(join(dir, "model.safetensors"), writeSafetensors(tensors));
  for (const f of ["config.json", "golden.json", "logits.f32"])
    copyFileSync(`${src}/${f}`, join(dir, f));
  return dir;
}

describe("checkpoint key layouts", () => {
  for (const { name, prefix, target } of LAYOUTS) {
    it(`${name} without "${prefix}" loads the oracle's logits and PEFT's module names`, async (ctx) => {
      await needGpu(ctx);
      const dir = await strippedCopy(name, prefix);
      const model = await loadModel(dir, { cache: false });
      const peft = new LoraModel(model);
      try {
        await expectMatchesGolden(model, readGolden(dir), `${name} (bare)`);

        const linears = model.lm.linears().map((l) => l.name);
        expect(linears.every((n) => n.startsWith(prefix))).toBe(true);
        expect(
          model.lm
            .otherModules()
            .filter((n) => !n.startsWith(prefix) && n !== "lm_head"),
        ).toEqual([]);

        peft.addAdapter("default", { r: 2, targetModules: [target] });
        const files = await peft.saveAdapter();
        const reader = await openSafetensors(
          files["adapter_model.safetensors"],
        );
        expect(reader.names.length).toBeGreaterThan(0);
        for (const key of reader.names) {
          expect(key.startsWith(`base_model.model.${prefix}`)).toBe(true);
          expect(key).toMatch(new RegExp(`\\.${target}\\.lora_[AB]\\.weight$`));
        }

        // A merged model saves every tensor under the LM-head model's names, which HF and webtune both load.
        const merged = await savePretrained(peft.mergeAndUnload());
        const saved = await openSafetensors(
          merged["model.safetensors"] as Uint8Array,
        );
        const bare = saved.names.filter(
          (n) => !n.startsWith(prefix) && n !== "lm_head.weight",
        );
        expect(bare).toEqual([]);
      } finally {
        peft.dispose();
        model.dispose();
      }
    });
  }

  it("an adapter trained on one layout loads on the other with identical logits", async (ctx) => {
    await needGpu(ctx);
    const prefixed = await loadModel(`${GOLDEN_DIR}tiny/gpt2`, {
      cache: false,
    });
    const bare = await loadModel(await strippedCopy("gpt2", "transformer."), {
      cache: false,
    });
    const a = new LoraModel(prefixed);
    const b = new LoraModel(bare);
    try {
      a.addAdapter(
        "default",
        { r: 2, targetModules: ["c_attn", "c_fc"], initLoraWeights: false },
        { seed: 3 },
      );
      await b.loadAdapter("default", await a.saveAdapter());
      const ids = readGolden(`${GOLDEN_DIR}tiny/gpt2`).input_ids;
      const [la, lb] = [a.logits(ids), b.logits(ids)];
      expect(Array.from(await lb.data())).toEqual(Array.from(await la.data()));
      la.dispose();
      lb.dispose();
    } finally {
      a.dispose();
      b.dispose();
      prefixed.dispose();
      bare.dispose();
    }
  });
});

/**
 * PEFT adapter files: what saveAdapter writes (keys, shapes, dtypes, config fields), round trips through memory
 * and a directory, and every way an adapter can disagree with its model, each refused with the module and
 * shapes named and nothing left behind.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { describe, expect, it, vi } from "vitest";
import {
  ConfigError,
  FileNotFoundError,
  FormatError,
  LoraModel,
  openSafetensors,
  saveAdapterToDirectory,
  ShapeError,
  writeSafetensors,
  type AdapterFiles,
} from "@webtune/core";
import { needGpu } from "../../helpers/gpu.js";
import { startHubServer } from "../../helpers/hub_server.js";
import { useTinyModels } from "../../helpers/lora.js";
import { GOLDEN_DIR, readGolden } from "../../helpers/golden.js";

const { models, peftOf } = useTinyModels(["gpt2", "llama_untied"]);
const ids = readGolden(`${GOLDEN_DIR}tiny/llama_untied`).input_ids;

async function logits(peft: LoraModel): Promise<number[]> {
  const t = peft.logits(ids);
  const v = Array.from(await t.data());
  t.dispose();
  return v;
}

async function trained(
  name: string,
  config: Parameters<LoraModel["addAdapter"]>[1],
): Promise<LoraModel> {
  const peft = peftOf(name);
  peft.addAdapter(
    "default",
    { ...config, initLoraWeights: false },
    { seed: 11 },
  );
  return peft;
}

describe("saveAdapter", () => {
  it("writes PEFT's keys, [r, in] / [out, r] F32 shapes and a complete config for GPT-2's Conv1D", async (ctx) => {
    await needGpu(ctx);
    const peft = await trained("gpt2", {
      r: 4,
      loraAlpha: 8,
      targetModules: ["c_attn", "c_proj"],
    });
    const files = await peft.saveAdapter();
    const config = JSON.parse(files["adapter_config.json"]);
    expect(config).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 4,
      lora_alpha: 8,
      fan_in_fan_out: true,
      bias: "none",
      use_rslora: false,
      use_dora: false,
      target_modules: ["c_attn", "c_proj"],
      base_model_name_or_path: `${GOLDEN_DIR}tiny/gpt2`,
      rank_pattern: {},
      alpha_pattern: {},
    });
    expect(Object.keys(config)).toEqual([...Object.keys(config)].sort());
    const reader = await openSafetensors(files["adapter_model.safetensors"]);
    const C = models["gpt2"]!.dims.hiddenSize;
    expect(reader.names).toContain(
      "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
    );
    expect(
      (
        await reader.info(
          "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
        )
      ).shape,
    ).toEqual([4, C]);
    expect(
      (
        await reader.info(
          "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
        )
      ).shape,
    ).toEqual([3 * C, 4]);
    expect(
      (
        await reader.info(
          "base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight",
        )
      ).shape,
    ).toEqual([4, 4 * C]);
    // attn.c_proj and mlp.c_proj both match "c_proj" by suffix: 3 modules per layer, A and B each.
    expect(reader.names).toHaveLength(models["gpt2"]!.dims.numLayers * 3 * 2);
    for (const n of reader.names)
      expect((await reader.info(n)).dtype).toBe("F32");
    expect(reader.metadata).toEqual({ format: "pt" });
  });

  it("round-trips through memory and a directory with identical logits, DoRA magnitudes included", async (ctx) => {
    await needGpu(ctx);
    const peft = await trained("llama_untied", {
      r: 4,
      loraAlpha: 8,
      targetModules: ["q_proj", "v_proj", "down_proj"],
      useDora: true,
      useRslora: true,
      rankPattern: { v_proj: 2 },
    });
    const expected = await logits(peft);
    const files = await peft.saveAdapter();
    const reader = await openSafetensors(files["adapter_model.safetensors"]);
    expect(reader.names).toContain(
      "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
    );
    expect(
      (
        await reader.info(
          "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
        )
      ).shape[0],
    ).toBe(2);
    peft.dispose();

    const fromMemory = peftOf("llama_untied");
    await fromMemory.loadAdapter("restored", files);
    expect(await logits(fromMemory)).toEqual(expected);
    fromMemory.dispose();

    const dir = mkdtempSync(join(tmpdir(), "webtune-adapter-"));
    await saveAdapterToDirectory(files, dir);
    const fromDisk = peftOf("llama_untied");
    const config = await fromDisk.loadAdapter("disk", dir);
    expect(config.use_dora && config.use_rslora).toBe(true);
    expect(config.rank_pattern).toEqual({ v_proj: 2 });
    expect(await logits(fromDisk)).toEqual(expected);
  });
});

/** An adapter's files with the config and tensors edited. */
function edited(
  files: AdapterFiles,
  config: (c: Record<string, unknown>) => void,
  tensors?: Record<
    string,
    { dtype: "F32"; shape: number[]; data: Float32Array }
  >,
): AdapterFiles {
  const c = JSON.parse(files["adapter_config.json"]);
  config(c);
  return {
    "adapter_config.json": JSON.stringify(c),
    "adapter_model.safetensors": tensors
      ? writeSafetensors(tensors)
      : files["adapter_model.safetensors"],
  };
}

describe("loadAdapter refuses adapters that do not fit, and adds nothing", () => {
  async function expectRefused(
    files: AdapterFiles,
    error: typeof ShapeError | typeof FormatError,
    message: RegExp,
  ) {
    const peft = peftOf("llama_untied");
    const before = tf.memory().numTensors;
    await expect(peft.loadAdapter("x", files)).rejects.toThrow(error);
    await expect(peft.loadAdapter("x", files)).rejects.toThrow(message);
    expect(peft.adapterNames).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
  }

  it("an adapter trained on another base model", async (ctx) => {
    await needGpu(ctx);
    const files = await (
      await trained("gpt2", { r: 2, targetModules: ["c_attn"] })
    ).saveAdapter();
    await expectRefused(
      files,
      ShapeError,
      /weights for "transformer\.h\.0\.attn\.c_attn", which this model does not have/,
    );
  });

  it("a tensor whose shape disagrees with the module and config", async (ctx) => {
    await needGpu(ctx);
    const files = await (
      await trained("llama_untied", { r: 4, targetModules: ["q_proj"] })
    ).saveAdapter();
    const wrongRank = edited(files, (c) => (c["r"] = 8));
    await expectRefused(
      wrongRank,
      ShapeError,
      /"model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" is \[4, 48\], but this model.s model\.layers\.0\.self_attn\.q_proj \(in 48, out 48\) with r = 8 needs \[8, 48\]/,
    );
  });

  it("a LoRA on an embedding layer, and a PEFT feature webtune does not support", async (ctx) => {
    await needGpu(ctx);
    const files = await (
      await trained("llama_untied", { r: 4, targetModules: ["q_proj"] })
    ).saveAdapter();
    const embedding = edited(files, () => {}, {
      "base_model.model.model.embed_tokens.lora_embedding_A": {
        dtype: "F32",
        shape: [4, 8],
        data: new Float32Array(32),
      },
    });
    await expectRefused(
      embedding,
      FormatError,
      /is a LoRA on an embedding layer; webtune adapts Linear layers only/,
    );
    await expectRefused(
      edited(files, (c) => (c["lora_bias"] = true)),
      FormatError,
      /"lora_bias" is true, a PEFT feature webtune does not support/,
    );
  });

  it("warns about config fields from a newer PEFT, and loads the adapter", async (ctx) => {
    await needGpu(ctx);
    const files = await (
      await trained("llama_untied", { r: 4, targetModules: ["q_proj"] })
    ).saveAdapter();
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const peft = peftOf("llama_untied");
    await peft.loadAdapter(
      "newer",
      edited(files, (c) => (c["some_future_field"] = { x: 1 })),
    );
    expect(String(warn.mock.calls[0]?.[0])).toMatch(
      /ignoring field\(s\) this version does not know: some_future_field/,
    );
    warn.mockRestore();
    expect(peft.adapterNames).toEqual(["newer"]);
  });
});

describe("loadAdapter from a string names an adapter folder, never a model", () => {
  it("a missing ./ folder is reported as one; a hub id the hub cannot serve says there is no such folder either", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    const empty = mkdtempSync(join(tmpdir(), "webtune-empty-hub-"));
    const hub = await startHubServer(empty);
    try {
      const options = { hubUrl: hub.url, cache: false };
      const local = peft.loadAdapter("x", "./runs/no-such-run", options);
      await expect(local).rejects.toThrow(ConfigError);
      await expect(local).rejects.toThrow(
        /^There is no adapter folder \.\/runs\/no-such-run \(nothing at .*runs\/no-such-run\)\. Check the path\.$/,
      );
      expect(hub.requests).toEqual([]);

      const remote = peft.loadAdapter("x", "runs/no-such-run", options);
      await expect(remote).rejects.toThrow(FileNotFoundError);
      await expect(remote).rejects.toThrow(
        /^There is no adapter folder "runs\/no-such-run" here .*, and the hub has no such repository .*check the adapter id "runs\/no-such-run".* If you meant a local folder, check the path\.$/,
      );
      expect(peft.adapterNames).toEqual([]);
    } finally {
      await hub.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

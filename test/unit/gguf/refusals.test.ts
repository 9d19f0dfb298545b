/**
 * What has no GGUF form is refused with the reason, before anything is written: a DoRA adapter, a classification
 * head, a Gemma 3 whose attention scale llama.cpp cannot express, a tokenizer whose
 * splitting llama.cpp would not reproduce, a model without a tokenizer.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  adapterToGguf,
  ConfigError,
  disposeRuntime,
  loadModel,
  LoraModel,
  modelToGguf,
  type GgufDtype,
  type PretrainedModel,
} from "@webtune/core";
import { GOLDEN_DIR } from "../../helpers/golden.js";
import { startGpu } from "../../helpers/gpu.js";
import { tinyModelWithTokenizer } from "../../helpers/llama_cpp.js";

let model: PretrainedModel;
beforeAll(async () => {
  await startGpu();
  model = await loadModel(tinyModelWithTokenizer("llama_tied", "gpt-2"), {
    cache: false,
  });
});
afterAll(() => {
  model.dispose();
  disposeRuntime();
});

describe("adapters without a llama.cpp LoRA form", () => {
  const refused = async (
    configure: (peft: LoraModel) => void,
    message: RegExp,
  ) => {
    const peft = new LoraModel(model);
    try {
      configure(peft);
      await expect(adapterToGguf(peft)).rejects.toThrow(message);
      await expect(adapterToGguf(peft)).rejects.toBeInstanceOf(ConfigError);
    } finally {
      peft.dispose();
    }
  };

  test("DoRA: merge it and export the model instead", () =>
    refused(
      (p) =>
        p.addAdapter("default", {
          r: 2,
          useDora: true,
          targetModules: ["q_proj"],
        }),
      /"default" is DoRA.*export the merged model instead/,
    ));

  test("a classification head", () =>
    refused(
      (p) =>
        p.addAdapter(
          "default",
          { r: 2, targetModules: ["q_proj"] },
          { head: { task: "seq-cls", labels: ["no", "yes"] } },
        ),
      /classification head/,
    ));

  test("no adapter at all", () =>
    refused(() => undefined, /no adapter to export/));
});

describe("models without a GGUF form", () => {
  test("a dtype GGUF export does not write", async () => {
    await expect(
      modelToGguf(model, { dtype: "bf16" as GgufDtype }),
    ).rejects.toThrow(/dtype "bf16" is not one of f32, f16, q8_0/);
  });

  test("a Gemma 3 whose query_pre_attn_scalar is not head_dim", async () => {
    const gemma = await loadModel(
      tinyModelWithTokenizer("gemma3_text", "sentencepiece"),
      { cache: false },
    );
    try {
      await expect(modelToGguf(gemma)).rejects.toThrow(
        /query_pre_attn_scalar is 32; llama.cpp's gemma3 scales attention by 1\/√head_dim \(24\)/,
      );
    } finally {
      gemma.dispose();
    }
  });

  test("a model folder without tokenizer.json", async () => {
    const bare = await loadModel(`${GOLDEN_DIR}tiny/llama_tied`, {
      cache: false,
    });
    try {
      await expect(modelToGguf(bare)).rejects.toThrow(/has no tokenizer.json/);
    } finally {
      bare.dispose();
    }
  });

  test("a pre-tokenizer llama.cpp has no regex for, named in the message", async () => {
    const dir = tinyModelWithTokenizer("llama_tied", "gpt-2");
    const path = join(dir, "tokenizer.json");
    const json = JSON.parse(readFileSync(path, "utf8"));
    json.pre_tokenizer = { type: "Whitespace" };
    writeFileSync(path, JSON.stringify(json));
    const other = await loadModel(dir, { cache: false });
    try {
      await expect(modelToGguf(other)).rejects.toThrow(
        /knows the pre-tokenizers of GPT-2, SmolLM2 and Qwen2; this tokenizer.json's is \{"type":"Whitespace"\}/,
      );
    } finally {
      other.dispose();
    }
  });

  test("a model with a classification head", async () => {
    const peft = new LoraModel(model);
    try {
      peft.addAdapter(
        "default",
        { r: 2, targetModules: ["q_proj"] },
        { head: { task: "seq-cls", labels: ["no", "yes"] } },
      );
      await expect(modelToGguf(model)).rejects.toThrow(
        /seq-cls head, which llama.cpp cannot run/,
      );
    } finally {
      peft.dispose();
    }
  });
});

test("exporting a model and an adapter leaves no tensor behind", async () => {
  const peft = new LoraModel(model);
  try {
    peft.addAdapter("default", { r: 2, targetModules: ["q_proj", "v_proj"] });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await modelToGguf(model, { dtype: "q8_0" });
      await adapterToGguf(peft);
    }
    expect(tf.memory().numTensors).toBe(before);
  } finally {
    peft.dispose();
  }
});

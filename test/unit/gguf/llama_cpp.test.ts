/**
 * GGUF export checked by llama.cpp itself (node-llama-cpp 3.21.1's prebuilt CPU build, no download): the same
 * tokens, the same greedy continuation and top token at every position, and logits within 1e-3 relative of
 * webtune's in f32 (over llama.cpp's top 20 tokens at every position of the prompt, relative to the row's largest
 * logit; see worstLogitDifference), for the embedded demo model and the tiny golden models of every architecture,
 * base and tuned, LoRA unmerged and merged. llama.cpp runs on one thread with an f32 KV cache.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  adapterToGguf,
  disposeRuntime,
  loadModel,
  LoraModel,
  modelToGguf,
  saveGgufFile,
  type GgufDtype,
  type LoraConfigInput,
  type PretrainedModel,
} from "@webtune/core";
import { startGpu } from "../../helpers/gpu.js";
import {
  argmaxRows,
  llamaGreedy,
  llamaLogProbs,
  loadGguf,
  logitRows,
  tinyModelWithTokenizer,
  worstLogitDifference,
} from "../../helpers/llama_cpp.js";

const DEMO = "demo/public/models/webtune-demo-base";
const out = mkdtempSync(join(tmpdir(), "webtune-gguf-"));
let n = 0;

beforeAll(startGpu);
afterAll(disposeRuntime);

async function writeModel(model: PretrainedModel, dtype: GgufDtype = "f32") {
  const path = join(out, `model-${n++}.gguf`);
  await saveGgufFile(await modelToGguf(model, { dtype }), path);
  return path;
}

async function writeAdapter(peft: LoraModel) {
  const path = join(out, `adapter-${n++}.gguf`);
  await saveGgufFile(await adapterToGguf(peft), path);
  return path;
}

/** webtune's logit rows for ids (through the adapter when given a LoraModel). */
async function webtuneRows(model: PretrainedModel | LoraModel, ids: number[]) {
  const logits = model.logits([ids]);
  const rows = await logitRows(logits);
  logits.dispose();
  return rows;
}

/** webtune's greedy continuation, stopping at EOS like llama.cpp's. */
async function webtuneGreedy(
  model: PretrainedModel,
  ids: number[],
  count: number,
) {
  return (await model.generate(ids, { maxNewTokens: count, temperature: 0 }))
    .ids;
}

/**
 * The same greedy continuation, token for token; the two may part only where webtune's own top two logits are
 * within the tolerance of each other (a tie at this precision), and then nothing after that step is compared.
 */
async function expectSameGreedy(
  webtune: PretrainedModel,
  ids: number[],
  theirs: number[],
  mine: number[],
  tolerance: number,
) {
  const step = mine.findIndex((t, i) => theirs[i] !== t);
  if (step < 0) return expect(theirs).toEqual(mine);
  expect(theirs.slice(0, step)).toEqual(mine.slice(0, step));
  const logits = webtune.logits([[...ids, ...mine.slice(0, step)]]);
  const rows = await logitRows(logits);
  logits.dispose();
  const z = rows.at(-1)!;
  const scale = Math.max(...z.map(Math.abs));
  const margin = (z[mine[step]!]! - z[theirs[step]!]!) / scale;
  expect(margin, `greedy parts at step ${step}`).toBeLessThan(tolerance);
}

/** Both sides agree on a model (and adapter): log-probs at every position, and the greedy continuation. */
async function expectAgreement(
  gguf: string,
  webtune: PretrainedModel,
  ids: number[],
  options: { lora?: string; peft?: LoraModel; tolerance?: number } = {},
) {
  const llama = await loadGguf(gguf);
  try {
    const theirs = await llamaLogProbs(llama, ids, { lora: options.lora });
    const mine = await webtuneRows(options.peft ?? webtune, ids);
    const worst = worstLogitDifference(theirs, mine);
    expect(worst).toBeLessThan(options.tolerance ?? 1e-3);
    // Each position's top token is the same, not only close.
    expect(theirs.map((m) => [...m.keys()][0])).toEqual(argmaxRows(mine));
    const greedy = await llamaGreedy(llama, ids, 8, options.lora);
    await expectSameGreedy(
      webtune,
      ids,
      greedy,
      await webtuneGreedy(webtune, ids, 8),
      options.tolerance ?? 1e-3,
    );
    return worst;
  } finally {
    await llama.dispose();
  }
}

const ALL_LINEAR: LoraConfigInput = {
  r: 4,
  loraAlpha: 8,
  targetModules: "all-linear",
  initLoraWeights: false,
};

/**
 * Random B (init_lora_weights false) moves a model much further than training does (B about 1/√r, where a trained
 * B is a small correction); a tenth of it is still a different model (the demo test checks that).
 */
function scaleB(peft: LoraModel, factor: number) {
  for (const { part, variable } of peft.namedTrainableVariables())
    if (part === "lora_B") variable.assign(tf.tidy(() => variable.mul(factor)));
}

/** rsLoRA with per-module ranks and alphas: one GGUF alpha must still give every module its own scale. */
const PATTERNED: LoraConfigInput = {
  ...ALL_LINEAR,
  useRslora: true,
  rankPattern: { q_proj: 2, c_attn: 2 },
  alphaPattern: { v_proj: 3, c_fc: 3 },
};

describe("the embedded demo model (llama) through llama.cpp", () => {
  let model: PretrainedModel;
  const prompt =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
  beforeAll(async () => {
    model = await loadModel(DEMO, { cache: false });
  });
  afterAll(() => model.dispose());

  test("f32: the same tokens, logits within 1e-3, the same greedy continuation", async () => {
    const path = await writeModel(model);
    const llama = await loadGguf(path);
    try {
      for (const text of [
        prompt,
        "In 1492, Columbus sailed: 'the ocean blue'!\n\n  ok",
      ])
        expect(llama.tokenize(text, true)).toEqual(
          model.tokenizer!.encode(text),
        );
      expect(llama.tokens.shouldPrependBosToken).toBe(false);
    } finally {
      await llama.dispose();
    }
    const ids = model.tokenizer!.encode(prompt);
    await expectAgreement(path, model, ids);
  });

  test("f16 and q8_0 store the weights at their precision: logits within 1e-2 and 5e-2", async () => {
    const ids = model.tokenizer!.encode(prompt);
    const f32Bytes = (await modelToGguf(model, { dtype: "f32" })).byteLength;
    const f16 = await modelToGguf(model, { dtype: "f16" });
    const q8 = await modelToGguf(model, { dtype: "q8_0" });
    expect(f16.byteLength).toBeLessThan(0.52 * f32Bytes);
    expect(q8.byteLength).toBeLessThan(0.3 * f32Bytes);
    for (const [dtype, tolerance] of [
      ["f16", 1e-2],
      ["q8_0", 5e-2],
    ] as const) {
      const path = await writeModel(model, dtype);
      const llama = await loadGguf(path);
      try {
        const worst = worstLogitDifference(
          await llamaLogProbs(llama, ids),
          await webtuneRows(model, ids),
        );
        expect(worst, dtype).toBeLessThan(tolerance);
      } finally {
        await llama.dispose();
      }
    }
  });

  test("a LoRA adapter: the GGUF adapter on the base GGUF, and the merged model, give the tuned model's output", async () => {
    const ids = model.tokenizer!.encode(prompt);
    const base = await writeModel(model);
    for (const config of [ALL_LINEAR, PATTERNED]) {
      // Merging changes the base model's weights in place: each adapter gets its own copy of the model.
      const own = await loadModel(DEMO, { cache: false });
      try {
        const peft = new LoraModel(own);
        peft.addAdapter("default", config);
        scaleB(peft, 0.1);
        const tuned = await webtuneRows(peft, ids);
        // The adapter changes the output, so agreeing with it is not agreeing with the base model.
        expect(argmaxRows(tuned)).not.toEqual(
          argmaxRows(await webtuneRows(model, ids)),
        );
        await expectLoraAgreement(base, peft, ids, tuned);
      } finally {
        own.dispose();
      }
    }
  });
});

/** The adapter's GGUF on the base GGUF gives the tuned log-probs; then the merged model agrees in every way. */
async function expectLoraAgreement(
  base: string,
  peft: LoraModel,
  ids: number[],
  tuned: Float32Array[],
  tolerance = 1e-3,
) {
  const lora = await writeAdapter(peft);
  const llama = await loadGguf(base);
  try {
    const worst = worstLogitDifference(
      await llamaLogProbs(llama, ids, { lora }),
      tuned,
    );
    expect(worst).toBeLessThan(tolerance);
  } finally {
    await llama.dispose();
  }
  const merged = peft.mergeAndUnload();
  await expectAgreement(await writeModel(merged), merged, ids, { tolerance });
}

/**
 * Each tiny golden model with a tokenizer in one of the styles llama.cpp must split alike, and the tolerance.
 * Gemma 3's is 2e-3: llama.cpp's CPU GELU rounds its input and output to f16 (ggml-cpu/vec.h, GGML_GELU_FP16), so
 * its f32 is not quite f32 there; GPT-2's GELU stays within 1e-3 on this model.
 */
const TINY: [string, Parameters<typeof tinyModelWithTokenizer>[1], number][] = [
  ["llama_untied", "smollm", 1e-3],
  ["llama_tied", "gpt-2", 1e-3],
  ["llama3_rope", "gpt-2", 1e-3],
  ["qwen2", "qwen2", 1e-3],
  ["gpt2", "gpt-2", 1e-3],
  ["gemma3_text_pattern", "sentencepiece", 2e-3],
];

describe.each(TINY)(
  "tiny %s (%s tokenizer) through llama.cpp",
  (name, style, tolerance) => {
    let model: PretrainedModel;
    let base: string;
    const dir = tinyModelWithTokenizer(name, style);
    const text = "the cat sat on the mat, 1234 times!";
    beforeAll(async () => {
      model = await loadModel(dir, { cache: false });
      base = await writeModel(model);
    });
    afterAll(() => model?.dispose());

    test("the same tokens, logits and greedy continuation", async () => {
      const llama = await loadGguf(base);
      const ids = model.tokenizer!.encode(text);
      try {
        const plain = model.tokenizer!.encode(text, {
          addSpecialTokens: false,
        });
        expect(llama.tokenize(text)).toEqual(plain);
        expect(llama.tokens.shouldPrependBosToken).toBe(
          ids.length > plain.length,
        );
      } finally {
        await llama.dispose();
      }
      await expectAgreement(base, model, ids, { tolerance });
    });

    test("LoRA, unmerged and merged, with rsLoRA and per-module ranks and alphas", async () => {
      const own = await loadModel(dir, { cache: false });
      try {
        const ids = own.tokenizer!.encode(text);
        const peft = new LoraModel(own);
        peft.addAdapter("default", PATTERNED);
        scaleB(peft, 0.1);
        await expectLoraAgreement(
          base,
          peft,
          ids,
          await webtuneRows(peft, ids),
          tolerance,
        );
      } finally {
        own.dispose();
      }
    });
  },
);

/**
 * GGUF export checked by llama.cpp itself (node-llama-cpp 3.21.1's prebuilt CPU build, no download): the same
 * tokens, the same greedy continuation, and next-token log-probabilities within 1e-3 relative (f32; |Δ| /
 * max(|logp|, 1) over llama.cpp's top 20 at every position) of webtune's own, for the embedded demo model and
 * the tiny golden models of every architecture, base and tuned, LoRA unmerged and merged.
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
  logSoftmaxRows,
  tinyModelWithTokenizer,
  worstLogProbDifference,
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

/** webtune's log-softmax rows for ids, through the adapter when `peft` is given. */
async function webtuneRows(model: PretrainedModel | LoraModel, ids: number[]) {
  const logits = model.logits([ids]);
  const rows = await logSoftmaxRows(logits);
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
    const worst = worstLogProbDifference(theirs, mine);
    expect(worst).toBeLessThan(options.tolerance ?? 1e-3);
    // Each position's top token is the same, not only close.
    expect(theirs.map((m) => [...m.keys()][0])).toEqual(argmaxRows(mine));
    const greedy = await llamaGreedy(llama, ids, 8, options.lora);
    expect(greedy).toEqual(await webtuneGreedy(webtune, ids, 8));
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
 * Random B (init_lora_weights false) moves the trained demo model much further than training does, to logits
 * where f32 rounding alone exceeds 1e-3; a tenth of it is still a different model (the test checks that).
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

  test("f32: the same tokens, log-probs within 1e-3, the same greedy continuation", async () => {
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

  test("f16 and q8_0 store the weights at their precision: log-probs within 1e-2 and 5e-2, the same top tokens", async () => {
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
        const worst = worstLogProbDifference(
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
) {
  const lora = await writeAdapter(peft);
  const llama = await loadGguf(base);
  try {
    const worst = worstLogProbDifference(
      await llamaLogProbs(llama, ids, { lora }),
      tuned,
    );
    expect(worst).toBeLessThan(1e-3);
  } finally {
    await llama.dispose();
  }
  const merged = peft.mergeAndUnload();
  await expectAgreement(await writeModel(merged), merged, ids);
}

/** Each tiny golden model with a tokenizer in one of the styles llama.cpp must split alike. */
const TINY: [string, Parameters<typeof tinyModelWithTokenizer>[1]][] = [
  ["llama_untied", "smollm"],
  ["llama_tied", "gpt-2"],
  ["llama3_rope", "gpt-2"],
  ["qwen2", "qwen2"],
  ["gpt2", "gpt-2"],
  ["gemma3_text_pattern", "sentencepiece"],
];

describe.each(TINY)(
  "tiny %s (%s tokenizer) through llama.cpp",
  (name, style) => {
    let model: PretrainedModel;
    let base: string;
    const dir = tinyModelWithTokenizer(name, style);
    const text = "the cat sat on the mat, 1234 times!";
    beforeAll(async () => {
      model = await loadModel(dir, { cache: false });
      base = await writeModel(model);
    });
    afterAll(() => model?.dispose());

    test("the same tokens, log-probs and greedy continuation", async () => {
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
      await expectAgreement(base, model, ids);
    });

    test("LoRA, unmerged and merged, with rsLoRA and per-module ranks and alphas", async () => {
      const own = await loadModel(dir, { cache: false });
      try {
        const ids = own.tokenizer!.encode(text);
        const peft = new LoraModel(own);
        peft.addAdapter("default", PATTERNED);
        await expectLoraAgreement(
          base,
          peft,
          ids,
          await webtuneRows(peft, ids),
        );
      } finally {
        own.dispose();
      }
    });
  },
);

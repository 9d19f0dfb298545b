/**
 * Evaluation on a real (tiny, random) model with the tiny-chatml tokenizer: classification predictions are the
 * labels with the lowest NLL after the prompt (checked against log-softmax of the logits, computed here), the
 * loss is the token-weighted mean, and the forgetting check compares the adapter off and on.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildDataset,
  disposeRuntime,
  evaluate,
  forgettingCheck,
  loadModel,
  LoraModel,
  type PretrainedModel,
} from "@webtune/core";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

let model: PretrainedModel;
beforeAll(async () => {
  if (!(await startGpu())) return;
  model = await loadModel(chatModelFolder(), { cache: false });
});
afterAll(() => {
  model?.dispose();
  disposeRuntime();
});

/** log p(ids[t] | ids[<t]) summed over t in [from, end), from the full logits, in float64 here. */
async function logLikelihood(ids: number[], from: number): Promise<number> {
  const logits = model.logits([ids]);
  const v = (await logits.data()) as Float32Array;
  logits.dispose();
  const V = model.dims.vocabSize;
  let total = 0;
  for (let t = from; t < ids.length; t++) {
    const row = v.subarray((t - 1) * V, t * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    total += row[ids[t]!]! - lse;
  }
  return total;
}

describe("evaluate", () => {
  it("predicts the label with the highest likelihood after the prompt, and reports the metrics", async (ctx) => {
    await needGpu(ctx);
    const tok = model.tokenizer!;
    const rows = [
      "the cat sat",
      "a dog ran",
      "the bird flew",
      "a fox hid",
      "the cow ate",
      "a pig slept",
    ]
      .map((text, i) =>
        JSON.stringify({ text, label: ["happy", "sad", "calm"][i % 3] }),
      )
      .join("\n");
    const data = buildDataset(rows, tok, {
      source: "rows.jsonl",
      fileType: "jsonl",
    });
    expect(data.format).toBe("classification");
    const result = await evaluate(model, tok, data.examples, {
      format: "classification",
      labels: data.labels,
      keepRows: true,
    });
    const eos = tok.eosTokenId!;
    const expected: string[] = [];
    for (const ex of data.examples) {
      const prefix = tok.encode(ex.prompt!);
      let best = "";
      let bestLl = -Infinity;
      for (const label of data.labels!) {
        const ids = [
          ...prefix,
          ...tok.encode(` ${label}`, { addSpecialTokens: false }),
          eos,
        ];
        const ll = await logLikelihood(ids, prefix.length);
        if (ll > bestLl) [best, bestLl] = [label, ll];
      }
      expected.push(best);
    }
    const truth = data.examples.map((e) => e.label!);
    const correct = expected.filter((p, i) => p === truth[i]).length;
    expect(result.accuracy).toBeCloseTo(correct / truth.length, 10);
    expect(result.confusionMatrix!.flat().reduce((a, b) => a + b, 0)).toBe(
      truth.length,
    );
    const diagonal = result.confusionMatrix!.reduce(
      (s, row, i) => s + row[i]!,
      0,
    );
    expect(diagonal).toBe(correct);
    // The loss is the mean NLL of every label token (and EOS), weighted by tokens.
    let nll = 0;
    let tokens = 0;
    for (const ex of data.examples) {
      const start = ex.labels.findIndex((l) => l !== -100);
      nll -= await logLikelihood(ex.inputIds, start);
      tokens += ex.inputIds.length - start;
    }
    expect(Math.abs(result.loss - nll / tokens) / result.loss).toBeLessThan(
      1e-5,
    );
    expect(result.tokens).toBe(tokens);
    // Each row's own scores (what monitoring resamples): the label, the prediction, and the row's share of the loss.
    const perRow = result.rowScores!;
    expect(perRow.map((r) => r.predicted)).toEqual(expected);
    expect(perRow.map((r) => r.label)).toEqual(truth);
    expect(perRow.map((r) => r.correct)).toEqual(
      expected.map((p, i) => (p === truth[i] ? 1 : 0)),
    );
    const summed = perRow.reduce((s, r) => s + r.nll, 0);
    expect(Math.abs(summed - nll) / nll).toBeLessThan(1e-5);
    expect(perRow.reduce((s, r) => s + r.tokens, 0)).toBe(tokens);
    expect(perRow.map((r) => r.inputTokens)).toEqual(
      data.examples.map((e) => tok.encode(e.prompt!).length),
    );
    const plain = await evaluate(model, tok, data.examples, {
      format: "classification",
      labels: data.labels,
    });
    expect(plain.rowScores).toBeUndefined();
  });

  it("scores instruction data by exact match of greedy generations", async (ctx) => {
    await needGpu(ctx);
    const tok = model.tokenizer!;
    const prompts = ["the cat", "a dog ran to", "birds fly", "the fox hid in"];
    // The greedy continuation of each prompt, by argmax over full forward passes (not through generate()).
    const greedy = async (prompt: string) => {
      let ids = tok.encode(prompt);
      const out: number[] = [];
      for (let i = 0; i < 5; i++) {
        const logits = model.logits([ids]);
        const v = (await logits.data()) as Float32Array;
        logits.dispose();
        const row = v.subarray(
          (ids.length - 1) * model.dims.vocabSize,
          ids.length * model.dims.vocabSize,
        );
        const next = row.indexOf(Math.max(...row));
        if (next === tok.eosTokenId) break;
        out.push(next);
        ids = [...ids, next];
      }
      return tok.decode(out, { skipSpecialTokens: true });
    };
    const completions = await Promise.all(
      prompts.map(async (p, i) =>
        i % 2 === 0 ? await greedy(p) : "something else",
      ),
    );
    const rows = prompts
      .map((prompt, i) =>
        JSON.stringify({ prompt, completion: completions[i] }),
      )
      .join("\n");
    const data = buildDataset(rows, tok, {
      source: "pairs.jsonl",
      fileType: "jsonl",
      dedupe: false,
    });
    expect(data.format).toBe("instruction");
    const result = await evaluate(model, tok, data.examples, {
      format: "instruction",
      exactMatchTokens: 5,
      keepRows: true,
    });
    expect(result.exactMatch).toBe(0.5);
    // Row by row: the rows whose completion is the greedy one are the right ones.
    expect(result.rowScores!.map((r) => r.correct)).toEqual([1, 0, 1, 0]);
  });

  it("scores every row of a file read for evaluation, repeated rows included, as every other tool does", async (ctx) => {
    await needGpu(ctx);
    const tok = model.tokenizer!;
    const texts = ["the cat sat", "a dog ran", "the cat sat", "the cat sat"];
    const file = texts.map((text) => JSON.stringify({ text })).join("\n");
    const data = buildDataset(file, tok, { source: "t.jsonl", dedupe: false });
    const all = await evaluate(model, tok, data.examples, {
      format: "completion",
    });
    expect(all.rows).toBe(4);
    // The loss weighs each copy: the token-weighted mean over the four rows, not over the two distinct ones.
    let nll = 0;
    let tokens = 0;
    for (const ex of data.examples) {
      nll -= await logLikelihood(ex.inputIds, 1);
      tokens += ex.inputIds.length - 1;
    }
    expect(all.tokens).toBe(tokens);
    expect(Math.abs(all.loss - nll / tokens) / all.loss).toBeLessThan(1e-5);
    const deduped = buildDataset(file, tok, { source: "t.jsonl" });
    expect(deduped.examples).toHaveLength(2);
    expect(
      (await evaluate(model, tok, deduped.examples, { format: "completion" }))
        .loss,
    ).not.toBeCloseTo(all.loss, 6);
  });

  it("reports the reference loss with the adapter off and on, as the forgetting check", async (ctx) => {
    await needGpu(ctx);
    const tok = model.tokenizer!;
    const reference = buildDataset(
      readFileSync(
        new URL("../../fixtures/datasets/plain.txt", import.meta.url),
      ),
      tok,
      {
        source: "plain.txt",
      },
    ).examples;
    // The base model's loss, measured before any adapter exists.
    const base = await evaluate(model, tok, reference, {
      format: "completion",
    });
    const peft = new LoraModel(model);
    try {
      peft.addAdapter(
        "default",
        { r: 4, targetModules: "all-linear", initLoraWeights: false },
        { seed: 3 },
      );
      const f = await forgettingCheck(peft, tok, reference);
      expect(f.base.loss).toBe(base.loss);
      expect(f.tuned.loss).not.toBe(base.loss);
      expect(f.lossDelta).toBeCloseTo(f.tuned.loss - f.base.loss, 12);
    } finally {
      peft.dispose();
    }
  });
});

/**
 * Paraphrases from the embedded demo base model: each kept sample's likelihood and its gain from the text are the
 * mean log-likelihoods that rowNll gives row by row (after the prompt with the text, and with it left out); the
 * thresholds reject exactly the samples below them, for the reason named; samples are seeded per text.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  loadModel,
  paraphrase,
  rowNll,
  type PretrainedModel,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";

let model: PretrainedModel;
beforeAll(async () => {
  if (!(await startGpu())) return;
  model = await loadModel("demo/public/models/webtune-demo-base", {
    cache: false,
  });
});
afterAll(() => {
  model?.dispose();
  disposeRuntime();
});

const TEXTS = [
  "Last week's pet, this week's special.",
  "A rolling stone gathers no moss.",
];
const PROMPT = "{text}\nIn other words:";
const LOOSE = {
  count: 4,
  prompt: PROMPT,
  minLogProb: -1e9,
  minGain: -1e9,
  temperature: 0.8,
  seed: 3,
};

/** Mean log-likelihood per token of ` sample` after `prefix`, row by row through rowNll. */
async function meanLogProb(prefix: string, sample: string): Promise<number> {
  const tok = model.tokenizer!;
  const p = tok.encode(prefix);
  const ids = tok.encode(` ${sample}`, { addSpecialTokens: false });
  const { nll, tokens } = await rowNll(
    model,
    [...p, ...ids],
    [...p.map(() => -100), ...ids],
  );
  return -nll / tokens;
}

describe("paraphrase", () => {
  it("scores each kept sample by its likelihood and its gain from the text", async (ctx) => {
    await needGpu(ctx);
    const tok = model.tokenizer!;
    const out = await paraphrase(model, tok, TEXTS, {
      ...LOOSE,
      keys: [10, 20],
    });
    expect(out).toHaveLength(8);
    expect(out.map((p) => [p.source, p.sample])).toEqual(
      [0, 1].flatMap((s) => [0, 1, 2, 3].map((n) => [s, n])),
    );
    const kept = out.filter((p) => p.kept);
    expect(kept.length).toBeGreaterThan(0);
    for (const p of kept) {
      const own = await meanLogProb(
        PROMPT.replace("{text}", TEXTS[p.source]!),
        p.text,
      );
      const blank = await meanLogProb(PROMPT.replace("{text}", ""), p.text);
      expect(Math.abs(p.logProb! - own)).toBeLessThan(1e-4 * Math.abs(own));
      expect(Math.abs(p.gain! - (own - blank))).toBeLessThan(
        1e-4 * (Math.abs(own) + Math.abs(blank)),
      );
    }
    for (const p of out.filter((q) => !q.kept))
      expect(["empty", "same", "repeat", "length"]).toContain(p.rejected);
    // Seeded per text by its key: the second text's samples are the same without the first.
    const alone = await paraphrase(model, tok, [TEXTS[1]!], {
      ...LOOSE,
      keys: [20],
    });
    expect(alone.map((p) => p.text)).toEqual(
      out.filter((p) => p.source === 1).map((p) => p.text),
    );
  });

  it("rejects below its thresholds, naming why", async (ctx) => {
    await needGpu(ctx);
    const tok = model.tokenizer!;
    const loose = (await paraphrase(model, tok, TEXTS, LOOSE)).filter(
      (p) => p.kept,
    );
    expect(loose.length).toBeGreaterThan(1);
    const gains = loose.map((p) => p.gain!).sort((a, b) => a - b);
    const minGain = gains[Math.floor(gains.length / 2)]!;
    const strict = await paraphrase(model, tok, TEXTS, { ...LOOSE, minGain });
    const screened = strict.filter((p) => p.logProb !== undefined);
    expect(screened).toHaveLength(loose.length);
    for (const p of screened) {
      expect(p.kept).toBe(p.gain! >= minGain);
      if (!p.kept) expect(p.rejected).toBe("unrelated");
    }
    const unlikely = await paraphrase(model, tok, TEXTS, {
      ...LOOSE,
      minLogProb: 0,
    });
    expect(
      unlikely.filter((p) => p.logProb !== undefined).map((p) => p.rejected),
    ).toEqual(loose.map(() => "unlikely"));
    await expect(
      paraphrase(model, tok, TEXTS, { ...LOOSE, prompt: "no slot" }),
    ).rejects.toThrow(/has no \{text\}/);
  });
});

/**
 * The few-shot baseline with the tiny-chatml tokenizer (EOS `<|im_end|>` = 392, no BOS): the exact prompts and ids
 * of few-shot rows, the seeded (and balanced) draw, the prefix out of the loss, examples dropped from the front of
 * rows that would pass the model's positions, bad k; and on a tiny random model, that k = 0 is plain evaluate()
 * and that the loss is over the same tokens with examples in front.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildDataset,
  ConfigError,
  disposeRuntime,
  evaluate,
  fewShotEvaluate,
  fewShotRows,
  loadModel,
  type Example,
  type FewShotTokenizer,
  type PretrainedModel,
  type Tokenizer,
} from "@webtune/core";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { EOS, I, loadTokenizer } from "./data_fixture.js";

const tok: Tokenizer = await loadTokenizer();

const SEP = "<|im_end|>";

function read(rows: object[], name = "rows.jsonl"): Example[] {
  const file = rows.map((r) => JSON.stringify(r)).join("\n");
  return buildDataset(file, tok, { source: name, dedupe: false }).examples;
}

const TRAIN_CLS = read([
  { text: "the cat sat", label: "calm" },
  { text: "a dog ran", label: "busy" },
  { text: "the bird flew", label: "busy" },
  { text: "a fox hid", label: "calm" },
  { text: "the cow ate", label: "calm" },
  { text: "a pig ran", label: "busy" },
]);
const TEST_CLS = read([
  { text: "the hen slept", label: "calm" },
  { text: "a rat ran far", label: "busy" },
]);
const TRAIN_QA = read([
  { prompt: "Q: one\nA:", completion: " 1" },
  { prompt: "Q: two\nA:", completion: " 2" },
  { prompt: "Q: three\nA:", completion: " 3" },
]);
const TEST_QA = read([{ prompt: "Q: four\nA:", completion: " 4" }]);
const TRAIN_TEXT = read([
  { text: "the cat sat on the mat" },
  { text: "a dog ran in the park" },
  { text: "birds fly over the sea" },
]);
const TEST_TEXT = read([{ text: "the fox hid in a hole" }]);

const cls = (k: number, seed = 0) =>
  fewShotRows(tok, {
    train: TRAIN_CLS,
    test: TEST_CLS,
    k,
    seed,
    format: "classification",
    labels: ["calm", "busy"],
  });

describe("fewShotRows", () => {
  it("puts the drawn examples, rendered as trained and ended by EOS, before each classification prompt", () => {
    const { rows, report } = cls(2, 0);
    expect(report.shots).toEqual([3, 5]); // seed 0's draw, pinned: the same in every engine
    expect(report.separator).toBe(SEP);
    expect(report.balanced).toBe(true);
    const prefix = `a fox hid\nLabel: calm${SEP}a pig ran\nLabel: busy${SEP}`;
    expect(rows.map((r) => r.prompt)).toEqual([
      `${prefix}the hen slept\nLabel:`,
      `${prefix}a rat ran far\nLabel:`,
    ]);
    // The ids are the prompt as evaluate() tokenizes it, then the row's own label and EOS, the only loss tokens.
    const promptIds = tok.encode(rows[0]!.prompt!);
    expect(promptIds.filter((id) => id === EOS)).toHaveLength(2);
    const label = [...tok.encode(" calm", { addSpecialTokens: false }), EOS];
    expect(rows[0]!.inputIds).toEqual([...promptIds, ...label]);
    expect(rows[0]!.labels).toEqual([...promptIds.map(() => I), ...label]);
    expect(tok.decode(rows[0]!.inputIds)).toBe(
      `${prefix}the hen slept\nLabel: calm${SEP}`,
    );
    expect(report.promptTokens.max).toBe(
      Math.max(...rows.map((r) => tok.encode(r.prompt!).length)),
    );
  });

  it("ends instruction examples with EOS before the row's prompt, loss on the row's completion alone", () => {
    const { rows, report } = fewShotRows(tok, {
      train: TRAIN_QA,
      test: TEST_QA,
      k: 3,
      seed: 0,
      format: "instruction",
    });
    const shots = report.shots.map(
      (i) => TRAIN_QA[i]!.prompt! + TRAIN_QA[i]!.completion! + SEP,
    );
    expect([...report.shots].sort()).toEqual([0, 1, 2]);
    expect(rows[0]!.prompt).toBe(`${shots.join("")}Q: four\nA:`);
    const completion = [...tok.encode(" 4", { addSpecialTokens: false }), EOS];
    expect(rows[0]!.inputIds.slice(-completion.length)).toEqual(completion);
    expect(rows[0]!.labels.filter((l) => l !== I)).toEqual(completion);
    expect(rows[0]!.completion).toBe(" 4");
  });

  it("keeps a completion row's scored tokens: the prefix and the row's first token are out of the loss", () => {
    const { rows, report } = fewShotRows(tok, {
      train: TRAIN_TEXT,
      test: TEST_TEXT,
      k: 2,
      seed: 3,
      format: "completion",
    });
    const row = TEST_TEXT[0]!;
    const prefixIds = tok.encode(
      report.shots.map((i) => tok.decode(TRAIN_TEXT[i]!.inputIds)).join(""),
    );
    expect(rows[0]!.inputIds).toEqual([...prefixIds, ...row.inputIds]);
    expect(report.promptTokens).toEqual({
      mean: prefixIds.length,
      max: prefixIds.length,
    });
    // Plain evaluation scores positions 1.. of the row; so does the few-shot row.
    expect(rows[0]!.labels).toEqual([
      ...prefixIds.map(() => I),
      I,
      ...row.labels.slice(1),
    ]);
  });

  it("drops the special tokens a tokenizer adds at the start from the row, keeping its scored tokens", () => {
    const BOS = 391; // <|im_start|>, added by this wrapper as a BOS-adding tokenizer would
    const withBos: FewShotTokenizer = {
      eosTokenId: tok.eosTokenId,
      decode: (ids, o) => tok.decode(ids, o),
      encode: (text, o) =>
        o?.addSpecialTokens === false
          ? tok.encode(text, o)
          : [BOS, ...tok.encode(text, o)],
    };
    const row: Example = {
      inputIds: [BOS, ...tok.encode("the fox"), EOS],
      labels: [BOS, ...tok.encode("the fox"), EOS],
      line: 1,
    };
    const { rows } = fewShotRows(withBos, {
      train: TRAIN_TEXT,
      test: [row],
      k: 1,
      format: "completion",
    });
    const ids = rows[0]!.inputIds;
    expect(ids.filter((id) => id === BOS)).toEqual([BOS]);
    expect(ids[0]).toBe(BOS);
    expect(rows[0]!.labels.filter((l) => l !== I)).toEqual(row.labels.slice(1));
  });

  it("draws the same examples for a seed, and others for another seed", () => {
    expect(cls(3, 7).report.shots).toEqual(cls(3, 7).report.shots);
    expect(cls(3, 7).rows).toEqual(cls(3, 7).rows);
    expect(cls(3, 8).report.shots).not.toEqual(cls(3, 7).report.shots);
  });

  it("draws every label when k covers them, and plain at random below", () => {
    for (let seed = 0; seed < 20; seed++) {
      const labels = cls(2, seed).report.shots.map((i) => TRAIN_CLS[i]!.label);
      expect(new Set(labels)).toEqual(new Set(["calm", "busy"]));
    }
    expect(cls(1, 0).report.balanced).toBe(false);
    // Below the number of labels the draw is uniform: over seeds, both labels come first.
    const first = new Set(
      [...Array(20).keys()].map(
        (seed) => TRAIN_CLS[cls(1, seed).report.shots[0]!]!.label,
      ),
    );
    expect(first).toEqual(new Set(["calm", "busy"]));
  });

  it("drops examples from the front of rows that would pass maxPositions, and reports them; the row is never cut", () => {
    const full = fewShotRows(tok, {
      train: TRAIN_TEXT,
      test: TEST_TEXT,
      k: 3,
      format: "completion",
    });
    const row = TEST_TEXT[0]!;
    const lastShot = tok.decode(TRAIN_TEXT[full.report.shots[2]!]!.inputIds);
    const oneShot = tok.encode(lastShot).length + row.inputIds.length;
    const { rows, report } = fewShotRows(tok, {
      train: TRAIN_TEXT,
      test: TEST_TEXT,
      k: 3,
      format: "completion",
      maxPositions: oneShot,
    });
    expect(report.shortened).toBe(1);
    expect(report.minShots).toBe(1);
    expect(rows[0]!.inputIds).toEqual([
      ...tok.encode(lastShot),
      ...row.inputIds,
    ]);
    // With no room for any example the row stays whole.
    const none = fewShotRows(tok, {
      train: TRAIN_TEXT,
      test: TEST_TEXT,
      k: 3,
      format: "completion",
      maxPositions: 2,
    });
    expect(none.rows[0]).toBe(row);
    expect(none.report.minShots).toBe(0);
  });

  it("counts the greedy budget of instruction rows and the labels of classification rows against maxPositions", () => {
    const qa = (maxPositions: number) =>
      fewShotRows(tok, {
        train: TRAIN_QA,
        test: TEST_QA,
        k: 1,
        format: "instruction",
        maxPositions,
      }).report.shortened;
    const prompt = tok.encode(
      fewShotRows(tok, {
        train: TRAIN_QA,
        test: TEST_QA,
        k: 1,
        format: "instruction",
      }).rows[0]!.prompt!,
    ).length;
    const budget = tok.encode(" 4", { addSpecialTokens: false }).length + 8;
    expect(qa(prompt + budget)).toBe(0);
    expect(qa(prompt + budget - 1)).toBe(1);
  });

  it("returns the test rows themselves for k = 0", () => {
    const { rows, report } = cls(0);
    expect(rows).toEqual(TEST_CLS);
    expect(report.shots).toEqual([]);
    expect(report.shortened).toBe(0);
  });

  it.each([
    [-1, "expected an integer >= 0"],
    [1.5, "expected an integer >= 0"],
    [7, "train has 6 rows"],
  ])("rejects k = %s with a ConfigError naming the option", (k, why) => {
    const call = (names?: { k: string; train: string }) =>
      fewShotRows(tok, {
        train: TRAIN_CLS,
        test: TEST_CLS,
        k,
        format: "classification",
        names,
      });
    expect(() => call()).toThrow(ConfigError);
    expect(() => call()).toThrow(`k is ${k}`);
    expect(() => call()).toThrow(why);
    expect(() => call({ k: "--few-shot", train: "--train" })).toThrow(
      `--few-shot is ${k}`,
    );
  });
});

describe("fewShotEvaluate", () => {
  let model: PretrainedModel;
  beforeAll(async () => {
    if (!(await startGpu())) return;
    model = await loadModel(chatModelFolder(), { cache: false });
  });
  afterAll(() => {
    model?.dispose();
    disposeRuntime();
  });

  it("with k = 0 gives plain evaluate()'s result", async (ctx) => {
    await needGpu(ctx);
    const options = {
      format: "classification" as const,
      labels: ["calm", "busy"],
    };
    const plain = await evaluate(model, tok, TEST_CLS, options);
    const few = await fewShotEvaluate(model, tok, {
      train: TRAIN_CLS,
      test: TEST_CLS,
      k: 0,
      ...options,
    });
    expect(few.result).toEqual(plain);
  });

  it("scores the same tokens as plain evaluate() with examples in front, and other values", async (ctx) => {
    await needGpu(ctx);
    const plain = await evaluate(model, tok, TEST_TEXT, {
      format: "completion",
    });
    const { result, report } = await fewShotEvaluate(model, tok, {
      train: TRAIN_TEXT,
      test: TEST_TEXT,
      k: 2,
      format: "completion",
    });
    expect(result.tokens).toBe(plain.tokens);
    expect(result.loss).not.toBeCloseTo(plain.loss, 6);
    expect(report.shots).toHaveLength(2);
  });
});

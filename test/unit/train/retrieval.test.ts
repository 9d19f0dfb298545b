/**
 * The retrieval baseline with the tiny-chatml tokenizer (EOS `<|im_end|>` = 392): BM25 against an independent
 * BM25+ computed here, its terms, ties and k past the matches; cosine against a hand computation; retrievalRows'
 * order (nearest last), drop from the front under maxPositions, rows with fewer matches, the duplicate count and
 * bad k; and on a tiny random Llama, hiddenStateEmbeddings against the mean of hiddenStates taken by hand (padding
 * and batching change nothing), normalised, deterministic and leak-free, and retrievalEvaluate scoring the same
 * tokens as plain evaluate().
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bm25Retriever,
  buildDataset,
  ConfigError,
  disposeRuntime,
  embeddingRetriever,
  evaluate,
  hiddenStateEmbeddings,
  hiddenStateRetriever,
  loadModel,
  retrievalEvaluate,
  retrievalRows,
  retrievalTerms,
  retrievalText,
  type Example,
  type PretrainedModel,
  type Tokenizer,
} from "@webtune/core";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { loadTokenizer } from "./data_fixture.js";

const tok: Tokenizer = await loadTokenizer();
const SEP = "<|im_end|>";

function read(rows: object[], name = "rows.jsonl"): Example[] {
  const file = rows.map((r) => JSON.stringify(r)).join("\n");
  return buildDataset(file, tok, { source: name, dedupe: false }).examples;
}

/** BM25+ as MiniSearch documents it (k 1.2, b 0.7, d 0.5; length = distinct terms), times the terms matched. */
function bm25Oracle(docs: string[], query: string): number[] {
  const terms = docs.map(retrievalTerms);
  const lengths = terms.map((t) => new Set(t).size);
  const avg = lengths.reduce((a, b) => a + b, 0) / docs.length;
  const q = retrievalTerms(query);
  return terms.map((doc, d) => {
    let score = 0;
    const matched = new Set<string>();
    for (const term of q) {
      const tf = doc.filter((t) => t === term).length;
      if (tf === 0) continue;
      matched.add(term);
      const n = terms.filter((t) => t.includes(term)).length;
      const idf = Math.log(1 + (docs.length - n + 0.5) / (n + 0.5));
      const norm = 1 - 0.7 + (0.7 * lengths[d]!) / avg;
      score += idf * (0.5 + (tf * 2.2) / (tf + 1.2 * norm));
    }
    return score * matched.size;
  });
}

const CORPUS = [
  "The cat sat on the mat.",
  "Date: 2038-04-01\nWritten out:",
  "A dog ran in the park.",
  "Date: 2038-04-17\nWritten out:",
  "Date: 1999-12-31\nWritten out:",
  "the cat sat",
];

describe("bm25Retriever", () => {
  it("splits words and digit groups, lower-cased", () => {
    expect(retrievalTerms("Date: 2038-04-01\nWritten out:")).toEqual([
      "date",
      "2038",
      "04",
      "01",
      "written",
      "out",
    ]);
    expect(retrievalTerms("Policeman's tie, abc123")).toEqual([
      "policeman",
      "s",
      "tie",
      "abc",
      "123",
    ]);
  });

  it("ranks the relevant rows first, with the scores of BM25+ computed independently", () => {
    const r = bm25Retriever(CORPUS);
    expect(r.name).toBe("bm25");
    const query = "Date: 2038-04-09\nWritten out:";
    const hits = r.nearest(query, 6);
    // Same year and month first; the other date next; no row without a common term.
    expect(hits.map((h) => h.index)).toEqual([1, 3, 4]);
    const oracle = bm25Oracle(CORPUS, query);
    for (const h of hits) expect(h.score).toBeCloseTo(oracle[h.index]!, 10);
    expect(oracle.filter((s) => s > 0)).toHaveLength(3);
    // Of two rows with the same term, the shorter is nearer (length normalisation).
    expect(r.nearest("cat", 2).map((h) => h.index)).toEqual([5, 0]);
  });

  it("orders equal scores by row index, skips excluded rows and returns fewer than k when fewer match", () => {
    const r = bm25Retriever(["red fox", "blue bird", "red fox", "red fox"]);
    const hits = r.nearest("red fox", 10);
    expect(hits.map((h) => h.index)).toEqual([0, 2, 3]);
    expect(new Set(hits.map((h) => h.score)).size).toBe(1);
    expect(r.nearest("red fox", 2, new Set([0])).map((h) => h.index)).toEqual([
      2, 3,
    ]);
    expect(r.nearest("green", 3)).toEqual([]);
    expect(() => r.nearest("red", -1)).toThrow(ConfigError);
  });
});

describe("embeddingRetriever", () => {
  it("scores by cosine similarity, best first, ties by row index", () => {
    const v = (...x: number[]) => Float32Array.from(x);
    const rows = [v(0, 2), v(1, 1), v(2, 0), v(-1, 0), v(0, 0), v(3, 0)];
    const r = embeddingRetriever(rows, () => v(1, 0), "test");
    const hits = r.nearest("anything", 6);
    // cos((1,0), row): 0, 1/√2, 1, -1, 0 (zero vector), 1.
    expect(hits.map((h) => h.index)).toEqual([2, 5, 1, 0, 4, 3]);
    expect(hits.map((h) => h.score)).toEqual([
      1,
      1,
      expect.closeTo(Math.SQRT1_2, 6),
      0,
      0,
      -1,
    ]);
    expect(r.nearest("x", 2, new Set([2])).map((h) => h.index)).toEqual([5, 1]);
    expect(() => embeddingRetriever([v(1, 0), v(1)], () => v(1, 0))).toThrow(
      "vector 1 has 1 dimensions",
    );
  });
});

const TRAIN_QA = read([
  { prompt: "Q: red apple\nA:", completion: " fruit" },
  { prompt: "Q: blue sky\nA:", completion: " air" },
  { prompt: "Q: red apple pie\nA:", completion: " food" },
  { prompt: "Q: green tree\nA:", completion: " plant" },
]);
const TEST_QA = read([
  { prompt: "Q: red apple tart\nA:", completion: " cake" },
]);
const TRAIN_CLS = read([
  { text: "the cat sat", label: "calm" },
  { text: "a dog ran", label: "busy" },
  { text: "the cow ate", label: "calm" },
]);
const TEST_CLS = read([
  { text: "the cat sat", label: "calm" },
  { text: "zebra", label: "busy" },
  { text: "a dog hid", label: "calm" },
]);
const shot = (e: Example) => e.prompt! + e.completion! + SEP;

describe("retrievalRows", () => {
  it("puts the nearest example last, next to the row, and never retrieves by the answer", () => {
    expect(retrievalText(tok, TEST_QA[0]!, "instruction")).toBe(
      "Q: red apple tart\nA:",
    );
    // Rows 0 and 2 share "red apple"; the shorter row 0 is nearer (BM25's length normalisation).
    const texts = TRAIN_QA.map((e) => e.prompt!);
    const oracle = bm25Oracle(texts, TEST_QA[0]!.prompt!);
    expect(oracle[0]).toBeGreaterThan(oracle[2]!);
    expect(oracle[2]).toBeGreaterThan(oracle[1]!);
    const { rows, report } = retrievalRows(tok, {
      train: TRAIN_QA,
      test: TEST_QA,
      k: 2,
      format: "instruction",
    });
    expect(report.shots).toEqual([[2, 0]]);
    expect(report.retriever).toBe("bm25");
    expect(rows[0]!.prompt).toBe(
      `${shot(TRAIN_QA[2]!)}${shot(TRAIN_QA[0]!)}Q: red apple tart\nA:`,
    );
    expect(rows[0]!.completion).toBe(" cake");
    expect(report.promptTokens.max).toBe(tok.encode(rows[0]!.prompt!).length);
    expect(report).toMatchObject({
      shortened: 0,
      fewerMatches: 0,
      minShots: 2,
      duplicates: 0,
    });
  });

  it("drops the least similar examples first to fit maxPositions", () => {
    const one = retrievalRows(tok, {
      train: TRAIN_QA,
      test: TEST_QA,
      k: 1,
      format: "instruction",
    });
    const budget = tok.encode(" cake", { addSpecialTokens: false }).length + 8;
    const fits = tok.encode(one.rows[0]!.prompt!).length + budget;
    const { rows, report } = retrievalRows(tok, {
      train: TRAIN_QA,
      test: TEST_QA,
      k: 3,
      format: "instruction",
      maxPositions: fits,
    });
    expect(report.shots).toEqual([[0]]);
    expect(report.shortened).toBe(1);
    expect(report.minShots).toBe(1);
    expect(rows).toEqual(one.rows);
  });

  it("counts test rows with fewer matches and test rows that are training rows", () => {
    const { rows, report } = retrievalRows(tok, {
      train: TRAIN_CLS,
      test: TEST_CLS,
      k: 2,
      format: "classification",
      labels: ["calm", "busy"],
    });
    // "the cat sat" is training row 0 (a leak); "zebra" matches nothing; "a dog hid" matches row 1 alone.
    expect(report.duplicates).toBe(1);
    expect(report.duplicateLines).toEqual([1]);
    expect(report.shots).toEqual([[2, 0], [], [1]]);
    expect(report.fewerMatches).toBe(2);
    expect(report.minShots).toBe(0);
    expect(rows[1]).toEqual(TEST_CLS[1]);
    expect(rows[2]!.prompt).toBe(
      `a dog ran\nLabel: busy${SEP}a dog hid\nLabel:`,
    );
  });

  it("uses the retriever it is given, and refuses indices outside the training rows", () => {
    const fixed = { name: "fixed", nearest: () => [{ index: 3, score: 1 }] };
    const { report } = retrievalRows(tok, {
      train: TRAIN_QA,
      test: TEST_QA,
      k: 1,
      format: "instruction",
      retriever: fixed,
    });
    expect(report.retriever).toBe("fixed");
    expect(report.shots).toEqual([[3]]);
    const wrong = { name: "wrong", nearest: () => [{ index: 9, score: 1 }] };
    expect(() =>
      retrievalRows(tok, {
        train: TRAIN_QA,
        test: TEST_QA,
        k: 1,
        format: "instruction",
        retriever: wrong,
      }),
    ).toThrow('retriever "wrong" returned row 9, but train has 4 rows');
  });

  it.each([
    [0, "--retrieve is 0; expected an integer >= 1"],
    [5, "--retrieve is 5, but --train has 4 rows"],
  ])("rejects k = %s naming the flags", (k, message) => {
    const call = () =>
      retrievalRows(tok, {
        train: TRAIN_QA,
        test: TEST_QA,
        k,
        format: "instruction",
        names: { k: "--retrieve", train: "--train" },
      });
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(message);
  });
});

describe("hiddenStateEmbeddings and retrievalEvaluate", () => {
  let model: PretrainedModel;
  beforeAll(async () => {
    if (!(await startGpu())) return;
    model = await loadModel(chatModelFolder(), { cache: false });
  });
  afterAll(() => {
    model?.dispose();
    disposeRuntime();
  });

  const TEXTS = [
    "the cat sat on the mat",
    "a dog",
    "",
    "birds fly over the sea and far away",
    "a dog",
  ];

  /** The mean final hidden state of one text run alone (no padding), normalised, by plain arithmetic. */
  async function byHand(text: string): Promise<number[]> {
    const ids = tok.encode(text);
    const h = tf.tidy(() =>
      model.lm.hiddenStates(tf.tensor2d([ids], [1, ids.length], "int32")),
    );
    const [rows] = (await h.array()) as number[][][];
    h.dispose();
    const mean = rows![0]!.map(
      (_, c) => rows!.reduce((s, r) => s + r[c]!, 0) / rows!.length,
    );
    const length = Math.hypot(...mean);
    return mean.map((x) => x / length);
  }

  it("is each text's normalised mean hidden state, whatever the batching, and leaves no tensor", async (ctx) => {
    await needGpu(ctx);
    const before = tf.memory().numTensors;
    const vectors = await hiddenStateEmbeddings(model, tok, TEXTS, {
      batchSize: 2,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(vectors.map((v) => v.length)).toEqual(TEXTS.map(() => 32));
    for (const i of [0, 1, 3]) {
      expect(Math.hypot(...vectors[i]!)).toBeCloseTo(1, 5);
      const hand = await byHand(TEXTS[i]!);
      vectors[i]!.forEach((x, c) => expect(x).toBeCloseTo(hand[c]!, 4));
    }
    expect([...vectors[2]!].every((x) => x === 0)).toBe(true); // no tokens
    // The same text in another batch (other padding): the same vector up to rounding.
    vectors[4]!.forEach((x, c) => expect(x).toBeCloseTo(vectors[1]![c]!, 5));
    const again = await hiddenStateEmbeddings(model, tok, TEXTS, {
      batchSize: 2,
    });
    expect(again).toEqual(vectors);
    const one = await hiddenStateEmbeddings(model, tok, TEXTS, {
      batchSize: 1,
    });
    one.forEach((v, i) =>
      v.forEach((x, c) => expect(x).toBeCloseTo(vectors[i]![c]!, 5)),
    );
  });

  it("retrieves a text itself first by its hidden states", async (ctx) => {
    await needGpu(ctx);
    const docs = TEXTS.slice(0, 4);
    const r = await hiddenStateRetriever(model, tok, docs, [docs[3]!]);
    expect(r.name).toBe("hidden");
    const [first] = r.nearest(docs[3]!, 2);
    expect(first!.index).toBe(3);
    expect(first!.score).toBeCloseTo(1, 5);
    expect(() => r.nearest("not embedded", 1)).toThrow(
      "was not among the queries",
    );
  });

  it("scores the same tokens as plain evaluate(), with examples in front", async (ctx) => {
    await needGpu(ctx);
    const options = { format: "instruction" as const, exactMatchTokens: 2 };
    const plain = await evaluate(model, tok, TEST_QA, options);
    const { result, report } = await retrievalEvaluate(model, tok, {
      train: TRAIN_QA,
      test: TEST_QA,
      k: 2,
      ...options,
    });
    expect(report.shots).toEqual([[2, 0]]);
    expect(result.tokens).toBe(plain.tokens);
    expect(result.rows).toBe(1);
    expect(result.loss).not.toBeCloseTo(plain.loss, 6);
  });
});

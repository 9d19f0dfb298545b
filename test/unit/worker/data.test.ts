/**
 * The worker's data reading (no GPU): a separate test file keeps every row, repeated ones too, and the summary
 * reports the test rows that the training split also holds, which the demo shows as a contamination warning.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { FormatError, type Tokenizer } from "@webtune/core";
import { readData } from "../../../packages/worker/src/data.js";
import { loadTokenizer } from "../train/data_fixture.js";

let tok: Tokenizer;
beforeAll(async () => {
  tok = await loadTokenizer();
});
/** What readData needs of a model: its tokenizer and vocabulary size (393 ids), no weights. */
const model = () =>
  ({
    tokenizer: tok,
    dims: { vocabSize: 393 },
    source: "tokenizer-only",
  }) as unknown as Parameters<typeof readData>[2];

const line = (text: string) => JSON.stringify({ text });
const train = Array.from({ length: 20 }, (_, i) => line(`row ${i}`)).join("\n");

describe("readData", () => {
  it("keeps every row of a test file and reports those the training split holds too", async () => {
    const test = [line("row 3"), line("new"), line("row 3"), line("row 7")];
    const { data, summary } = await readData(
      train,
      {
        source: "train.jsonl",
        valSplit: 0,
        test: { input: test.join("\n"), source: "test.jsonl" },
      },
      model(),
    );
    expect(summary.sizes).toEqual({ train: 20, val: 0, test: 4 });
    expect(data.test).toHaveLength(4);
    expect(summary.overlap).toEqual({ rows: 3, lines: [1, 3, 4] });
  });

  it("finds no overlap between the splits of one cleaned file", async () => {
    const { summary } = await readData(
      `${train}\n${line("row 3")}`,
      { source: "train.jsonl", valSplit: 0.2, testSplit: 0.2 },
      model(),
    );
    expect(summary.report.dropped.duplicate).toBe(1);
    expect(summary.sizes.test).toBeGreaterThan(0);
    expect(summary.overlap).toEqual({ rows: 0, lines: [] });
  });

  it("checks token ids against the model's vocabulary when the file is read", async () => {
    const read = () =>
      readData('{"input_ids": [1, 500]}', { source: "ids.jsonl" }, model());
    await expect(read()).rejects.toThrow(FormatError);
    await expect(read()).rejects.toThrow(
      /ids\.jsonl, line 1: field "input_ids\[1\]" is 500; the model's vocabulary has 393 ids/,
    );
  });
});

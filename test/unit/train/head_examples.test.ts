/**
 * Rows for a classification head, with a stand-in tokenizer (one id per character, a BOS of 1 in front of text):
 * a sequence row is its text alone with the label's id at its last token; tagged rows read from JSONL or CoNLL,
 * each word's first subword carrying its tag after the BOS; truncation keeps the tags of the words that remain;
 * a tag the training file lacks is named with its file and line.
 */
import { describe, expect, it } from "vitest";
import {
  sequenceExample,
  taggedDataset,
} from "../../../packages/core/src/train/data/head_examples.js";

const BOS = 1;
const tokenizer = {
  encode: (text: string, o: { addSpecialTokens?: boolean } = {}) => [
    ...(o.addSpecialTokens === false ? [] : [BOS]),
    ...[...text].map((c) => c.charCodeAt(0)),
  ],
};

describe("rows for a classification head", () => {
  it("a sequence row is its text alone, its label's id at the pooled (last non-pad) token", () => {
    const e = sequenceExample(
      {
        inputIds: [9, 9, 9],
        labels: [-100, -100, 9],
        label: "pos",
        text: "ab",
        prompt: "ab\nLabel:",
        line: 3,
      },
      tokenizer,
      ["neg", "pos"],
      { maxLength: 16, padId: 0 },
    );
    expect(e.inputIds).toEqual([BOS, 97, 98]);
    expect(e.labels).toEqual([-100, -100, 1]);
    expect(e.prompt).toBe("ab");
    expect(() =>
      sequenceExample(
        { inputIds: [1], labels: [1], label: "meh", text: "x", line: 7 },
        tokenizer,
        ["neg", "pos"],
        { maxLength: 16, padId: 0 },
      ),
    ).toThrow(/line 7: .*neg, pos, got "meh"/);
  });

  it("reads CoNLL like JSONL, aligns each word's first subword after the BOS, and truncates by words", () => {
    const conll = "-DOCSTART- O\n\nab B-PER\nc O\n\nd B-LOC\nef I-LOC\n";
    const jsonl = [
      { tokens: ["ab", "c"], tags: ["B-PER", "O"] },
      { tokens: ["d", "ef"], tags: ["B-LOC", "I-LOC"] },
    ]
      .map((r) => JSON.stringify(r))
      .join("\n");
    const options = { maxLength: 16, labelSubwords: "first" as const };
    const a = taggedDataset(conll, tokenizer, {
      ...options,
      source: "x.conll",
    });
    const b = taggedDataset(jsonl, tokenizer, {
      ...options,
      source: "x.jsonl",
    });
    expect(a.labels).toEqual(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]);
    expect(a.examples.map((e) => e.inputIds)).toEqual(
      b.examples.map((e) => e.inputIds),
    );
    // BOS, " ab" (3 ids), " c" (2 ids): B-PER (3) on the space before "ab", O (0) on the space before "c".
    expect(a.examples[0]!.inputIds).toEqual([BOS, 32, 97, 98, 32, 99]);
    expect(a.examples[0]!.labels).toEqual([-100, 3, -100, -100, 0, -100]);
    expect(a.examples[0]!.wordIds).toEqual([null, 0, 0, 0, 1, 1]);
    // Cut to 4 tokens, the second word is gone, and so is its tag.
    const cut = taggedDataset(conll, tokenizer, {
      ...options,
      maxLength: 4,
      source: "x.conll",
    });
    expect(cut.examples[0]!.tags).toEqual(["B-PER"]);
    expect(cut.report.truncated).toBe(2);
  });

  it("names the file and line of a tag the training labels lack, or a row whose lengths differ", () => {
    const options = { maxLength: 16, labelSubwords: "first" as const };
    expect(() =>
      taggedDataset(
        '{"tokens": ["a", "b"], "tags": ["O", "B-ORG"]}',
        tokenizer,
        {
          ...options,
          source: "test.jsonl",
          labels: ["O", "B-PER", "I-PER"],
        },
      ),
    ).toThrow(/test\.jsonl, line 1: .*B-ORG/);
    expect(() =>
      taggedDataset('\n{"tokens": ["a", "b"], "tags": ["O"]}', tokenizer, {
        ...options,
        source: "train.jsonl",
      }),
    ).toThrow(/train\.jsonl, line 2: 2 tokens but 1 tag/);
  });
});

/**
 * Token-classification data: JSONL and CoNLL reading with errors that name the file and line, the IOB2 check,
 * the label list's order, word-to-subword alignment as Hugging Face's run_ner.py does it, and mapping token
 * predictions back to words.
 */
import { describe, expect, it } from "vitest";
import { FormatError, ShapeError } from "@webtune/core";
import { RowFormatError } from "../../../packages/core/src/train/data/index.js";
import {
  alignTags,
  checkKnownTags,
  checkTagScheme,
  parseConll,
  parseTaggedJsonl,
  splitTag,
  tagVocabulary,
  wordPredictions,
  type TaggedRow,
} from "../../../packages/core/src/train/data/token_tags.js";

/** The RowFormatError that `fn` throws. */
function rowErrorOf(fn: () => unknown): RowFormatError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RowFormatError);
    return e as RowFormatError;
  }
  throw new Error("expected a RowFormatError");
}

const jsonl = (...lines: string[]) => lines.join("\n");

describe("parseTaggedJsonl", () => {
  it("reads tokens and tags with their line numbers, skipping blank lines", () => {
    const text = jsonl(
      '{"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"]}',
      "",
      "   ",
      '{"tokens": ["Paris"], "tags": ["B-LOC"], "id": 7}',
    );
    expect(parseTaggedJsonl(text, "t.jsonl")).toEqual([
      {
        tokens: ["Ada", "Lovelace", "wrote"],
        tags: ["B-PER", "I-PER", "O"],
        line: 1,
      },
      { tokens: ["Paris"], tags: ["B-LOC"], line: 4 },
    ]);
  });

  it("reads Hugging Face's ner_tags field when it holds tag names", () => {
    const rows = parseTaggedJsonl(
      '{"tokens": ["EU", "rejects"], "ner_tags": ["B-ORG", "O"]}\r\n',
      "hf.jsonl",
    );
    expect(rows).toEqual([
      { tokens: ["EU", "rejects"], tags: ["B-ORG", "O"], line: 1 },
    ]);
  });

  it("refuses ner_tags ids, saying to map them to names first", () => {
    const e = rowErrorOf(() =>
      parseTaggedJsonl(
        jsonl(
          '{"tokens": ["a"], "tags": ["O"]}',
          '{"tokens": ["EU"], "ner_tags": [3]}',
        ),
        "hf.jsonl",
      ),
    );
    expect(e.message).toContain("hf.jsonl, line 2:");
    expect(e.message).toContain("tag ids");
    expect(e.message).toContain("map the ids to their names first");
    expect(e.field).toBe("ner_tags");
    expect(e.line).toBe(2);
  });

  it("names the file and line of a tokens/tags length mismatch", () => {
    const good = '{"tokens": ["a"], "tags": ["O"]}';
    const bad =
      '{"tokens": ["a", "b", "c", "d", "e"], "tags": ["O", "O", "O", "O"]}';
    const e = rowErrorOf(() =>
      parseTaggedJsonl(
        jsonl(good, good, "", good, good, good, bad),
        "train.jsonl",
      ),
    );
    expect(e.message).toMatch(/^train\.jsonl, line 7: 5 tokens but 4 tags/);
    expect(e.source).toBe("train.jsonl");
    expect(e.line).toBe(7);
  });

  it("names the line of malformed JSON, a missing field, a non-string entry and an empty row", () => {
    const good = '{"tokens": ["a"], "tags": ["O"]}';
    const cases: [string, RegExp][] = [
      ['{"tokens": ["a"], "tags": ["O"]', /not valid JSON/],
      ['["a", "O"]', /holds an array; expected a JSON object/],
      ['{"tags": ["O"]}', /has no "tokens" field/],
      [
        '{"tokens": ["a"]}',
        /has no "tags" field \(nor Hugging Face's "ner_tags"\)/,
      ],
      [
        '{"tokens": "a b", "tags": ["O"]}',
        /field "tokens" is "a b"; expected an array of strings/,
      ],
      [
        '{"tokens": ["a", 5], "tags": ["O", "O"]}',
        /"tokens" entry 2 is 5; expected a string/,
      ],
      [
        '{"tokens": ["a"], "tags": [null]}',
        /"tags" entry 1 is null; expected a string/,
      ],
      ['{"tokens": [], "tags": []}', /"tokens" is empty/],
    ];
    for (const [row, why] of cases) {
      const e = rowErrorOf(() =>
        parseTaggedJsonl(jsonl(good, "", row), "d.jsonl"),
      );
      expect(e.message).toContain("d.jsonl, line 3:");
      expect(e.message).toMatch(why);
    }
  });
});

describe("parseConll", () => {
  it("reads CoNLL-2003 columns: the word first, the tag last, -DOCSTART- skipped, blank lines between sentences", () => {
    const text = [
      "-DOCSTART- -X- -X- O", // 1
      "", // 2
      "EU NNP B-NP B-ORG", // 3
      "rejects VBZ B-VP O", // 4
      "", // 5
      "", // 6
      "Peter\tNNP\tB-NP\tB-PER", // 7 (tabs)
      "Blackburn NNP I-NP I-PER", // 8
      "-DOCSTART- -X- -X- O", // 9: ends the sentence too
      "  Paris   B-LOC  ", // 10: two columns, stray spaces
    ].join("\n");
    expect(parseConll(text, "train.conll")).toEqual([
      { tokens: ["EU", "rejects"], tags: ["B-ORG", "O"], line: 3 },
      { tokens: ["Peter", "Blackburn"], tags: ["B-PER", "I-PER"], line: 7 },
      { tokens: ["Paris"], tags: ["B-LOC"], line: 10 },
    ]);
  });

  it("names the file and line of a line with a single column", () => {
    const e = rowErrorOf(() =>
      parseConll(
        "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn\n",
        "dev.conll",
      ),
    );
    expect(e.message).toContain("dev.conll, line 5:");
    expect(e.message).toContain('has one column ("Blackburn")');
    expect(e.line).toBe(5);
  });
});

describe("checkTagScheme", () => {
  const row = (tags: string[], line = 4): TaggedRow => ({
    tokens: tags.map((_, i) => `w${i}`),
    tags,
    line,
  });

  it("accepts O, B-X and I-X, including an I-X right after O", () => {
    expect(() =>
      checkTagScheme([row(["O", "I-PER", "I-PER", "B-LOC", "O"])], "t.jsonl"),
    ).not.toThrow();
    expect(splitTag("I-PER")).toEqual({ prefix: "I", type: "PER" });
    expect(splitTag("B-A-B")).toEqual({ prefix: "B", type: "A-B" });
  });

  it("refuses any other tag, naming the line, the word and the tag", () => {
    for (const bad of ["S-PER", "E-PER", "B-", "PER", "b-PER", "B_PER", "o"]) {
      const e = rowErrorOf(() =>
        checkTagScheme([row(["O"], 1), row(["O", "B-PER", bad], 9)], "t.conll"),
      );
      expect(e.message).toContain("t.conll, line 9:");
      expect(e.message).toContain(
        `word 3 ("w2") has tag ${JSON.stringify(bad)}, which is not IOB2`,
      );
      expect(splitTag(bad)).toBeUndefined();
    }
  });
});

describe("tagVocabulary", () => {
  it('puts "O" first, then B- and I- of each type in sorted order, both even when one is never seen', () => {
    const rows: TaggedRow[] = [
      { tokens: ["a", "b"], tags: ["I-ZED", "O"], line: 1 },
      { tokens: ["c", "d", "e"], tags: ["B-PER", "I-PER", "B-ALPHA"], line: 2 },
      { tokens: ["f"], tags: ["B-PER"], line: 3 },
    ];
    expect(tagVocabulary(rows)).toEqual([
      "O",
      "B-ALPHA",
      "I-ALPHA",
      "B-PER",
      "I-PER",
      "B-ZED",
      "I-ZED",
    ]);
    // The order does not depend on the order of the rows.
    expect(tagVocabulary([...rows].reverse())).toEqual(tagVocabulary(rows));
    expect(tagVocabulary([{ tokens: ["x"], tags: ["O"], line: 1 }])).toEqual([
      "O",
    ]);
  });

  it("refuses a tag that is not IOB2", () => {
    expect(() =>
      tagVocabulary([{ tokens: ["x"], tags: ["S-PER"], line: 3 }]),
    ).toThrow(FormatError);
  });
});

describe("checkKnownTags", () => {
  it("names the line, the unknown tag and the known labels", () => {
    const labels = ["O", "B-PER", "I-PER"];
    const rows: TaggedRow[] = [
      { tokens: ["Ada"], tags: ["B-PER"], line: 1 },
      { tokens: ["on", "Monday"], tags: ["O", "B-DATE"], line: 2 },
    ];
    const e = rowErrorOf(() => checkKnownTags(rows, labels, "test.jsonl"));
    expect(e.message).toContain("test.jsonl, line 2:");
    expect(e.message).toContain('word 2 ("Monday") has tag "B-DATE"');
    expect(e.message).toContain("O, B-PER, I-PER");
    expect(() =>
      checkKnownTags(rows.slice(0, 1), labels, "test.jsonl"),
    ).not.toThrow();
  });
});

/** A fake tokenizer: each word splits into 2-letter pieces, each piece gets the next id the first time it is seen. */
function pieceEncoder() {
  const vocab = new Map<string, number>();
  const calls: [string, number][] = [];
  const encodeWord = (word: string, index: number) => {
    calls.push([word, index]);
    return (word.match(/.{1,2}/g) ?? []).map((piece) => {
      if (!vocab.has(piece)) vocab.set(piece, 10 + vocab.size);
      return vocab.get(piece)!;
    });
  };
  return { encodeWord, calls };
}

describe("alignTags", () => {
  // "Ada" -> Ad|a, "Lovelace" -> Lo|ve|la|ce, "wrote" -> wr|ot|e
  const row: TaggedRow = {
    tokens: ["Ada", "Lovelace", "wrote"],
    tags: ["B-PER", "I-PER", "O"],
    line: 5,
  };
  const label2id = new Map(tagVocabulary([row]).map((tag, id) => [tag, id])); // O 0, B-PER 1, I-PER 2
  const X = -100;

  it('"first" labels the first subword of each word and ignores the rest', () => {
    const { encodeWord, calls } = pieceEncoder();
    const aligned = alignTags(row, encodeWord, label2id, {
      labelSubwords: "first",
    });
    expect(aligned.inputIds).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18]);
    expect(aligned.labels).toEqual([1, X, 2, X, X, X, 0, X, X]);
    expect(aligned.wordIds).toEqual([0, 0, 1, 1, 1, 1, 2, 2, 2]);
    expect(calls).toEqual([
      ["Ada", 0],
      ["Lovelace", 1],
      ["wrote", 2],
    ]);
  });

  it('"all" labels every subword, turning a B-X word\'s continuation pieces into I-X', () => {
    const aligned = alignTags(row, pieceEncoder().encodeWord, label2id, {
      labelSubwords: "all",
    });
    expect(aligned.labels).toEqual([1, 2, 2, 2, 2, 2, 0, 0, 0]);
  });

  it('"all" keeps B-X on continuation pieces when label2id has no I-X (HF\'s b_to_i_label)', () => {
    const onlyB = new Map([
      ["O", 0],
      ["B-PER", 1],
      ["I-PER", 2],
      ["B-LOC", 3],
    ]);
    const paris: TaggedRow = { tokens: ["Paris"], tags: ["B-LOC"], line: 1 };
    expect(
      alignTags(paris, pieceEncoder().encodeWord, onlyB, {
        labelSubwords: "all",
      }).labels,
    ).toEqual([3, 3, 3]);
  });

  it("puts prefix tokens first, labelled -100 with no word", () => {
    const aligned = alignTags(row, pieceEncoder().encodeWord, label2id, {
      labelSubwords: "first",
      prefix: [1, 2],
    });
    expect(aligned.inputIds.slice(0, 3)).toEqual([1, 2, 10]);
    expect(aligned.labels.slice(0, 3)).toEqual([X, X, 1]);
    expect(aligned.wordIds.slice(0, 3)).toEqual([null, null, 0]);
    expect(aligned.inputIds).toHaveLength(11);
  });

  it("refuses a word that encodes to no tokens, naming it, and a tag with no label id", () => {
    const withEmpty: TaggedRow = {
      tokens: ["Ada", ""],
      tags: ["B-PER", "O"],
      line: 8,
    };
    expect(() =>
      alignTags(withEmpty, pieceEncoder().encodeWord, label2id, {
        labelSubwords: "first",
      }),
    ).toThrow(/line 8: word 2 \(""\) encodes to no tokens/);
    const unknown: TaggedRow = {
      tokens: ["Monday"],
      tags: ["B-DATE"],
      line: 3,
    };
    expect(() =>
      alignTags(unknown, pieceEncoder().encodeWord, label2id, {
        labelSubwords: "first",
      }),
    ).toThrow(FormatError);
  });
});

describe("wordPredictions", () => {
  it("takes each word's prediction from its first subword", () => {
    // wordIds of [BOS] Ad|a Lo|ve|la|ce wr|ot|e
    const wordIds = [null, 0, 0, 1, 1, 1, 1, 2, 2, 2];
    const predictions = [9, 1, 0, 2, 1, 1, 1, 0, 2, 2];
    expect(wordPredictions(wordIds, predictions, 3)).toEqual([1, 2, 0]);
  });

  it("recovers the word labels from an alignment's token labels, with either labelling", () => {
    const row: TaggedRow = {
      tokens: ["Ada", "Lovelace", "wrote"],
      tags: ["B-PER", "I-PER", "O"],
      line: 1,
    };
    const label2id = new Map([
      ["O", 0],
      ["B-PER", 1],
      ["I-PER", 2],
    ]);
    for (const labelSubwords of ["first", "all"] as const) {
      const aligned = alignTags(row, pieceEncoder().encodeWord, label2id, {
        labelSubwords,
        prefix: [1],
      });
      expect(wordPredictions(aligned.wordIds, aligned.labels, 3)).toEqual([
        1, 2, 0,
      ]);
    }
  });

  it("refuses different lengths and a word with no token", () => {
    expect(() => wordPredictions([0, 1], [3], 2)).toThrow(ShapeError);
    // Word 2 was cut off the end of the sequence.
    expect(() => wordPredictions([null, 0, 1], [0, 1, 2], 3)).toThrow(
      /word index 2 \(of 3 words\) has no token/,
    );
    expect(() => wordPredictions([0, 5], [0, 1], 2)).toThrow(
      /token 1 has word index 5/,
    );
  });
});

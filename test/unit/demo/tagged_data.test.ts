/**
 * The demo's own reading of token-classification files (shown before a job reads them): the same sentences, labels
 * and split sizes as core's reader gives the job, for the ner preset's files and for CoNLL text, and entities
 * marked in a preview.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  parseConll,
  parseTaggedJsonl,
  splitDataset,
  tagVocabulary,
} from "@webtune/core";
import {
  markEntities,
  readTagged,
  splitSizes,
  tagLabels,
  taggedSummary,
} from "../../../demo/src/tagged_data.js";

const NER = fileURLToPath(
  new URL("../../../demo/public/data/ner/", import.meta.url),
);
const file = (name: string) => ({
  source: `data/ner/${name}`,
  text: readFileSync(`${NER}${name}`, "utf8"),
});

describe("the demo's tagged data", () => {
  it("reads the ner preset's files as the job does: sentences, labels and the validation split", () => {
    const train = file("train.jsonl");
    const test = file("test.jsonl");
    const rows = parseTaggedJsonl(train.text, train.source);
    expect(readTagged(train)).toEqual(rows);
    expect(tagLabels(readTagged(train))).toEqual(tagVocabulary(rows));
    const summary = taggedSummary(train, test, { val: 0.1, test: 0.1 });
    const split = splitDataset(
      rows.map(() => ({})),
      { val: 0.1, seed: 0 },
    );
    expect(summary).toMatchObject({
      format: "tagged",
      labels: ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"],
      sizes: {
        train: split.train.length,
        val: split.val.length,
        test: parseTaggedJsonl(test.text, test.source).length,
      },
      overlap: { rows: 0 },
    });
    expect(summary.preview.train).toHaveLength(5);
  });

  it("holds out as many rows as the job's split does", () => {
    for (const n of [1, 2, 3, 7, 10, 1500])
      for (const [val, test] of [
        [0.1, 0],
        [0.1, 0.1],
        [0.5, 0.45],
        [0, 0.2],
      ] as const) {
        const rows = Array.from({ length: n }, () => ({}));
        const split = splitDataset(rows, { val, test, seed: 0 });
        expect(splitSizes(n, val, test), `${n} rows, ${val}, ${test}`).toEqual({
          train: split.train.length,
          val: split.val.length,
          test: split.test.length,
        });
      }
  });

  it("reads CoNLL columns, and refuses a JSONL row without one tag per word", () => {
    const conll =
      "-DOCSTART- -X- O\n\nAda NNP B-PER\nsaid VBD O\n\nin IN O\nParis NNP B-LOC\n";
    expect(readTagged({ source: "train.conll", text: conll })).toEqual(
      parseConll(conll, "train.conll"),
    );
    expect(() =>
      readTagged({
        source: "bad.jsonl",
        text: '{"tokens": ["Ada"], "tags": ["B-PER"]}\n{"tokens": ["Ada", "said"], "tags": ["B-PER"]}\n',
      }),
    ).toThrow(/^bad\.jsonl, line 2: no words with one tag/);
  });

  it("marks each entity in a preview, its words in brackets and its type after", () => {
    expect(
      markEntities(
        [
          "So",
          "Absalom",
          "fled",
          "to",
          "the",
          "land",
          "of",
          "Ur",
          "Kasdim",
          ".",
        ],
        ["O", "B-PER", "O", "O", "O", "O", "O", "B-LOC", "I-LOC", "O"],
      ),
    ).toBe("So [Absalom]PER fled to the land of [Ur Kasdim]LOC .");
    // Two entities side by side, and one that ends the sentence.
    expect(
      markEntities(["Esau", "Edom", "Seir"], ["B-PER", "B-LOC", "I-LOC"]),
    ).toBe("[Esau]PER [Edom Seir]LOC");
  });
});

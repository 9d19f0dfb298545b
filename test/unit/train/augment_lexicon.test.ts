/** The synonym lexicon: its file format and errors, and the WordNet lexicon webtune ships. */
import { readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import { parseLexicon } from "../../../packages/core/src/train/data/index.js";

const SHIPPED = "demo/public/data/lexicon/synonyms.tsv";

function formatError(text: string): FormatError {
  try {
    parseLexicon(text, "syn.tsv");
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return e as FormatError;
  }
  throw new Error("parseLexicon did not throw");
}

describe("parseLexicon", () => {
  it("reads word<TAB>synonyms lines, skipping comments and blank lines, with lookups in any case", () => {
    const text = "# a comment\nbig\tlarge\n\r\nCar\tauto Automobile\r\n";
    const lexicon = parseLexicon(text, "syn.tsv");
    expect(lexicon.size).toBe(2);
    expect(lexicon.synonyms("big")).toEqual(["large"]);
    expect(lexicon.synonyms("BIG")).toEqual(["large"]);
    expect(lexicon.synonyms("car")).toEqual(["auto", "automobile"]);
    expect(lexicon.synonyms("large")).toEqual([]);
    expect(lexicon.synonyms("# a comment")).toEqual([]);
  });

  it("names the file and line of a line without a tab, with two tabs, or with an empty synonym", () => {
    expect(formatError("big\tlarge\ncar auto\n").message).toMatch(
      /^syn\.tsv, line 2 has 0 tabs/,
    );
    expect(formatError("# c\nbig\tlarge\tgreat\n").message).toMatch(
      /^syn\.tsv, line 2 has 2 tabs/,
    );
    expect(formatError("big\t\n").message).toMatch(
      /^syn\.tsv, line 1 has an empty synonym/,
    );
    expect(formatError("\n\nbig\tlarge  huge\n").message).toMatch(
      /^syn\.tsv, line 3 has an empty synonym/,
    );
    expect(formatError("\tlarge\n").message).toMatch(
      /^syn\.tsv, line 1 has the word ""/,
    );
  });

  it("refuses a word listed twice (naming both lines) or as its own synonym", () => {
    expect(formatError("big\tlarge\ncar\tauto\nBig\thuge\n").message).toMatch(
      /^syn\.tsv, line 3: "big" is listed again \(first on line 1\)/,
    );
    expect(formatError("big\tlarge big\n").message).toMatch(
      /^syn\.tsv, line 1 lists "big" as its own synonym/,
    );
  });

  it("refuses a lexicon that lists no word", () => {
    expect(formatError("").message).toMatch(/^syn\.tsv lists no word/);
    expect(formatError("# only a comment\n\n").message).toMatch(
      /^syn\.tsv lists no word/,
    );
  });
});

describe("the shipped WordNet lexicon", () => {
  const text = readFileSync(SHIPPED, "utf8");
  const lexicon = parseLexicon(text, SHIPPED);
  const lines = text.trimEnd().split("\n");

  it("says where it comes from, is sorted, and stays small", () => {
    expect(lines[0]).toMatch(
      /^# webtune synonyms from WordNet 3\.0 \(Debian wordnet-base [^)]+\), scripts\/lexicon\/wordnet\.py$/,
    );
    const words = lines.slice(1).map((line) => line.split("\t")[0]!);
    expect(words).toEqual([...words].sort());
    expect(lexicon.size).toBe(words.length);
    expect(lexicon.size).toBeGreaterThan(30_000);
    expect(statSync(SHIPPED).size).toBeLessThan(3_000_000);
  });

  it("holds single lowercase words of two letters or more only", () => {
    const word = /^[a-z]+(?:['-][a-z]+)*$/;
    const bad = lines.slice(1).filter((line) => {
      const [head, synonyms] = line.split("\t");
      return [head!, ...synonyms!.split(" ")].some(
        (w) => w.length < 2 || !word.test(w),
      );
    });
    expect(bad).toEqual([]);
  });

  it("gives the first WordNet sense's synonyms", () => {
    // WordNet 3.0: big's first adjective sense is {large, big}; car's first noun sense {car, auto, automobile,
    // machine, motorcar}; job's {job, occupation, business, line of work, line}.
    expect(lexicon.synonyms("big")).toEqual(["large"]);
    expect(lexicon.synonyms("car")).toEqual(
      expect.arrayContaining(["auto", "automobile", "motorcar"]),
    );
    expect(lexicon.synonyms("job")).toEqual(
      expect.arrayContaining(["occupation", "business"]),
    );
    expect(lexicon.synonyms("happiness")).toContain("felicity");
  });

  it("leaves out the other senses and parts of speech", () => {
    // happy's first sense is {happy} alone; felicitous and glad come from its later senses.
    expect(lexicon.synonyms("happy")).toEqual([]);
    // big's later senses ({bighearted, boastful, ...}) are not taken.
    expect(lexicon.synonyms("big")).not.toContain("bighearted");
    // glad is mostly an adjective: its rare noun sense {gladiolus, gladiola, glad, sword lily} is not taken.
    expect(lexicon.synonyms("glad")).not.toContain("gladiolus");
    // Proper nouns are written with a capital in WordNet ({Abraham, Ibrahim}, {Arhus, Aarhus}): not taken.
    expect(lexicon.synonyms("abraham")).toEqual([]);
    expect(lexicon.synonyms("aarhus")).toEqual([]);
  });
});

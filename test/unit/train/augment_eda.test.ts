/** EDA augmentation: seeding per row, each operation's invariants, case and punctuation, count and errors. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import {
  augmentText,
  edaVariants,
  parseLexicon,
  type EdaOp,
  type EdaOptions,
} from "../../../packages/core/src/train/data/index.js";
import { mulberry32 } from "../../../packages/core/src/train/data/random.js";

const lexicon = parseLexicon(
  [
    "big\tlarge",
    "dog\thound canine",
    "happy\tglad felicitous",
    "car\tauto automobile",
    "quickly\tfast rapidly",
    "old\tolder aged",
    "will\tvolition", // a stop word: EDA never replaces it nor inserts its synonyms
  ].join("\n"),
  "test.tsv",
);

const TEXT =
  "The big dog will quickly chase an old car, and the happy dog will bark at the big car.";

/** Words as the test sees them, independently of the code: whitespace-split, outer punctuation stripped. */
const words = (text: string): string[] =>
  text
    .split(/\s+/)
    .map((w) => w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ""))
    .filter((w) => w !== "");

const sorted = (items: readonly string[]) => [...items].sort();

/** Whether `small` is `large` with some items left out, in order. */
function isSubsequence(small: readonly string[], large: readonly string[]) {
  let j = 0;
  for (const item of large) if (item === small[j]) j++;
  return j === small.length;
}

const variants = (ops: EdaOp[], extra: Partial<EdaOptions> = {}) =>
  edaVariants(TEXT, { count: 6, ops, lexicon, seed: 7, rowIndex: 0, ...extra });

describe("edaVariants: seeding", () => {
  it("gives the same variants for the same seed and row, whatever ran before", () => {
    const first = edaVariants(TEXT, {
      count: 8,
      lexicon,
      seed: 3,
      rowIndex: 5,
    });
    edaVariants("Another row entirely.", {
      count: 8,
      lexicon,
      seed: 3,
      rowIndex: 4,
    });
    expect(
      edaVariants(TEXT, { count: 8, lexicon, seed: 3, rowIndex: 5 }),
    ).toEqual(first);
  });

  it("gives other variants for another row index or another seed", () => {
    const base = edaVariants(TEXT, { count: 8, lexicon, seed: 3, rowIndex: 5 });
    const rows = [6, 7, 8].map((rowIndex) =>
      edaVariants(TEXT, { count: 8, lexicon, seed: 3, rowIndex }),
    );
    const seeds = [4, 5, 6].map((seed) =>
      edaVariants(TEXT, { count: 8, lexicon, seed, rowIndex: 5 }),
    );
    for (const other of [...rows, ...seeds]) expect(other).not.toEqual(base);
  });
});

describe("edaVariants: count and distinctness", () => {
  it("makes count distinct variants, none the original, cycling through the ops", () => {
    const out = edaVariants(TEXT, { count: 8, lexicon, seed: 0, rowIndex: 0 });
    expect(out).toHaveLength(8);
    expect(new Set(out).size).toBe(8);
    expect(out).not.toContain(TEXT);
    const n = words(TEXT).length;
    // synonym keeps the length, insert adds, swap keeps the multiset, delete removes.
    expect(words(out[0]!)).toHaveLength(n);
    expect(words(out[1]!).length).toBeGreaterThan(n);
    expect(sorted(words(out[2]!))).toEqual(sorted(words(TEXT)));
    expect(words(out[3]!).length).toBeLessThan(n);
  });

  it("makes fewer variants when the text has fewer distinct ones", () => {
    const swaps = (text: string) =>
      edaVariants(text, { count: 5, ops: ["swap"], seed: 0, rowIndex: 0 });
    expect(swaps("Hello world.")).toEqual(["world Hello."]);
    expect(swaps("Hello.")).toEqual([]);
    expect(swaps("   ")).toEqual([]);
    expect(variants(["swap"], { count: 0 })).toEqual([]);
  });

  it("compares with the original after whitespace is normalised", () => {
    const out = edaVariants("Hello \n  world.", {
      count: 5,
      ops: ["swap"],
      seed: 0,
      rowIndex: 0,
    });
    expect(out).toEqual(["world Hello."]);
  });
});

describe("EDA operations", () => {
  it("swap keeps the multiset of words and the punctuation in place", () => {
    for (let seed = 0; seed < 20; seed++) {
      for (const v of variants(["swap"], { seed, alpha: 0.2 })) {
        expect(sorted(words(v))).toEqual(sorted(words(TEXT)));
        expect(v.replace(/[\p{L}]+/gu, "w")).toBe(
          TEXT.replace(/[\p{L}]+/gu, "w"),
        );
      }
    }
  });

  it("delete only removes words, keeps at least one, and moves end punctuation", () => {
    for (let seed = 0; seed < 20; seed++) {
      for (const v of variants(["delete"], { seed, alpha: 0.3 })) {
        expect(isSubsequence(words(v), words(TEXT))).toBe(true);
        expect(words(v).length).toBeLessThan(words(TEXT).length);
        expect(words(v).length).toBeGreaterThan(0);
        expect(v.endsWith(".")).toBe(true);
      }
    }
    const all = augmentText("one two three.", {
      ops: ["delete"],
      alpha: 1,
      random: mulberry32(1),
    });
    expect(words(all)).toHaveLength(1);
    expect(["one.", "two.", "three."]).toContain(all);
  });

  it("delete joins a deleted word's punctuation to its neighbours", () => {
    const tries = Array.from({ length: 40 }, (_, seed) =>
      augmentText("Hello, big world.", {
        ops: ["delete"],
        alpha: 0.4,
        random: mulberry32(seed),
      }),
    );
    expect(new Set(tries)).toEqual(
      new Set([
        "Hello, big world.",
        "Hello, world.",
        "Hello, big.",
        "Hello.",
        "big world.",
        "world.",
        "big.",
      ]),
    );
  });

  it("synonym replaces n words, not stop words, each by a lexicon synonym of it", () => {
    const original = TEXT.split(" ");
    for (let seed = 0; seed < 20; seed++) {
      for (const v of variants(["synonym"], { seed, alpha: 0.2 })) {
        const changed = v.split(" ").flatMap((token, i) => {
          const [before, after] = [words(original[i]!)[0]!, words(token)[0]!];
          return before === after ? [] : [[before, after] as const];
        });
        expect(v.split(" ")).toHaveLength(original.length);
        // n = round(0.2 · 19 words) = 4 of the 9 words that have synonyms and are not stop words.
        expect(changed).toHaveLength(4);
        for (const [before, after] of changed) {
          expect(before).not.toBe("will");
          expect(lexicon.synonyms(before)).toContain(after.toLowerCase());
        }
      }
    }
  });

  it("synonym changes exactly n = max(1, round(alpha · words)) words", () => {
    // Ten words xa..xj (none an EDA stop word), each with one synonym ya..yj.
    const letters = "abcdefghij".split("");
    const tenWords = parseLexicon(
      letters.map((c) => `x${c}\ty${c}`).join("\n"),
      "ten.tsv",
    );
    const text = letters.map((c) => `x${c}`).join(" ");
    const changedAt = (alpha: number) =>
      words(
        augmentText(text, {
          ops: ["synonym"],
          alpha,
          lexicon: tenWords,
          random: mulberry32(2),
        }),
      ).filter((w) => w.startsWith("y")).length;
    expect([0.01, 0.1, 0.25, 0.34, 0.5, 1].map(changedAt)).toEqual([
      1, 1, 3, 3, 5, 10,
    ]);
  });

  it("insert adds n synonyms of words of the text, keeping its words in order and its end last", () => {
    const synonymsOfText = new Set(
      words(TEXT).flatMap((w) => (w === "will" ? [] : lexicon.synonyms(w))),
    );
    for (let seed = 0; seed < 20; seed++) {
      for (const v of variants(["insert"], { seed, alpha: 0.2 })) {
        const out = words(v);
        expect(isSubsequence(words(TEXT), out)).toBe(true);
        expect(out).toHaveLength(words(TEXT).length + 4);
        // No synonym in the lexicon is a word of TEXT, so the added words are those not in TEXT.
        const added = out.filter((w) => !words(TEXT).includes(w));
        expect(added).toHaveLength(4);
        for (const w of added) expect(synonymsOfText).toContain(w);
        expect(v.endsWith(" car.")).toBe(true);
      }
    }
  });

  it("synonym and insert leave a text without lexicon words as it is", () => {
    const plain = edaVariants("You will see.", {
      count: 3,
      ops: ["synonym", "insert"],
      lexicon,
      seed: 0,
      rowIndex: 0,
    });
    expect(plain).toEqual([]);
  });
});

describe("EDA text handling", () => {
  const replace = (text: string) =>
    augmentText(text, {
      ops: ["synonym"],
      alpha: 1,
      lexicon,
      random: mulberry32(0),
    });

  it("writes a synonym in the case of the word it replaces", () => {
    expect(replace("big")).toBe("large");
    expect(replace("Big")).toBe("Large");
    expect(replace("BIG")).toBe("LARGE");
    expect(replace("bIg")).toBe("large");
  });

  it("keeps punctuation attached to the word it belonged to", () => {
    expect(replace('("Big"),')).toBe('("Large"),');
    expect(replace("big-ish big's big.")).toBe("big-ish big's large.");
  });

  it("normalises whitespace to single spaces", () => {
    const out = augmentText("  a\tbig \n\n dog  ", {
      ops: ["swap"],
      alpha: 0.1,
      random: mulberry32(0),
    });
    expect(out).toMatch(/^\S+ \S+ \S+$/);
    expect(sorted(out.split(" "))).toEqual(["a", "big", "dog"]);
  });
});

describe("EDA options", () => {
  it("refuses synonym and insert without a lexicon, saying what to do", () => {
    const noLexicon = (ops?: EdaOp[]) => () =>
      edaVariants(TEXT, {
        count: 2,
        seed: 0,
        rowIndex: 0,
        ...(ops ? { ops } : {}),
      });
    expect(noLexicon()).toThrow(ConfigError);
    expect(noLexicon()).toThrow(
      /synonym and insert need a synonym lexicon.*swap and delete/,
    );
    expect(noLexicon(["swap", "insert"])).toThrow(
      /op insert needs a synonym lexicon/,
    );
    expect(() =>
      augmentText(TEXT, { ops: ["synonym"], random: mulberry32(0) }),
    ).toThrow(ConfigError);
    expect(noLexicon(["swap", "delete"])()).toHaveLength(2);
  });

  it("refuses unknown ops, no ops, alpha out of (0, 1], and bad counts, seeds or rows", () => {
    const bad: Partial<EdaOptions>[] = [
      { ops: ["shuffle" as EdaOp] },
      { ops: [] },
      { alpha: 0 },
      { alpha: 1.5 },
      { alpha: Number.NaN },
      { count: -1 },
      { count: 1.5 },
      { seed: 0.5 },
      { rowIndex: -1 },
    ];
    for (const options of bad)
      expect(() => variants(["swap"], options)).toThrow(ConfigError);
  });
});

describe("EDA with the shipped WordNet lexicon", () => {
  it("gives these variants of the example sentence with seed 0", () => {
    const path = "demo/public/data/lexicon/synonyms.tsv";
    const wordnet = parseLexicon(readFileSync(path, "utf8"), path);
    const text = "You will find great happiness in a new job.";
    expect(
      edaVariants(text, { count: 3, lexicon: wordnet, seed: 0, rowIndex: 0 }),
    ).toEqual([
      "You will chance great happiness in a new job.",
      "You chance will find great happiness in a new job.",
      "will You find great happiness in a new job.",
    ]);
  });
});

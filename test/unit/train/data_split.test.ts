/** Seeded train/val/test splits: determinism, proportions, stratification by label, and option checks. */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import {
  splitDataset,
  type Example,
} from "../../../packages/core/src/train/data/index.js";
import { splitCounts } from "../../../packages/core/src/train/data/split.js";

const make = (n: number, label?: (i: number) => string): Example[] =>
  Array.from({ length: n }, (_, i) => ({
    inputIds: [i],
    labels: [i],
    line: i + 1,
    ...(label ? { label: label(i) } : {}),
  }));

const lines = (examples: Example[]) => examples.map((e) => e.line);

describe("splitDataset", () => {
  it("is deterministic for a seed, and differs across seeds", () => {
    const examples = make(100);
    const a = splitDataset(examples, { val: 0.1, test: 0.2, seed: 7 });
    const b = splitDataset(examples, { val: 0.1, test: 0.2, seed: 7 });
    const c = splitDataset(examples, { val: 0.1, test: 0.2, seed: 8 });
    expect(lines(a.val)).toEqual(lines(b.val));
    expect(lines(a.test)).toEqual(lines(b.test));
    expect(lines(c.val)).not.toEqual(lines(a.val));
  });

  it("gives the rounded proportions, each example once, in the original order", () => {
    const { train, val, test } = splitDataset(make(101), {
      val: 0.1,
      test: 0.25,
      seed: 1,
    });
    expect([train.length, val.length, test.length]).toEqual([66, 10, 25]);
    const all = [...lines(train), ...lines(val), ...lines(test)].sort(
      (x, y) => x - y,
    );
    expect(all).toEqual(lines(make(101)));
    for (const split of [train, val, test]) {
      expect(lines(split)).toEqual([...lines(split)].sort((x, y) => x - y));
    }
  });

  it("mixes the file: validation is not just the first or last rows", () => {
    const { val } = splitDataset(make(1000), { val: 0.1, seed: 3 });
    const mean = val.reduce((s, e) => s + e.line, 0) / val.length;
    expect(mean).toBeGreaterThan(400);
    expect(mean).toBeLessThan(600);
  });

  it("stratifies by label: each label split in the same proportions", () => {
    // 80 "a", 20 "b", 10 "c"
    const examples = make(110, (i) => (i < 80 ? "a" : i < 100 ? "b" : "c"));
    const { train, val, test } = splitDataset(examples, {
      val: 0.1,
      test: 0.1,
      seed: 5,
    });
    const count = (split: Example[], label: string) =>
      split.filter((e) => e.label === label).length;
    expect(["a", "b", "c"].map((l) => count(val, l))).toEqual([8, 2, 1]);
    expect(["a", "b", "c"].map((l) => count(test, l))).toEqual([8, 2, 1]);
    expect(["a", "b", "c"].map((l) => count(train, l))).toEqual([64, 16, 8]);
  });

  it("gives a rare label at least one example in each split when it has enough", () => {
    const examples = make(53, (i) => (i < 50 ? "common" : "rare"));
    const { train, val, test } = splitDataset(examples, {
      val: 0.05,
      test: 0.05,
      seed: 0,
    });
    for (const split of [train, val, test]) {
      expect(split.filter((e) => e.label === "rare")).toHaveLength(1);
    }
  });

  it("can turn stratification off, and does not stratify unlabelled examples", () => {
    const examples = make(110, (i) => (i < 80 ? "a" : i < 100 ? "b" : "c"));
    const off = splitDataset(examples, { val: 0.1, seed: 5, stratify: false });
    expect(off.val).toHaveLength(11);
    expect(splitDataset(make(10), { val: 0.3, seed: 1 }).val).toHaveLength(3);
  });

  it("keeps at least one example for training", () => {
    expect(splitCounts(1, 0.5, 0.4)).toEqual({ nVal: 0, nTest: 0 });
    expect(splitCounts(2, 0.1, 0.1)).toEqual({ nVal: 1, nTest: 0 });
    expect(splitCounts(3, 0.1, 0.1)).toEqual({ nVal: 1, nTest: 1 });
    expect(splitCounts(4, 0.45, 0.45)).toEqual({ nVal: 2, nTest: 1 });
    expect(splitCounts(10, 0, 0)).toEqual({ nVal: 0, nTest: 0 });
  });

  it("rejects unusable fractions and seeds", () => {
    expect(() =>
      splitDataset(make(4), { val: 0.6, test: 0.4, seed: 0 }),
    ).toThrow(ConfigError);
    expect(() => splitDataset(make(4), { val: -0.1, seed: 0 })).toThrow(
      /val \+ test < 1/,
    );
    expect(() => splitDataset(make(4), { val: 0.1, seed: 1.5 })).toThrow(
      /seed is 1.5; expected an integer/,
    );
  });
});

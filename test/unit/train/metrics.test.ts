/** Classification, text and perplexity metrics against values worked out by hand from sklearn's definitions. */
import { describe, expect, it } from "vitest";
import { ConfigError, ShapeError } from "@webtune/core";
import {
  accuracy,
  classificationMetrics,
  confusionMatrix,
  exactMatch,
  perplexity,
  perplexityFromTotals,
} from "../../../packages/core/src/train/metrics.js";

// 3 classes, 10 items.
const yTrue = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
const yPred = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1];
// Rows true, columns predicted:
//   true 0: predicted 0,0,1,2 -> [2, 1, 1]
//   true 1: predicted 1,1,0   -> [1, 2, 0]
//   true 2: predicted 2,2,1   -> [0, 1, 2]
// Column sums (times predicted): [3, 4, 3]; row sums (support): [4, 3, 3]; diagonal (tp): [2, 2, 2].
// precision = tp / predicted = [2/3, 2/4, 2/3];  recall = tp / support = [2/4, 2/3, 2/3]
// f1 = 2tp / (2tp + fp + fn): class 0: 4/(4+1+2) = 4/7; class 1: 4/(4+2+1) = 4/7; class 2: 4/(4+1+1) = 2/3
// macro P = (2/3 + 1/2 + 2/3)/3 = 11/18; macro R = 11/18; macro F1 = (4/7 + 4/7 + 2/3)/3 = 38/63
// accuracy = 6/10.

describe("classification metrics", () => {
  it("match hand-computed sklearn values on a 3-class, 10-item example", () => {
    const m = classificationMetrics(yTrue, yPred);
    expect(m.labels).toEqual([0, 1, 2]);
    expect(m.support).toEqual([4, 3, 3]);
    const close = (a: number[], b: number[]) =>
      a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 12));
    close(m.precision, [2 / 3, 1 / 2, 2 / 3]);
    close(m.recall, [1 / 2, 2 / 3, 2 / 3]);
    close(m.f1, [4 / 7, 4 / 7, 2 / 3]);
    expect(m.macroPrecision).toBeCloseTo(11 / 18, 12);
    expect(m.macroRecall).toBeCloseTo(11 / 18, 12);
    expect(m.macroF1).toBeCloseTo(38 / 63, 12);
    expect(m.accuracy).toBeCloseTo(0.6, 12);
    expect(accuracy(yTrue, yPred)).toBeCloseTo(0.6, 12);
  });

  it("macro F1 is the mean of per-class F1, not the harmonic mean of macro P and R", () => {
    // y_true [0,1,1,1], y_pred [0,0,0,1]: P = [1/3, 1], R = [1, 1/3], F1 = [1/2, 1/2].
    // Macro P = macro R = 2/3, whose harmonic mean is 2/3; the mean of F1s is 1/2.
    const m = classificationMetrics([0, 1, 1, 1], [0, 0, 0, 1]);
    expect(m.macroF1).toBeCloseTo(0.5, 12);
  });

  it("a class never predicted has precision 0 (zero_division=0)", () => {
    // y_true [0,1,2], y_pred [0,0,0]: class 0 tp 1, fp 2, fn 0 -> P 1/3, R 1, F1 2/(2+2) = 1/2.
    // Classes 1 and 2: never predicted -> P 0; tp 0, fn 1 -> R 0, F1 0.
    const m = classificationMetrics([0, 1, 2], [0, 0, 0]);
    expect(m.precision).toEqual([1 / 3, 0, 0]);
    expect(m.recall).toEqual([1, 0, 0]);
    expect(m.f1).toEqual([0.5, 0, 0]);
    expect(m.macroPrecision).toBeCloseTo(1 / 9, 12);
  });

  it("a listed label absent from both arrays scores 0 and still counts in the macro mean", () => {
    // Labels [0, 1, 9]: 0 and 1 are perfect (P = R = F1 = 1), 9 is 0/0 -> 0. Macro F1 = 2/3.
    const m = classificationMetrics([0, 1], [0, 1], { labels: [0, 1, 9] });
    expect(m.f1).toEqual([1, 1, 0]);
    expect(m.macroF1).toBeCloseTo(2 / 3, 12);
  });

  it("sorts string labels and uses a given label order", () => {
    const t = ["pos", "neg", "neg", "neu"];
    const p = ["pos", "pos", "neg", "neu"];
    expect(classificationMetrics(t, p).labels).toEqual(["neg", "neu", "pos"]);
    expect(confusionMatrix(t, p, ["pos", "neu", "neg"])).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [1, 0, 1],
    ]);
  });

  it("builds the confusion matrix with rows = true labels, columns = predicted", () => {
    expect(confusionMatrix(yTrue, yPred)).toEqual([
      [2, 1, 1],
      [1, 2, 0],
      [0, 1, 2],
    ]);
    // Items whose label is not listed are left out, as in sklearn.
    expect(confusionMatrix(yTrue, yPred, [2, 0])).toEqual([
      [2, 0],
      [1, 2],
    ]);
  });

  it("rejects mismatched lengths, empty input, mixed label kinds and duplicate labels", () => {
    expect(() => accuracy([0, 1], [0])).toThrow(ShapeError);
    expect(() => accuracy([0, 1], [0])).toThrow(/2 items .* 1/);
    expect(() => classificationMetrics([], [])).toThrow(ShapeError);
    expect(() => classificationMetrics([0, "a"], [0, 0])).toThrow(ConfigError);
    expect(() => classificationMetrics([0], [0], { labels: [0, 0] })).toThrow(
      ConfigError,
    );
  });
});

describe("text metrics", () => {
  it("exact match trims trailing whitespace only", () => {
    // "Paris\n" = "Paris"; "Rome  \t" = "Rome"; " Oslo" != "Oslo" (leading space counts); "bern" != "Bern".
    expect(
      exactMatch(
        ["Paris\n", "Rome  \t", " Oslo", "bern"],
        ["Paris", "Rome", "Oslo", "Bern"],
      ),
    ).toBe(0.5);
    expect(exactMatch(["a"], ["a \n"])).toBe(1);
  });

  it("perplexity is exp of the mean token NLL", () => {
    // NLLs ln 2 and ln 8: mean (ln 16)/2 = ln 4 -> perplexity 4.
    expect(perplexity([Math.log(2), Math.log(8)])).toBeCloseTo(4, 12);
    expect(perplexity(new Float32Array([0, 0, 0]))).toBe(1);
    expect(perplexityFromTotals(3 * Math.log(5), 3)).toBeCloseTo(5, 12);
    expect(() => perplexity([])).toThrow(ShapeError);
    expect(() => perplexityFromTotals(1, 0)).toThrow(ShapeError);
  });
});

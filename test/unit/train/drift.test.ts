/**
 * Drift statistics against oracles: the bootstrap interval's coverage of a known change on synthetic data (and its
 * width against the normal approximation), its determinism by seed; the KS statistic by hand and its p-value against
 * the Kolmogorov series summed here and known critical values; chi-square p-values against closed forms; label
 * sets that differ; the flags; and reading a run's baseline from metrics.jsonl.
 */
import { describe, expect, it } from "vitest";
import {
  bootstrapDelta,
  chiSquareHomogeneity,
  chiSquareSurvival,
  ConfigError,
  driftReport,
  FormatError,
  gammaQ,
  kolmogorovSurvival,
  ksTwoSample,
  labelShift,
  readBaselineMetrics,
  type RowScore,
} from "@webtune/core";
import { mulberry32 } from "../../../packages/core/src/train/data/random.js";

/** Bernoulli(p) outcomes from the test's own generator. */
function bernoulli(n: number, p: number, random: () => number) {
  return Array.from({ length: n }, () => ({
    num: random() < p ? 1 : 0,
    den: 1,
  }));
}

/** The Kolmogorov survival by its alternating series alone, summed far: the oracle for both branches. */
function kolmogorovSeries(lambda: number): number {
  let sum = 0;
  for (let k = 1; k <= 2000; k++)
    sum += (k % 2 ? 1 : -1) * Math.exp(-2 * k * k * lambda * lambda);
  return 2 * sum;
}

describe("bootstrapDelta", () => {
  it("covers the true change about 95 % of the time, with about the normal approximation's width", () => {
    const random = mulberry32(12345);
    const [p0, p1, n] = [0.8, 0.65, 300];
    let covered = 0;
    const trials = 60;
    for (let t = 0; t < trials; t++) {
      const d = bootstrapDelta(
        bernoulli(n, p0, random),
        bernoulli(n, p1, random),
        { resamples: 400, seed: t },
      );
      if (d.low <= p1 - p0 && p1 - p0 <= d.high) covered++;
      const se = Math.sqrt(
        (d.baseline * (1 - d.baseline)) / n + (d.current * (1 - d.current)) / n,
      );
      expect((d.high - d.low) / (2 * 1.96 * se)).toBeGreaterThan(0.8);
      expect((d.high - d.low) / (2 * 1.96 * se)).toBeLessThan(1.2);
    }
    // Binomial(60, 0.95): 51 or more with probability above 0.99.
    expect(covered).toBeGreaterThanOrEqual(51);
  });

  it("is the same for the same seed and differs for another", () => {
    const random = mulberry32(7);
    const a = bernoulli(100, 0.7, random);
    const b = bernoulli(100, 0.6, random);
    const one = bootstrapDelta(a, b, { seed: 3 });
    expect(bootstrapDelta(a, b, { seed: 3 })).toEqual(one);
    const other = bootstrapDelta(a, b, { seed: 4 });
    expect([other.low, other.high]).not.toEqual([one.low, one.high]);
    expect(other.delta).toBe(one.delta);
    expect(one.resamples).toBe(2000);
    expect(one.confidence).toBe(0.95);
  });

  it("puts a zero shift's interval around 0", () => {
    const rows = bernoulli(200, 0.5, mulberry32(1));
    const d = bootstrapDelta(rows, rows, { seed: 0 });
    expect(d.delta).toBe(0);
    expect(d.low).toBeLessThan(0);
    expect(d.high).toBeGreaterThan(0);
    // Symmetric up to resampling noise.
    expect(Math.abs(d.low + d.high)).toBeLessThan(0.03);
  });

  it("measures a loss as Σnll / Σtokens and leaves rows without tokens out", () => {
    const d = bootstrapDelta(
      [
        { num: 6, den: 3 },
        { num: 2, den: 1 },
      ],
      [
        { num: 9, den: 3 },
        { num: 0, den: 0 },
      ],
      { resamples: 10 },
    );
    expect(d.baseline).toBe(2);
    expect(d.current).toBe(3);
    expect(d.delta).toBe(1);
  });

  it("refuses empty sides and bad options, naming them", () => {
    const one = [{ num: 1, den: 1 }];
    expect(() => bootstrapDelta([], one)).toThrow(/baseline rows/);
    expect(() => bootstrapDelta(one, [{ num: 1, den: 0 }])).toThrow(
      /current rows/,
    );
    expect(() => bootstrapDelta(one, one, { confidence: 95 })).toThrow(
      ConfigError,
    );
    expect(() => bootstrapDelta(one, one, { resamples: 0 })).toThrow(
      /resamples/,
    );
  });
});

describe("Kolmogorov–Smirnov", () => {
  it("finds D by hand, stepping over ties together", () => {
    // F_a − F_b at 1, 2, 3, 4, 5: 1/4, 2/4, 3/4 − 1/4, 1 − 2/4, 1 − 3/4.
    expect(ksTwoSample([1, 2, 3, 4], [3, 4, 5, 6]).d).toBe(0.5);
    // At 1: F_a = 2/3, F_b = 1/3; at 2 both are 1.
    expect(ksTwoSample([1, 1, 2], [1, 2, 2]).d).toBeCloseTo(1 / 3, 15);
    expect(ksTwoSample([5, 5, 5], [5, 5]).d).toBe(0);
    expect(ksTwoSample([1, 2], [3, 4, 5]).d).toBe(1);
  });

  it("gives the asymptotic p-value of √(nm/(n+m))·D", () => {
    // n = m = 4: λ = √2 · 0.5.
    expect(ksTwoSample([1, 2, 3, 4], [3, 4, 5, 6]).pValue).toBeCloseTo(
      kolmogorovSeries(Math.SQRT1_2),
      12,
    );
  });

  it("matches the Kolmogorov series on both branches and the known critical values", () => {
    for (const lambda of [0.4, 0.5, 0.8, 1, 1.17, 1.19, 1.5, 2.5])
      expect(kolmogorovSurvival(lambda)).toBeCloseTo(
        kolmogorovSeries(lambda),
        12,
      );
    // The 5 % and 1 % critical values of the Kolmogorov distribution, and P(K ≤ 1) = 0.7300003.
    expect(kolmogorovSurvival(1.3581)).toBeCloseTo(0.05, 4);
    expect(kolmogorovSurvival(1.6276)).toBeCloseTo(0.01, 5);
    expect(kolmogorovSurvival(1)).toBeCloseTo(0.2699997, 7);
    expect(kolmogorovSurvival(0)).toBe(1);
    expect(kolmogorovSurvival(0.1)).toBeCloseTo(1, 12);
  });
});

describe("chi-square", () => {
  it("has the textbook p-values and the closed forms of 2 and 4 degrees of freedom", () => {
    expect(chiSquareSurvival(3.841458820694124, 1)).toBeCloseTo(0.05, 12);
    expect(chiSquareSurvival(3.84, 1)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(6.634896601021214, 1)).toBeCloseTo(0.01, 12);
    expect(chiSquareSurvival(1, 1)).toBeCloseTo(0.3173105078629141, 12);
    for (const x of [0.1, 1, 2.5, 6, 15, 40]) {
      // χ²(2): e^{−x/2} (the series branch below x/2 = 2, the continued fraction above); χ²(4): e^{−x/2}(1 + x/2).
      expect(chiSquareSurvival(x, 2)).toBeCloseTo(Math.exp(-x / 2), 14);
      expect(
        chiSquareSurvival(x, 4) / (Math.exp(-x / 2) * (1 + x / 2)),
      ).toBeCloseTo(1, 12);
    }
    // Q(1, x) = e^{−x}; Q(a, 0) = 1.
    expect(gammaQ(1, 3)).toBeCloseTo(Math.exp(-3), 14);
    expect(gammaQ(2.5, 0)).toBe(1);
  });

  it("tests homogeneity of a 2 × 2 table as by hand", () => {
    // Margins: yes 45, no 35 of 80; E = 22.5 and 17.5 on each side; every |O − E| = 7.5.
    const t = chiSquareHomogeneity({ yes: 30, no: 10 }, { yes: 15, no: 25 });
    expect(t.statistic).toBeCloseTo(
      2 * (56.25 / 22.5) + 2 * (56.25 / 17.5),
      12,
    );
    expect(t.dof).toBe(1);
    expect(t.pValue).toBeCloseTo(0.0007232327164301923, 14);
    expect(chiSquareHomogeneity({ a: 3 }, { a: 5 })).toEqual({
      statistic: 0,
      dof: 0,
      pValue: 1,
    });
  });

  it("handles labels present on one side only", () => {
    const s = labelShift(
      [...Array(10).fill("a"), ...Array(10).fill("b")],
      [...Array(10).fill("a"), ...Array(10).fill("c")],
    );
    expect(s.onlyInBaseline).toEqual(["b"]);
    expect(s.onlyInCurrent).toEqual(["c"]);
    expect(s.shares.baseline).toEqual({ a: 0.5, b: 0.5, c: 0 });
    expect(s.shares.current).toEqual({ a: 0.5, b: 0, c: 0.5 });
    expect(s.totalVariation).toBe(0.5);
    // Column a: O = E = 10; columns b and c: O = 10, 0 against E = 5, 5 → 5 + 5 each.
    expect(s.chiSquare.statistic).toBeCloseTo(20, 12);
    expect(s.chiSquare.dof).toBe(2);
    expect(s.chiSquare.pValue).toBeCloseTo(Math.exp(-10), 14);
  });
});

/** Classification rows: `correct` of them right, input lengths from `length`, labels cycling through `labels`. */
function rows(
  n: number,
  o: { right: number; length: (i: number) => number; labels: string[] },
): RowScore[] {
  return Array.from({ length: n }, (_, i) => {
    const label = o.labels[i % o.labels.length]!;
    const correct = i < o.right ? 1 : 0;
    return {
      nll: correct ? 0.5 : 2,
      tokens: 1,
      inputTokens: o.length(i),
      label,
      predicted: correct ? label : "other",
      correct,
    };
  });
}

describe("driftReport", () => {
  const baseline = rows(200, {
    right: 180,
    length: (i) => 10 + (i % 7),
    labels: ["a", "b"],
  });

  it("flags nothing for the same rows", () => {
    const r = driftReport(baseline, baseline, { metric: "accuracy", seed: 0 });
    expect(r.metric.delta).toBe(0);
    expect(r.metric.worse).toBe(false);
    expect(r.inputLength.ks.d).toBe(0);
    expect(r.labels!.chiSquare.pValue).toBe(1);
    expect(r.flags).toEqual([]);
    expect(r.driftFlagged).toBe(false);
    expect(r.inputLength.baseline).toEqual({
      rows: 200,
      mean: r.inputLength.current.mean,
      median: 13,
      p90: 16,
    });
  });

  it("flags a fall in accuracy, longer inputs and a new label mix, in words", () => {
    const current = rows(200, {
      right: 100,
      length: (i) => 20 + (i % 7),
      labels: ["a", "c", "c"],
    });
    const r = driftReport(baseline, current, { metric: "accuracy", seed: 0 });
    expect(r.metric.delta).toBeCloseTo(-0.4, 12);
    expect(r.metric.high).toBeLessThan(0);
    expect(r.flags).toHaveLength(4);
    expect(r.flags[0]).toMatch(
      /^accuracy fell 40\.0 points \(95 % CI −\d+\.\d to −\d+\.\d\)$/,
    );
    expect(r.flags[1]).toMatch(
      /^input length moved: mean 13\.0 → 23\.0 tokens, median 13 → 23 \(KS D = 1\.000, p = /,
    );
    expect(r.flags[2]).toMatch(/^label distribution moved: .*new: c; gone: b$/);
    expect(r.flags[3]).toMatch(/^predicted label distribution moved/);
    expect(r.driftFlagged).toBe(true);
  });

  it("takes a higher loss as worse and a lower one as not", () => {
    const worse = baseline.map((r) => ({ ...r, nll: r.nll + 1 }));
    const better = baseline.map((r) => ({ ...r, nll: r.nll / 2 }));
    const up = driftReport(baseline, worse, { metric: "loss" });
    expect(up.metric.delta).toBeCloseTo(1, 12);
    expect(up.flags).toEqual([
      expect.stringMatching(/^loss rose 1\.000 nats per token \(95 % CI /),
    ]);
    const down = driftReport(baseline, better, { metric: "loss" });
    expect(down.metric.delta).toBeLessThan(0);
    expect(down.metric.worse).toBe(false);
    expect(down.flags).toEqual([]);
    // A better accuracy is no drift either.
    const right = baseline.map((r) => ({ ...r, correct: 1 as const }));
    expect(driftReport(baseline, right, { metric: "accuracy" }).flags).toEqual(
      [],
    );
  });

  it("says which side has no task metric", () => {
    const plain = baseline.map(({ nll, tokens, inputTokens }) => ({
      nll,
      tokens,
      inputTokens,
    }));
    expect(() => driftReport(baseline, plain, { metric: "accuracy" })).toThrow(
      /the current have no accuracy .*Compare them on "loss"/,
    );
    expect(driftReport(baseline, plain, { metric: "loss" }).labels).toBe(
      undefined,
    );
  });
});

describe("readBaselineMetrics", () => {
  const row = { nll: 1, tokens: 2, inputTokens: 3, correct: 1 };
  const line = (o: object) => JSON.stringify(o);
  const text = [
    line({ type: "step", step: 1, loss: 2 }),
    line({
      type: "test",
      phase: "base",
      step: 0,
      loss: 3,
      accuracy: 0.1,
      rowScores: [row],
    }),
    line({
      type: "test",
      phase: "tuned",
      step: 5,
      loss: 1,
      accuracy: 0.5,
      rowScores: [row],
    }),
    line({
      type: "test",
      phase: "tuned",
      step: 9,
      loss: 0.8,
      accuracy: 0.7,
      rowScores: [row, row],
    }),
    "",
  ].join("\n");

  it("reads the last test scores of the tuned adapter", () => {
    const b = readBaselineMetrics(text, "run/metrics.jsonl");
    expect(b).toMatchObject({
      line: 4,
      step: 9,
      metric: "accuracy",
      accuracy: 0.7,
      loss: 0.8,
    });
    expect(b.rowScores).toHaveLength(2);
  });

  it("picks a task of a multitask run, and asks for one when there are several", () => {
    const multi = [
      line({
        type: "test",
        phase: "tuned",
        step: 9,
        task: "dates",
        loss: 1,
        exactMatch: 0.9,
        rowScores: [row],
      }),
      line({
        type: "test",
        phase: "tuned",
        step: 9,
        task: "fortunes",
        loss: 2,
        accuracy: 0.6,
        rowScores: [row],
      }),
    ].join("\n");
    expect(
      readBaselineMetrics(multi, "m.jsonl", { task: "dates" }),
    ).toMatchObject({
      task: "dates",
      metric: "exactMatch",
    });
    expect(() => readBaselineMetrics(multi, "m.jsonl")).toThrow(
      /m\.jsonl holds test scores of several tasks \(dates, fortunes\)/,
    );
    expect(() =>
      readBaselineMetrics(multi, "m.jsonl", { task: "kjv" }),
    ).toThrow(/no test scores of a task "kjv"; its tasks are dates, fortunes/);
  });

  it("names the file and line of bad JSON, and says what to give instead of a run without row scores", () => {
    expect(() =>
      readBaselineMetrics(`${text}{"type":`, "run/metrics.jsonl"),
    ).toThrow(FormatError);
    expect(() =>
      readBaselineMetrics(`${text}{"type":`, "run/metrics.jsonl"),
    ).toThrow(/run\/metrics\.jsonl line 5 is not JSON/);
    expect(() =>
      readBaselineMetrics(line({ type: "step" }), "old.jsonl"),
    ).toThrow(
      /old\.jsonl holds no test scores of the tuned adapter.*--test or --test-split/,
    );
    const old = line({
      type: "test",
      phase: "tuned",
      step: 3,
      loss: 1,
      accuracy: 0.5,
    });
    expect(() => readBaselineMetrics(old, "old.jsonl")).toThrow(ConfigError);
    expect(() => readBaselineMetrics(old, "old.jsonl")).toThrow(
      /old\.jsonl line 1: .*no rowScores.*Train the adapter again/,
    );
    const broken = line({
      type: "test",
      phase: "tuned",
      loss: 1,
      rowScores: [{ nll: 1 }],
    });
    expect(() => readBaselineMetrics(broken, "b.jsonl")).toThrow(
      /b\.jsonl line 1: rowScores\[0\]\.tokens is not a number/,
    );
  });
});

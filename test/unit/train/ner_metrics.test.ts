/**
 * Entity-level NER metrics against values worked out by hand from seqeval's definitions, seqeval's own documented
 * examples, and its IOB2 test table (tests/test_scheme.py, test_iob2_tokens).
 */
import { describe, expect, it } from "vitest";
import { FormatError, ShapeError } from "@webtune/core";
import {
  entitySpans,
  nerMetrics,
  type EntityScores,
  type NerMode,
} from "../../../packages/core/src/train/ner_metrics.js";

/** Checks P, R, F1 (to 12 digits) and the counts. */
function expectScores(
  actual: EntityScores | undefined,
  expected: [precision: number, recall: number, f1: number],
  counts: { support: number; predicted: number; correct: number },
) {
  expect(actual).toBeDefined();
  expect(actual!.precision).toBeCloseTo(expected[0], 12);
  expect(actual!.recall).toBeCloseTo(expected[1], 12);
  expect(actual!.f1).toBeCloseTo(expected[2], 12);
  expect({
    support: actual!.support,
    predicted: actual!.predicted,
    correct: actual!.correct,
  }).toEqual(counts);
}

const span = (type: string, start: number, end: number) => ({
  type,
  start,
  end,
});
const bothModes: NerMode[] = ["default", "strict"];

describe("entitySpans", () => {
  it("reads seqeval's get_entities example (inclusive ends there, exclusive here)", () => {
    // seqeval: [('MISC', 3, 5), ('PER', 7, 8)]
    const tags = [
      "O",
      "O",
      "O",
      "B-MISC",
      "I-MISC",
      "I-MISC",
      "O",
      "B-PER",
      "I-PER",
    ];
    for (const mode of bothModes) {
      expect(entitySpans(tags, mode)).toEqual([
        span("MISC", 3, 6),
        span("PER", 7, 9),
      ]);
    }
  });

  it("reads a B-I-I entity that ends the sentence, in both modes", () => {
    for (const mode of bothModes) {
      expect(entitySpans(["O", "B-LOC", "I-LOC", "I-LOC"], mode)).toEqual([
        span("LOC", 1, 4),
      ]);
    }
  });

  it("splits adjacent B-PER B-PER into two entities, in both modes", () => {
    for (const mode of bothModes) {
      expect(entitySpans(["B-PER", "B-PER", "O"], mode)).toEqual([
        span("PER", 0, 1),
        span("PER", 1, 2),
      ]);
    }
  });

  it("starts an entity at an I- tag in default mode but not in strict mode", () => {
    const tags = ["O", "I-PER", "I-PER", "O", "B-LOC"];
    expect(entitySpans(tags, "default")).toEqual([
      span("PER", 1, 3),
      span("LOC", 4, 5),
    ]);
    expect(entitySpans(tags, "strict")).toEqual([span("LOC", 4, 5)]);
  });

  it("reads B-PER I-LOC as two entities in default mode, one in strict mode", () => {
    expect(entitySpans(["B-PER", "I-LOC"], "default")).toEqual([
      span("PER", 0, 1),
      span("LOC", 1, 2),
    ]);
    expect(entitySpans(["B-PER", "I-LOC"], "strict")).toEqual([
      span("PER", 0, 1),
    ]);
    // An I- of another type after an I- also starts a new entity in default mode.
    expect(entitySpans(["I-PER", "I-LOC", "I-LOC"], "default")).toEqual([
      span("PER", 0, 1),
      span("LOC", 1, 3),
    ]);
  });

  it("matches seqeval's IOB2 strict-mode table (test_iob2_tokens)", () => {
    const table: [string[], [string, number, number][]][] = [
      [[], []],
      [["B-PER"], [["PER", 0, 1]]],
      [["I-PER"], []],
      [["O"], []],
      [["O", "I-PER"], []],
      [["O", "B-PER"], [["PER", 1, 2]]],
      [["I-PER", "O"], []],
      [["I-PER", "I-PER"], []],
      [["I-PER", "I-ORG"], []],
      [["I-PER", "B-PER"], [["PER", 1, 2]]],
      [["I-PER", "B-ORG"], [["ORG", 1, 2]]],
      [["B-PER", "O"], [["PER", 0, 1]]],
      [["B-PER", "I-PER"], [["PER", 0, 2]]],
      [["B-PER", "I-ORG"], [["PER", 0, 1]]],
      [
        ["B-PER", "B-PER"],
        [
          ["PER", 0, 1],
          ["PER", 1, 2],
        ],
      ],
      [
        ["B-PER", "B-ORG"],
        [
          ["PER", 0, 1],
          ["ORG", 1, 2],
        ],
      ],
    ];
    for (const [tags, expected] of table) {
      expect(entitySpans(tags, "strict")).toEqual(
        expected.map(([t, s, e]) => span(t, s, e)),
      );
    }
  });

  it("refuses a tag that is not IOB2, naming it", () => {
    expect(() => entitySpans(["B-PER", "E-PER"], "default")).toThrow(
      FormatError,
    );
    expect(() => entitySpans(["B-PER", "E-PER"], "strict")).toThrow(
      /tag 1 is "E-PER"/,
    );
  });
});

describe("nerMetrics", () => {
  it("matches seqeval's README example: f1 0.50, MISC 0, PER 1", () => {
    const yTrue = [
      ["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"],
      ["B-PER", "I-PER", "O"],
    ];
    const yPred = [
      ["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"],
      ["B-PER", "I-PER", "O"],
    ];
    // Gold MISC 3..6, predicted MISC 2..6: wrong. PER 0..2 right. micro 1/2; macro (0 + 1)/2 = 1/2.
    // The same in strict mode (seqeval's v1 docstring with scheme=IOB2).
    for (const mode of bothModes) {
      const m = nerMetrics(yTrue, yPred, mode);
      expect(m.mode).toBe(mode);
      expect(m.micro.f1).toBe(0.5);
      expectScores(m.micro, [0.5, 0.5, 0.5], {
        support: 2,
        predicted: 2,
        correct: 1,
      });
      expect(m.macro).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5 });
      expect(Object.keys(m.perType)).toEqual(["MISC", "PER"]);
      expectScores(m.perType.MISC, [0, 0, 0], {
        support: 1,
        predicted: 1,
        correct: 0,
      });
      expectScores(m.perType.PER, [1, 1, 1], {
        support: 1,
        predicted: 1,
        correct: 1,
      });
    }
  });

  it("counts a span one token too long or too short as a false positive and a false negative", () => {
    const gold = [
      ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
      ["B-PER", "O"],
    ];
    const pred = [
      ["B-PER", "I-PER", "I-PER", "B-LOC", "O", "O"], // PER one too long, LOC one too short
      ["B-PER", "O"],
    ];
    // PER: support 2, predicted 2, correct 1 -> P = 1/2, R = 1/2, F1 = 1/2
    // LOC: support 1, predicted 1, correct 0 -> 0, 0, 0
    // micro: 1 of 3 predicted, 1 of 3 gold -> P = R = F1 = 1/3
    // macro: P = (1/2 + 0)/2 = 1/4, R = 1/4, F1 = 1/4
    const m = nerMetrics(gold, pred);
    expectScores(m.perType.PER, [1 / 2, 1 / 2, 1 / 2], {
      support: 2,
      predicted: 2,
      correct: 1,
    });
    expectScores(m.perType.LOC, [0, 0, 0], {
      support: 1,
      predicted: 1,
      correct: 0,
    });
    expectScores(m.micro, [1 / 3, 1 / 3, 1 / 3], {
      support: 3,
      predicted: 3,
      correct: 1,
    });
    expect(m.macro.precision).toBeCloseTo(1 / 4, 12);
    expect(m.macro.recall).toBeCloseTo(1 / 4, 12);
    expect(m.macro.f1).toBeCloseTo(1 / 4, 12);
  });

  it("gives no credit for the right span with the wrong type, and scores both types", () => {
    const m = nerMetrics([["B-PER", "I-PER", "O"]], [["B-ORG", "I-ORG", "O"]]);
    // ORG: predicted 1, never gold -> P = 0/1, R = 0 (no gold: zero_division). PER: gold 1, never predicted.
    expect(Object.keys(m.perType)).toEqual(["ORG", "PER"]);
    expectScores(m.perType.ORG, [0, 0, 0], {
      support: 0,
      predicted: 1,
      correct: 0,
    });
    expectScores(m.perType.PER, [0, 0, 0], {
      support: 1,
      predicted: 0,
      correct: 0,
    });
    expectScores(m.micro, [0, 0, 0], { support: 1, predicted: 1, correct: 0 });
  });

  it("scores three types with different precision and recall", () => {
    const gold = [
      ["B-PER", "I-PER", "O", "B-LOC"], //           PER 0..2, LOC 3..4
      ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"], //  ORG 0..3, PER 4..5
      ["O", "B-LOC", "O"], //                        LOC 1..2
    ];
    const pred = [
      ["B-PER", "I-PER", "O", "B-ORG"], //           PER right, ORG 3..4 wrong
      ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"], //  ORG right, PER right
      ["O", "B-LOC", "I-LOC"], //                    LOC 1..3 wrong
    ];
    // PER: support 2, predicted 2, correct 2 -> 1, 1, 1
    // LOC: support 2, predicted 1, correct 0 -> 0, 0, 0
    // ORG: support 1, predicted 2, correct 1 -> P = 1/2, R = 1, F1 = 2·(1/2)·1/(3/2) = 2/3
    // micro: 3 of 5 predicted, 3 of 5 gold -> 3/5, 3/5, 3/5
    // macro: P = (1 + 0 + 1/2)/3 = 1/2, R = (1 + 0 + 1)/3 = 2/3, F1 = (1 + 0 + 2/3)/3 = 5/9
    for (const mode of bothModes) {
      const m = nerMetrics(gold, pred, mode);
      expect(Object.keys(m.perType)).toEqual(["LOC", "ORG", "PER"]);
      expectScores(m.perType.PER, [1, 1, 1], {
        support: 2,
        predicted: 2,
        correct: 2,
      });
      expectScores(m.perType.LOC, [0, 0, 0], {
        support: 2,
        predicted: 1,
        correct: 0,
      });
      expectScores(m.perType.ORG, [1 / 2, 1, 2 / 3], {
        support: 1,
        predicted: 2,
        correct: 1,
      });
      expectScores(m.micro, [3 / 5, 3 / 5, 3 / 5], {
        support: 5,
        predicted: 5,
        correct: 3,
      });
      expect(m.macro.precision).toBeCloseTo(1 / 2, 12);
      expect(m.macro.recall).toBeCloseTo(2 / 3, 12);
      expect(m.macro.f1).toBeCloseTo(5 / 9, 12);
    }
  });

  it("counts adjacent B-PER B-PER as two gold entities that one B-PER I-PER span matches neither of", () => {
    const gold = [["B-PER", "B-PER", "O", "B-LOC"]]; // PER 0..1, PER 1..2, LOC 3..4
    const pred = [["B-PER", "I-PER", "O", "B-LOC"]]; // PER 0..2, LOC 3..4
    // PER: support 2, predicted 1, correct 0 -> 0, 0, 0. LOC: 1, 1, 1.
    // micro: correct 1, predicted 2, support 3 -> P = 1/2, R = 1/3, F1 = 2·(1/6)/(5/6) = 2/5
    // macro: P = (0 + 1)/2 = 1/2, R = 1/2, F1 = 1/2
    const m = nerMetrics(gold, pred);
    expectScores(m.perType.PER, [0, 0, 0], {
      support: 2,
      predicted: 1,
      correct: 0,
    });
    expectScores(m.perType.LOC, [1, 1, 1], {
      support: 1,
      predicted: 1,
      correct: 1,
    });
    expectScores(m.micro, [1 / 2, 1 / 3, 2 / 5], {
      support: 3,
      predicted: 2,
      correct: 1,
    });
    expect(m.macro).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5 });
  });

  it("credits an entity started by I- in default mode only (seqeval's conll and strict tests)", () => {
    const gold = [["B-ORG", "I-ORG"]];
    const pred = [["I-ORG", "I-ORG"]];
    // default: the prediction reads as ORG 0..2, which is right -> 1. strict: it is no entity -> R = 0/1.
    expectScores(nerMetrics(gold, pred, "default").micro, [1, 1, 1], {
      support: 1,
      predicted: 1,
      correct: 1,
    });
    const strict = nerMetrics(gold, pred, "strict");
    expectScores(strict.micro, [0, 0, 0], {
      support: 1,
      predicted: 0,
      correct: 0,
    });
    expect(strict.macro.f1).toBe(0);
  });

  it("scores the very last word's entity", () => {
    const gold = [["O", "O", "B-LOC", "I-LOC", "I-LOC"]];
    // One word short at the end: LOC 2..4 against 2..5 -> wrong. Then exactly right.
    const short = nerMetrics(gold, [["O", "O", "B-LOC", "I-LOC", "O"]]);
    expectScores(short.micro, [0, 0, 0], {
      support: 1,
      predicted: 1,
      correct: 0,
    });
    const exact = nerMetrics(gold, [["O", "O", "B-LOC", "I-LOC", "I-LOC"]]);
    expectScores(exact.micro, [1, 1, 1], {
      support: 1,
      predicted: 1,
      correct: 1,
    });
  });

  it("gives P = 0 and F1 = 0 when nothing is predicted, and zeros everywhere with no entities", () => {
    const gold = [
      ["B-PER", "O"],
      ["B-LOC", "I-LOC"],
    ];
    const none = nerMetrics(gold, [
      ["O", "O"],
      ["O", "O"],
    ]);
    // predicted 0 -> P = 0 (zero_division); R = 0/2; F1 = 0
    expectScores(none.micro, [0, 0, 0], {
      support: 2,
      predicted: 0,
      correct: 0,
    });
    expect(none.macro).toEqual({ precision: 0, recall: 0, f1: 0 });

    const empty = nerMetrics([["O"], []], [["O"], []]);
    expectScores(empty.micro, [0, 0, 0], {
      support: 0,
      predicted: 0,
      correct: 0,
    });
    expect(empty.perType).toEqual({});
    expect(empty.macro).toEqual({ precision: 0, recall: 0, f1: 0 });
  });

  it("matches spans only within the same sentence", () => {
    const m = nerMetrics(
      [
        ["B-PER", "O"],
        ["O", "O"],
      ],
      [
        ["O", "O"],
        ["B-PER", "O"],
      ],
    );
    expectScores(m.micro, [0, 0, 0], { support: 1, predicted: 1, correct: 0 });
  });

  it("refuses different sentence counts or lengths, naming the sentence", () => {
    expect(() => nerMetrics([["O"], ["O"]], [["O"]])).toThrow(ShapeError);
    expect(() => nerMetrics([["O"], ["O"]], [["O"]])).toThrow(
      /gold has 2 sentences but predicted has 1/,
    );
    expect(() => nerMetrics([["O"], ["O", "B-PER"]], [["O"], ["O"]])).toThrow(
      /sentence index 1: gold has 2 tags but predicted has 1/,
    );
    expect(() => nerMetrics([["O"], ["S-PER"]], [["O"], ["O"]])).toThrow(
      /gold sentence index 1: tag 0 is "S-PER"/,
    );
  });
});

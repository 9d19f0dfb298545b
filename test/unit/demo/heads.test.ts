/**
 * The demo's heads: tagged words with their entities marked (a head's answer, a data row), a head's answer as the
 * before/after panel writes it, and an adapter's task.
 */
import { describe, expect, it } from "vitest";
import {
  describePrediction,
  markEntities,
  taskOfAdapter,
} from "../../../demo/src/heads.js";

describe("the demo's heads", () => {
  it("marks each entity, its words in brackets and its type after", () => {
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
    // Two entities side by side, one that ends the sentence, and an I- tag that starts one (as a model may tag).
    expect(
      markEntities(["Esau", "Edom", "Seir"], ["B-PER", "B-LOC", "I-LOC"]),
    ).toBe("[Esau]PER [Edom Seir]LOC");
    expect(markEntities(["in", "Goshen"], ["O", "I-LOC"])).toBe(
      "in [Goshen]LOC",
    );
  });

  it("writes tagged words with their entities marked and listed, and labels most likely first", () => {
    expect(
      describePrediction({
        task: "token-cls",
        words: ["And", "Moses", "went", "to", "Mount", "Nebo", "."],
        tags: ["O", "B-PER", "O", "O", "B-LOC", "I-LOC", "O"],
        entities: [
          { type: "PER", text: "Moses", start: 1, end: 2 },
          { type: "LOC", text: "Mount Nebo", start: 4, end: 6 },
        ],
      }),
    ).toBe(
      "And [Moses]PER went to [Mount Nebo]LOC .\nentities: PER Moses · LOC Mount Nebo",
    );
    expect(
      describePrediction({
        task: "token-cls",
        words: ["Amen"],
        tags: ["O"],
        entities: [],
      }),
    ).toBe("Amen\nentities: none");
    expect(
      describePrediction({
        task: "seq-cls",
        scores: [
          { label: "law", score: 0.625 },
          { label: "love", score: 0.375 },
        ],
      }),
    ).toBe("law 62.5 %\nlove 37.5 %");
  });

  it("reads an adapter's task from PEFT's task_type", () => {
    expect(taskOfAdapter({ task_type: "TOKEN_CLS" })).toBe("token-cls");
    expect(taskOfAdapter({ task_type: "SEQ_CLS" })).toBe("seq-cls");
    expect(taskOfAdapter({ task_type: "CAUSAL_LM" })).toBe("causal-lm");
  });
});

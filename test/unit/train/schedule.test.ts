/**
 * Learning-rate schedules against values computed by hand from Hugging Face's lr_lambda formulas
 * (transformers/optimization.py), at step 0, inside and at the end of warmup, the midpoint and the last step.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "@webtune/core";
import {
  createSchedule,
  warmupStepsFromRatio,
} from "../../../packages/core/src/train/schedule.js";

const baseLr = 1e-3;

describe("HF schedules", () => {
  it("constant_with_warmup: k / max(1, W) during warmup, then 1", () => {
    const s = createSchedule({
      type: "constant_with_warmup",
      baseLr,
      warmupSteps: 4,
    });
    expect(s.lrAt(0)).toBe(0); // 0/4
    expect(s.lrAt(2)).toBe(baseLr * 0.5); // 2/4
    expect(s.lrAt(3)).toBe(baseLr * 0.75); // 3/4
    expect(s.lrAt(4)).toBe(baseLr); // end of warmup: 1
    expect(s.lrAt(10_000)).toBe(baseLr);
  });

  it("constant ignores warmup, as HF's get_constant_schedule", () => {
    const s = createSchedule({ type: "constant", baseLr, warmupSteps: 4 });
    expect(s.lrAt(0)).toBe(baseLr);
  });

  it("linear: warmup, then (N - k) / max(1, N - W), floored at 0", () => {
    // W = 10, N = 110, so N - W = 100.
    const s = createSchedule({
      type: "linear",
      baseLr,
      warmupSteps: 10,
      totalSteps: 110,
    });
    expect(s.lambda(0)).toBe(0); // 0/10
    expect(s.lambda(5)).toBe(0.5); // 5/10
    expect(s.lambda(9)).toBe(0.9); // 9/10, last warmup step
    expect(s.lambda(10)).toBe(1); // (110-10)/100
    expect(s.lambda(60)).toBe(0.5); // midpoint: (110-60)/100
    expect(s.lambda(109)).toBe(0.01); // last step: (110-109)/100
    expect(s.lambda(110)).toBe(0);
    expect(s.lambda(500)).toBe(0); // max(0, negative)
    expect(s.lrAt(60)).toBe(baseLr * 0.5);
  });

  it("cosine (num_cycles 0.5): warmup, then ½(1 + cos(π · 2 · 0.5 · progress))", () => {
    const s = createSchedule({
      type: "cosine",
      baseLr,
      warmupSteps: 10,
      totalSteps: 110,
    });
    expect(s.lambda(0)).toBe(0);
    expect(s.lambda(5)).toBe(0.5);
    expect(s.lambda(10)).toBe(1); // progress 0: ½(1 + cos 0)
    expect(s.lambda(35)).toBeCloseTo(0.5 * (1 + Math.SQRT1_2), 15); // progress 1/4: ½(1 + cos π/4)
    expect(s.lambda(60)).toBeCloseTo(0.5, 15); // midpoint, progress ½: ½(1 + cos π/2)
    expect(s.lambda(109)).toBe(0.5 * (1 + Math.cos(Math.PI * 0.99))); // last step, progress 99/100
    expect(s.lambda(109)).toBeCloseTo(2.4671981713e-4, 12);
    expect(s.lambda(110)).toBe(0); // progress 1: ½(1 + cos π) = 0
    // Like HF, past N the half cosine comes back up: progress 1.1 -> ½(1 + cos 1.1π).
    expect(s.lambda(120)).toBeCloseTo(0.5 * (1 - Math.cos(Math.PI * 0.1)), 15);
    expect(s.lrAt(60)).toBeCloseTo(baseLr * 0.5, 18);
  });

  it("cosine without warmup starts at the base lr; other num_cycles follow the same formula", () => {
    const s = createSchedule({ type: "cosine", baseLr, totalSteps: 4 });
    expect(s.lrAt(0)).toBe(baseLr);
    expect(s.lambda(2)).toBeCloseTo(0.5, 15); // progress 2/4
    const full = createSchedule({
      type: "cosine",
      baseLr,
      totalSteps: 4,
      numCycles: 1,
    });
    expect(full.lambda(2)).toBeCloseTo(0, 15); // ½(1 + cos(π · 2 · ½)) = 0
    expect(full.lambda(4)).toBeCloseTo(1, 15); // a full wave back to 1
  });

  it("warmup longer than the run stays in warmup, as HF", () => {
    const s = createSchedule({
      type: "linear",
      baseLr,
      warmupSteps: 20,
      totalSteps: 10,
    });
    expect(s.lambda(15)).toBe(0.75);
    expect(s.lambda(20)).toBe(0); // max(0, (10-20)/max(1, -10))
  });

  it("warmup_ratio rounds up, as TrainingArguments.get_warmup_steps", () => {
    expect(warmupStepsFromRatio(0.03, 1000)).toBe(30);
    expect(warmupStepsFromRatio(0.1, 15)).toBe(2); // ceil(1.5)
    expect(warmupStepsFromRatio(0, 15)).toBe(0);
  });

  it("rejects bad hyperparameters with a ConfigError naming the value", () => {
    expect(() => createSchedule({ type: "linear", baseLr })).toThrow(
      ConfigError,
    );
    expect(() => createSchedule({ type: "linear", baseLr })).toThrow(
      /totalSteps/,
    );
    expect(() =>
      createSchedule({ type: "cosine", baseLr: -1, totalSteps: 5 }),
    ).toThrow(/-1/);
    expect(() =>
      createSchedule({
        type: "linear",
        baseLr,
        warmupSteps: 1.5,
        totalSteps: 5,
      }),
    ).toThrow(/1\.5/);
    expect(() =>
      createSchedule({ type: "poly" as "linear", baseLr, totalSteps: 5 }),
    ).toThrow(/poly/);
    const s = createSchedule({ type: "constant", baseLr });
    expect(() => s.lrAt(-1)).toThrow(ConfigError);
    expect(() => warmupStepsFromRatio(1.5, 10)).toThrow(/1\.5/);
  });
});

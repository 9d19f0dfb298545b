/**
 * Sweep scheduling without training: a grid's order and count, seeded random search (reproducible, seed-sensitive,
 * ranges on the right scale), successive halving's rungs and who goes on (direction-aware, ties on validation
 * loss, failed trials last), and a bad space refused with the parameter named.
 */
import { describe, expect, it } from "vitest";
import {
  FineTuneJob,
  nextSweepAction,
  promoted,
  rungEnd,
  rungSteps,
  SWEEP_METRICS,
  sweepTrials,
  type SweepParam,
  type SweepRecord,
} from "@webtune/core";

const job = FineTuneJob.from({
  model: { source: "m" },
  data: { train: "train.jsonl" },
});
const lr: SweepParam = {
  name: "lr",
  field: "training.learningRate",
  values: [1e-3, 3e-3],
};
const r: SweepParam = { name: "r", field: "adapter.r", values: [8, 16] };

function record(
  trial: string,
  rung: number,
  value: number | null,
  more: Partial<SweepRecord> = {},
): SweepRecord {
  return {
    trial,
    rung,
    params: {},
    steps: 10,
    total: 80,
    metric: "accuracy",
    value,
    valLoss: 1,
    wallMs: 0,
    status: value === null ? "failed" : "paused",
    ...more,
  };
}

describe("sweep space", () => {
  it("a grid is every combination, the last parameter fastest, each trial's job set and checked", () => {
    const trials = sweepTrials(job, [lr, r], { kind: "grid" });
    expect(trials.map((t) => [t.id, t.params])).toEqual([
      ["t00", { lr: 1e-3, r: 8 }],
      ["t01", { lr: 1e-3, r: 16 }],
      ["t02", { lr: 3e-3, r: 8 }],
      ["t03", { lr: 3e-3, r: 16 }],
    ]);
    expect(trials[3]!.job.training.learningRate).toBe(3e-3);
    expect(trials[3]!.job.adapter.r).toBe(16);
    // The rest of the job is the base job's.
    expect(trials[3]!.job.training.batchSize).toBe(job.training.batchSize);
    const three = sweepTrials(
      job,
      [
        lr,
        r,
        { name: "dropout", field: "adapter.dropout", values: [0, 0.1, 0.2] },
      ],
      { kind: "grid" },
    );
    expect(three).toHaveLength(12);
  });

  it("random search is reproducible from its seed, changes with it, and samples ranges on their scale", () => {
    const space: SweepParam[] = [
      {
        name: "lr",
        field: "training.learningRate",
        range: { lo: 1e-4, hi: 1e-2 },
      },
      { name: "r", field: "adapter.r", values: [4, 8, 16, 32] },
      { name: "dropout", field: "adapter.dropout", range: { lo: 0, hi: 0.3 } },
      {
        name: "warmup",
        field: "training.warmupSteps",
        range: { lo: 0, hi: 10 },
      },
    ];
    const a = sweepTrials(job, space, { kind: "random", n: 200, seed: 7 });
    const b = sweepTrials(job, space, { kind: "random", n: 200, seed: 7 });
    const c = sweepTrials(job, space, { kind: "random", n: 200, seed: 8 });
    expect(a.map((t) => t.params)).toEqual(b.map((t) => t.params));
    expect(a.map((t) => t.params)).not.toEqual(c.map((t) => t.params));
    const lrs = a.map((t) => t.params["lr"] as number);
    expect(Math.min(...lrs)).toBeGreaterThanOrEqual(1e-4);
    expect(Math.max(...lrs)).toBeLessThanOrEqual(1e-2);
    // Log-uniform: about half the samples below the geometric middle, 1e-3 (uniform would put ~9 % there).
    const low = lrs.filter((x) => x < 1e-3).length / lrs.length;
    expect(low).toBeGreaterThan(0.35);
    expect(low).toBeLessThan(0.65);
    // A uniform range: about half below its middle.
    const drops = a.map((t) => t.params["dropout"] as number);
    const under = drops.filter((x) => x < 0.15).length / drops.length;
    expect(under).toBeGreaterThan(0.35);
    expect(under).toBeLessThan(0.65);
    // Lists are sampled from; whole-number bounds give whole numbers, each end included.
    expect(new Set(a.map((t) => t.params["r"]))).toEqual(
      new Set([4, 8, 16, 32]),
    );
    const warmups = new Set(a.map((t) => t.params["warmup"]));
    expect([...warmups].every((w) => Number.isInteger(w))).toBe(true);
    expect(warmups.has(0) && warmups.has(10)).toBe(true);
    expect(a[5]!.job.training.learningRate).toBe(a[5]!.params["lr"]);
  });

  it("refuses a bad space, naming the parameter", () => {
    const refused = (params: SweepParam[], kind: "grid" | "random" = "grid") =>
      expect(() =>
        sweepTrials(
          job,
          params,
          kind === "grid" ? { kind } : { kind, n: 3, seed: 0 },
        ),
      );
    refused([{ ...lr, values: [] }]).toThrow(
      /sweep parameter lr: give at least one value/,
    );
    refused([
      {
        name: "lr",
        field: "training.learningRat" as "training.learningRate",
        values: [1e-3],
      },
    ]).toThrow(
      /sweep parameter lr: .*job\.training\.learningRat is not a field of job\.training: did you mean learningRate\?/,
    );
    refused([
      { name: "x", field: "nonsense" as "method", values: [1] },
    ]).toThrow(/sweep parameter x: .*job\.nonsense is not a field of a job/);
    refused([{ ...lr, values: [1e-3, -1] }]).toThrow(
      /sweep parameter lr: -1 is refused: job\.training\.learningRate must be above 0/,
    );
    refused([{ ...r, values: [8, 2.5] }]).toThrow(
      /sweep parameter r: 2\.5 is refused: job\.adapter\.r must be a rank of at least 1/,
    );
    refused([
      {
        name: "lr",
        field: "training.learningRate",
        range: { lo: 1e-4, hi: 1e-2 },
      },
    ]).toThrow(
      /sweep parameter lr: the range 0\.0001:0\.01 is sampled by random search/,
    );
    refused(
      [
        {
          name: "lr",
          field: "training.learningRate",
          range: { lo: 1e-2, hi: 1e-4 },
        },
      ],
      "random",
    ).toThrow(/sweep parameter lr: a range needs two numbers lo < hi/);
    refused([lr, { ...lr, name: "training.learningRate" }]).toThrow(
      /sweep parameter training\.learningRate sets training\.learningRate, which another parameter sets too/,
    );
    // Each value alone is fine; together with the job they are not.
    refused([
      { name: "val-split", field: "data.valSplit", values: [0.5] },
      { name: "test-split", field: "data.testSplit", values: [0.6] },
    ]).toThrow(
      /sweep trial val-split=0\.5 test-split=0\.6: .*must sum to less than 1/,
    );
  });
});

describe("successive halving", () => {
  const halving = { eta: 3, minSteps: 10 };
  const ids = ["t0", "t1", "t2", "t3", "t4", "t5"];

  it("rungs grow by eta from the first rung's steps up to the full steps", () => {
    expect(rungSteps(80, halving)).toEqual([10, 30, 80]);
    expect(rungSteps(90, halving)).toEqual([10, 30, 90]);
    expect(rungSteps(8, halving)).toEqual([8]);
    expect(rungSteps(80, { eta: 3, minSteps: null })).toEqual([80]);
    expect(rungEnd(1, 80, false, halving)).toBe(30);
    expect(rungEnd(5, 80, false, halving)).toBe(80);
    expect(rungEnd(0, 80, true, halving)).toBe(80);
  });

  it("keeps the best 1/eta by the metric in its direction, ties broken by validation loss, failed trials never", () => {
    const rung = [
      record("t0", 0, 0.5, { valLoss: 2 }),
      record("t1", 0, 0.7),
      record("t2", 0, 0.5, { valLoss: 1.5 }),
      record("t3", 0, null),
      record("t4", 0, 0.6),
      record("t5", 0, 0.4),
    ];
    expect(
      promoted(rung, 3, SWEEP_METRICS.accuracy).map((x) => x.trial),
    ).toEqual(["t1", "t4"]);
    expect(
      promoted(rung, 2, SWEEP_METRICS.accuracy).map((x) => x.trial),
    ).toEqual(["t1", "t4", "t2"]);
    // Lower is better for a loss (t2 beats t0 on validation loss); the failed trial is still last.
    expect(promoted(rung, 3, SWEEP_METRICS.loss).map((x) => x.trial)).toEqual([
      "t5",
      "t2",
    ]);
    // At least one goes on.
    expect(
      promoted(rung.slice(0, 2), 3, SWEEP_METRICS.accuracy).map((x) => x.trial),
    ).toEqual(["t1"]);
  });

  it("asks for each trial-rung in order, skips what the records hold, and ends with the best finished trial", () => {
    const records: SweepRecord[] = [];
    const ran: string[] = [];
    const accuracy: Record<string, number> = {
      t0: 0.1,
      t1: 0.5,
      t2: 0.3,
      t3: 0.6,
      t4: 0.2,
      t5: 0.4,
    };
    for (;;) {
      const action = nextSweepAction(ids, records, halving);
      if (action.type === "done") {
        expect(action.best.trial).toBe("t3");
        break;
      }
      ran.push(`${action.trial}@${action.rung}${action.straight ? "*" : ""}`);
      const end = rungEnd(action.rung, 80, action.straight, halving);
      // t1 improves more with steps than t3 does, but only the last rung decides.
      const value = accuracy[action.trial]! + (action.rung === 2 ? 0.1 : 0);
      records.push(
        record(action.trial, action.rung, value, {
          steps: end,
          status: end === 80 ? "finished" : "paused",
        }),
      );
    }
    // 6 trials at 10 steps, the best 2 to 30, the best of those alone straight to 80.
    expect(ran).toEqual([
      "t0@0",
      "t1@0",
      "t2@0",
      "t3@0",
      "t4@0",
      "t5@0",
      "t3@1",
      "t1@1",
      "t3@2*",
    ]);
    // An interrupted sweep, its records read back, asks for the first trial-rung it lacks.
    expect(nextSweepAction(ids, records.slice(0, 7), halving)).toEqual({
      type: "run",
      trial: "t1",
      rung: 1,
      straight: false,
    });
  });

  it("carries a trial that finished or stopped early into later rungs without running it again", () => {
    const records = [
      record("t0", 0, 0.9, { status: "stopped early", steps: 6 }),
      record("t1", 0, 0.5),
      record("t2", 0, 0.4),
      record("t3", 0, 0.3),
    ];
    // t0 and t1 go on; t0 has nothing left to run.
    expect(
      nextSweepAction(["t0", "t1", "t2", "t3"], records, {
        eta: 2,
        minSteps: 10,
      }),
    ).toMatchObject({
      type: "run",
      trial: "t1",
      rung: 1,
    });
    const done = nextSweepAction(
      ["t0", "t1", "t2", "t3"],
      [...records, record("t1", 1, 0.8, { status: "finished", steps: 80 })],
      { eta: 2, minSteps: 10 },
    );
    expect(done).toMatchObject({ type: "done", best: { trial: "t0" } });
  });

  it("says so when every trial failed", () => {
    expect(() =>
      nextSweepAction(
        ["t0", "t1"],
        [record("t0", 0, null, { error: "diverged" }), record("t1", 0, null)],
        halving,
      ),
    ).toThrow(/every trial failed; the first: t0 .*diverged/);
  });
});

/**
 * The demo's run history, without a page: a finished run's entry from what the worker reports (the task metric of
 * the data's format, base → tuned, the kept validation loss, the forgetting check), and the table's rows, newest
 * first, with the settings that differ between runs and "–" for what a run did not measure.
 */
import { describe, expect, it } from "vitest";
import { FineTuneJob, type EvaluationResult } from "@webtune/core";
import {
  finishedRun,
  historyRows,
  HISTORY_COLUMNS,
  withRun,
  type RunOutcome,
} from "../../../demo/src/history.js";
import { MAX_HISTORY } from "../../../demo/src/run_store.js";

const job = (more = {}) =>
  FineTuneJob.from({
    model: { source: "models/webtune-demo-base/" },
    data: {
      train: "data/fortunes/train.jsonl",
      test: "data/fortunes/test.jsonl",
    },
    adapter: { r: 16 },
    training: { learningRate: 3e-3, batchSize: 16, epochs: 4 },
    ...more,
  }).toJSON();

const scores = (accuracy: number, loss: number): EvaluationResult => ({
  accuracy,
  loss,
  perplexity: Math.exp(loss),
  tokens: 100,
  rows: 84,
});

const outcome = (more: Partial<RunOutcome> = {}): RunOutcome => ({
  job: job(),
  train: {
    steps: 80,
    stoppedEarly: false,
    aborted: false,
    history: [
      { type: "eval", step: 40, loss: 1.5, perplexity: 4.5, tokens: 10 },
      { type: "eval", step: 80, loss: 1.25, perplexity: 3.5, tokens: 10 },
    ],
    bestEval: {
      type: "eval",
      step: 80,
      loss: 1.25,
      perplexity: 3.5,
      tokens: 10,
    },
  },
  test: { base: scores(0.25, 3), tuned: scores(0.631, 1.3) },
  forgetting: {
    type: "forgetting",
    base_loss: 3,
    tuned_loss: 3.125,
    loss_delta: 0.125,
  },
  ...more,
});

describe("run history", () => {
  it("keeps the task's metric base → tuned, the last validation loss, the forgetting check and the wall time", () => {
    const at = new Date("2026-12-01T10:00:00Z");
    const run = finishedRun(outcome(), "classification", 95_000, undefined, at);
    expect(run).toMatchObject({
      finishedAt: "2026-12-01T10:00:00.000Z",
      steps: 80,
      test: { metric: "accuracy", base: 0.25, tuned: 0.631 },
      valLoss: 1.25,
      referenceDelta: 0.125,
      wallMs: 95_000,
    });
    // A run that did not score the base model again shows the page's earlier base score.
    const again = finishedRun(
      outcome({ test: { tuned: scores(0.7, 1.2) } }),
      "classification",
      1,
      scores(0.25, 3),
    );
    expect(again.test).toEqual({ metric: "accuracy", base: 0.25, tuned: 0.7 });
    // Text data has no task metric but the loss; nothing scored, no test entry.
    expect(finishedRun(outcome(), "completion", 1).test).toMatchObject({
      metric: "loss",
      base: 3,
    });
    expect(
      finishedRun(
        outcome({ test: {}, forgetting: undefined }),
        "completion",
        1,
      ),
    ).toMatchObject({ test: null, referenceDelta: null });
  });

  it("lists runs newest first, one row of cells per run, with the settings that tell them apart", () => {
    const first = finishedRun(
      outcome(),
      "classification",
      450_000,
      undefined,
      new Date("2026-12-01T10:00:00Z"),
    );
    const replayed = job({
      method: "full",
      training: { learningRate: 1e-3, batchSize: 8, maxSteps: 40 },
    }) as ReturnType<typeof job> & {
      replay?: { source: string; ratio: number };
    };
    replayed.replay = { source: "data/replay.jsonl", ratio: 0.25 };
    const second = finishedRun(
      outcome({
        job: replayed,
        train: { ...outcome().train, steps: 40, history: [] },
        test: { tuned: scores(0.5, 1.4) },
        forgetting: undefined,
      }),
      "classification",
      65_000,
      undefined,
      new Date("2026-12-01T11:00:00Z"),
    );
    const rows = historyRows(withRun([first], second));
    expect(rows).toHaveLength(2);
    expect(rows[0]!).toHaveLength(HISTORY_COLUMNS.length);
    const cells = (row: string[]) =>
      Object.fromEntries(HISTORY_COLUMNS.map((c, i) => [c, row[i]]));
    expect(cells(rows[0]!)).toMatchObject({
      data: "fortunes",
      method: "full",
      r: "–",
      lr: "0.001",
      batch: "8",
      steps: "40",
      replay: "25.0 %",
      "test: base → tuned": "accuracy – → 50.0 %",
      "val loss": "–",
      "reference Δ": "–",
      wall: "1 min 05 s",
    });
    expect(cells(rows[1]!)).toMatchObject({
      method: "LoRA",
      r: "16",
      lr: "0.003",
      batch: "16",
      steps: "80",
      replay: "–",
      "test: base → tuned": "accuracy 25.0 % → 63.1 %",
      "val loss": "1.250",
      "reference Δ": "+0.125",
      wall: "7 min 30 s",
    });
    // The order is by time, whatever order the store holds them in.
    expect(historyRows([first, second])).toEqual(rows);
    // A file of the page's own is named as it is.
    const own = finishedRun(
      outcome({ job: job({ data: { train: "pasted.jsonl" } }) }),
      "classification",
      1,
    );
    expect(historyRows([own])[0]![1]).toBe("pasted.jsonl");
  });

  it("names a head's task, and scores token classification by its entity F1", () => {
    const ner = finishedRun(
      outcome({
        job: job({
          data: { train: "data/ner/train.jsonl", test: "data/ner/test.jsonl" },
          adapter: { r: 16, task: "token-cls" },
        }),
        test: {
          base: { ...scores(0.25, 1.6), f1: 0.041 },
          tuned: { ...scores(0.467, 1.4), f1: 0.124 },
        },
      }),
      "tagged",
      1,
    );
    expect(ner.test).toEqual({ metric: "f1", base: 0.041, tuned: 0.124 });
    const cells = Object.fromEntries(
      HISTORY_COLUMNS.map((c, i) => [c, historyRows([ner])[0]![i]]),
    );
    expect(cells).toMatchObject({
      data: "ner",
      method: "LoRA",
      task: "token-cls",
      "test: base → tuned": "entity F1 4.1 % → 12.4 %",
    });
    // A run from before heads has no task in its job: the language model's.
    const old = finishedRun(outcome(), "classification", 1);
    delete (old.job.adapter as { task?: string }).task;
    expect(historyRows([old])[0]![HISTORY_COLUMNS.indexOf("task")]).toBe(
      "causal-lm",
    );
  });

  it("keeps the newest MAX_HISTORY runs", () => {
    let runs = [finishedRun(outcome(), "classification", 1)];
    for (let i = 0; i < MAX_HISTORY + 5; i++)
      runs = withRun(runs, finishedRun(outcome(), "classification", i + 2));
    expect(runs).toHaveLength(MAX_HISTORY);
    expect(runs[0]!.wallMs).toBe(MAX_HISTORY + 6);
  });
});

/**
 * The run history: every finished run of the page side by side, newest first: its key settings (method, what the
 * model answers with, rank, rate, batch, steps, replay), its test metric base → tuned (entity F1 for a tagging head), its validation loss, the forgetting check's change in
 * reference loss, and its wall time. Kept in the run store (localStorage), so it survives a reload.
 */
import type {
  EvaluationResult,
  FineTuneJobSpec,
  ForgettingEvent,
  TrainResult,
} from "@webtune/core";
import type { DataSummary } from "@webtune/worker";
import { byId, formatDuration, tableRow } from "./dom.js";
import {
  loadHistory,
  MAX_HISTORY,
  saveHistory,
  type FinishedRun,
} from "./run_store.js";

export const HISTORY_COLUMNS = [
  "finished",
  "data",
  "method",
  "task",
  "r",
  "lr",
  "batch",
  "steps",
  "replay",
  "test: base → tuned",
  "val loss",
  "reference Δ",
  "wall",
];

/** What a run reports back that the history keeps (the worker's JobOutcome has it). */
export interface RunOutcome {
  job: FineTuneJobSpec;
  train: TrainResult;
  test: { base?: EvaluationResult; tuned?: EvaluationResult };
  forgetting?: ForgettingEvent;
}

/**
 * A finished run's entry. `base` is the page's earlier base score, for a run that skipped scoring the base
 * model again (same model, data and rows).
 */
export function finishedRun(
  outcome: RunOutcome,
  format: DataSummary["format"],
  wallMs: number,
  base?: EvaluationResult,
  finishedAt = new Date(),
): FinishedRun {
  const metric =
    format === "classification"
      ? "accuracy"
      : format === "instruction"
        ? "exactMatch"
        : format === "tagged"
          ? "f1"
          : "loss";
  const baseResult = outcome.test.base ?? base;
  const tuned = outcome.test.tuned;
  const evals = outcome.train.history.filter((e) => e.type === "eval");
  const kept = outcome.train.stoppedEarly
    ? outcome.train.bestEval
    : evals.at(-1);
  return {
    finishedAt: finishedAt.toISOString(),
    job: outcome.job,
    steps: outcome.train.steps,
    test:
      baseResult || tuned
        ? {
            metric,
            base: baseResult?.[metric] ?? null,
            tuned: tuned?.[metric] ?? null,
          }
        : null,
    valLoss: kept?.loss ?? null,
    referenceDelta: outcome.forgetting?.loss_delta ?? null,
    wallMs,
  };
}

/** `runs` with `run` added, newest first, at most MAX_HISTORY. */
export function withRun(
  runs: readonly FinishedRun[],
  run: FinishedRun,
): FinishedRun[] {
  return [run, ...runs].slice(0, MAX_HISTORY);
}

const NONE = "–";
const percent = (v: number) => `${(v * 100).toFixed(1)} %`;
const WORDS = {
  accuracy: "accuracy",
  exactMatch: "exact match",
  f1: "entity F1",
  loss: "loss",
};

/** The table's cells, one row per run, newest first. */
export function historyRows(runs: readonly FinishedRun[]): string[][] {
  return [...runs]
    .sort((a, b) => b.finishedAt.localeCompare(a.finishedAt))
    .map((run) => {
      const { job } = run;
      const t = job.training;
      // A job from before replay existed has no replay section.
      const replay = (job as { replay?: { source?: unknown; ratio?: number } })
        .replay;
      const test = run.test;
      const value = (v: number | null) =>
        v === null ? NONE : test!.metric === "loss" ? v.toFixed(3) : percent(v);
      const train = String(job.data.train);
      return [
        new Date(run.finishedAt).toLocaleString(undefined, {
          month: "short",
          day: "numeric",
          hour: "2-digit",
          minute: "2-digit",
          hourCycle: "h23",
        }),
        // A preset's folder names its task (data/fortunes/train.jsonl); a page's own file is its name.
        train.split("/").at(-2) ?? train,
        job.method === "full" ? "full" : "LoRA",
        // A job from before heads existed answers with the language model.
        (job.adapter as { task?: string }).task ?? "causal-lm",
        job.method === "full" ? NONE : String(job.adapter.r),
        String(t.learningRate),
        String(t.batchSize),
        String(run.steps),
        replay?.source && replay.ratio !== undefined
          ? percent(replay.ratio)
          : NONE,
        test
          ? `${WORDS[test.metric]} ${value(test.base)} → ${value(test.tuned)}`
          : NONE,
        run.valLoss === null ? NONE : run.valLoss.toFixed(3),
        run.referenceDelta === null
          ? NONE
          : `${run.referenceDelta >= 0 ? "+" : ""}${run.referenceDelta.toFixed(3)}`,
        formatDuration(run.wallMs),
      ];
    });
}

/** Fills the history table; the panel shows once there is a run in it. */
export function showHistory(
  runs: readonly FinishedRun[] = loadHistory(),
): void {
  const panel = byId("history-panel");
  panel.hidden = runs.length === 0;
  const table = byId("history");
  const head = document.createElement("thead");
  const names = document.createElement("tr");
  for (const name of HISTORY_COLUMNS) {
    const th = document.createElement("th");
    th.textContent = name;
    names.append(th);
  }
  head.append(names);
  const body = document.createElement("tbody");
  body.append(...historyRows(runs).map((cells) => tableRow(cells)));
  table.replaceChildren(head, body);
}

/** Adds a finished run to the stored history and the table. */
export function recordRun(run: FinishedRun): void {
  const runs = withRun(loadHistory(), run);
  saveHistory(runs);
  showHistory(runs);
}

/**
 * The monitor panel's actions: check a file of new labelled rows for drift against the adapter's test scores from
 * training (its rowScores), and retrain the adapter on them with replay, the charts of 5 · Train following the run.
 * A disabled button says why in its tooltip and in the line under the buttons.
 */
import * as Comlink from "comlink";
import type {
  DriftMetric,
  EvaluationResult,
  JobEvent,
  JobFieldNames,
} from "@webtune/core";
import type { MonitorResult, RetrainOutcome } from "@webtune/worker";
import type { DemoApp } from "./app.js";
import { byId, setStatus } from "./dom.js";
import { METRIC_NAMES, showDrift, showRetrained } from "./drift_view.js";
import { showMetrics } from "./metrics.js";
import {
  PAGE_FIELD_NAMES,
  PAGE_OPTION_NAMES,
  PAGE_TRAINER_NAMES,
} from "./settings.js";

/** A drift check: the file, the adapter scores it was compared with, and what it found. */
export interface DriftCheck {
  file: File;
  /** The test scores (app.metrics.tuned) it compared with: a check is the adapter's whose scores these are. */
  tuned: EvaluationResult;
  metric: DriftMetric;
  result: MonitorResult;
}

/** How retraining's messages name this page's controls. */
const RETRAIN_NAMES: JobFieldNames = {
  ...PAGE_FIELD_NAMES,
  "data.train": "the new rows' file",
  "training.maxSteps": 'the retraining "steps"',
};

/** The task metric a result has: accuracy, else exact match, else the loss (core's taskMetric). */
function taskMetric(r: EvaluationResult): DriftMetric {
  return r.accuracy !== undefined
    ? "accuracy"
    : r.exactMatch !== undefined
      ? "exactMatch"
      : "loss";
}

const pickedFile = () => byId<HTMLInputElement>("monitor-file").files?.[0];

/** Why Check for drift cannot run now, or undefined when it can (the page idle aside). */
export function driftBlocker(app: DemoApp): string | undefined {
  if (!app.model || !app.data)
    return "Load a model and data, and train an adapter first.";
  if (app.hasAdapter && app.adapterTask !== "causal-lm")
    return "The adapter answers with a classification head: monitoring head adapters is not supported yet.";
  const tuned = app.metrics.tuned;
  if (!tuned)
    return "Train first (or Evaluate on test after importing an adapter): the check compares new rows with the adapter's test scores.";
  if (!tuned.rowScores)
    return "These test scores have no per-row scores: press Evaluate on test to score the adapter row by row.";
  if (!pickedFile()) return "Pick a file of new rows first.";
  return undefined;
}

/** Why Retrain cannot run now, or undefined when it can. */
export function retrainBlocker(app: DemoApp): string | undefined {
  const blocked = driftBlocker(app);
  if (blocked) return blocked;
  if (app.fullyTuned || !app.hasAdapter)
    return "Full fine-tuning trained the model's own weights: retraining here continues a LoRA adapter.";
  const check = app.drift;
  if (!check || check.file !== pickedFile())
    return "Check this file for drift first: retraining goes on from the adapter that check scored.";
  if (check.tuned !== app.metrics.tuned)
    return "The adapter changed since this file was checked: check it for drift again before retraining.";
  return undefined;
}

/** Enables the panel's buttons for the page's state; a blocked one says why. */
export function showMonitorButtons(app: DemoApp, idle: boolean): void {
  const drift = driftBlocker(app);
  const retrain = retrainBlocker(app);
  const set = (id: string, why: string | undefined) => {
    const button = byId<HTMLButtonElement>(id);
    button.disabled = !idle || why !== undefined;
    button.title = why ?? "";
  };
  set("check-drift", drift);
  set("retrain", retrain);
  // A line under each button too (a disabled button's tooltip is easily missed), the reason said once.
  byId("monitor-why").textContent = idle ? (drift ?? "") : "";
  byId("retrain-why").textContent = idle && !drift ? (retrain ?? "") : "";
  const tuned = app.metrics.tuned;
  const task = byId<HTMLSelectElement>("drift-metric").options[0]!;
  task.textContent = tuned
    ? `${METRIC_NAMES[taskMetric(tuned)]} (the task's metric)`
    : "the task's metric";
}

/** The rows each format reads, for a file that is not in the loaded data's. */
const FORMAT_ROWS: Record<string, string> = {
  instruction: '{"prompt", "completion"} rows',
  classification: '{"text", "label"} rows',
  completion: '{"text"} rows',
  chat: '{"messages"} rows',
};

/** A row format error of the new file, said with the format it must have: the loaded data's. */
function inFormat(error: unknown, file: string, format?: string): unknown {
  const e = error as { name?: string; message?: string };
  if (!/FormatError$/.test(e?.name ?? "") || !format) return error;
  return Object.assign(
    new Error(
      `${e.message} ${file} must be ${format} data like the loaded data (${FORMAT_ROWS[format] ?? format}).`,
    ),
    { name: e.name },
  );
}

/** A whole number ≥ 1 from a field, or undefined when it is empty; an Error naming the field otherwise. */
function wholeNumber(id: string, label: string): number | undefined {
  const field = byId<HTMLInputElement>(id);
  if (field.value.trim() === "") return undefined;
  const n = field.valueAsNumber;
  if (!Number.isInteger(n) || n < 1)
    throw new Error(
      `"${label}" is ${field.value}: give a whole number ≥ 1${id === "monitor-rows" ? ", or leave it empty to score every row" : ""}.`,
    );
  return n;
}

/** Scores the picked file with the adapter and shows what moved against its test scores from training. */
export async function checkDrift(app: DemoApp): Promise<void> {
  const file = pickedFile();
  const tuned = app.metrics.tuned;
  if (!file || !tuned?.rowScores) throw new Error(driftBlocker(app));
  const maxRows = wholeNumber("monitor-rows", "rows to score");
  const metric =
    byId<HTMLSelectElement>("drift-metric").value === "loss"
      ? "loss"
      : taskMetric(tuned);
  app.drift = undefined;
  showDrift();
  showRetrained();
  app.setPhase("scoring");
  setStatus(
    `Scoring the adapter on ${maxRows ? `up to ${maxRows}` : "every"} row of ${file.name}…`,
  );
  const result = await app.trainer.api
    .monitor(
      { name: file.name, text: await file.text() },
      { rowScores: tuned.rowScores, metric },
      { maxRows, optionNames: PAGE_OPTION_NAMES },
    )
    .catch((error: unknown) => {
      throw inFormat(error, file.name, app.data?.format);
    });
  app.drift = { file, tuned, metric, result };
  showDrift({ file: file.name, result });
  setStatus(
    result.report.driftFlagged
      ? `Drift in ${file.name}: ${result.report.flags.length} flag${result.report.flags.length > 1 ? "s" : ""}, listed under 8 · Monitor new data.`
      : `No drift detected in ${file.name}.`,
  );
}

/**
 * Goes on training the adapter on the checked file with replay (the page's settings, the steps field's steps),
 * with live charts, then shows before → after; the retrained adapter's test scores become the adapter column's.
 */
export async function retrainOnDrift(app: DemoApp): Promise<void> {
  const check = app.drift;
  if (!check || retrainBlocker(app)) throw new Error(retrainBlocker(app));
  const steps = wholeNumber("retrain-steps", "steps") ?? 50;
  const input = app.jobInput();
  input.training = { ...input.training, maxSteps: steps };
  const job = await app.trainer.api.checkJob(input, RETRAIN_NAMES);
  const files = await app.jobFiles(job);
  app.startCharts(0);
  app.clearAnswers();
  showRetrained();
  const onEvent = Comlink.proxy((event: JobEvent) => {
    // The run's data and test events are the new rows': the task's panels keep theirs.
    if (event.type === "test" || event.type === "data") return;
    app.onEvent(event, steps);
  });
  app.retraining = true;
  let outcome: RetrainOutcome;
  try {
    outcome = await app.trainer.api.retrainOnDrift(
      job,
      { name: check.file.name, text: await check.file.text() },
      files,
      {
        metric: check.metric,
        names: RETRAIN_NAMES,
        trainerNames: PAGE_TRAINER_NAMES,
        dataNames: PAGE_OPTION_NAMES,
      },
      onEvent,
    );
  } finally {
    app.retraining = false;
  }
  adoptRetrained(app, outcome, check.file.name);
}

/** The retrained adapter is the page's adapter now: its test scores replace the old ones. */
function adoptRetrained(
  app: DemoApp,
  outcome: RetrainOutcome,
  file: string,
): void {
  app.retrained = outcome;
  app.metrics.tuned = outcome.test?.after;
  showMetrics(
    app.metrics.base,
    app.metrics.tuned,
    app.data?.format,
    app.metrics.forgetting,
  );
  showRetrained(outcome, file);
  const r = outcome.train;
  byId("eta").textContent =
    `${r.aborted ? "Stopped" : "Retrained"} after ${r.steps} steps on ${file}.`;
  setStatus(
    `${r.aborted ? "Stopped retraining" : "Retrained the adapter"} after ${r.steps} steps: before → after under 8 · Monitor new data.`,
  );
}

/**
 * What a page reload needs to resume a run: where the model and data came from, the settings, and the events
 * drawn so far. The checkpoints themselves (adapter, optimizer, step) are in OPFS, written by the worker. Beside
 * it, the page's finished runs, for the run history (history.ts).
 */
import type { FineTuneJobSpec, TrainEvent } from "@webtune/core";

const KEY = "webtune-demo-run";
const HISTORY_KEY = "webtune-demo-history";

export type ModelChoice =
  { kind: "embedded" } | { kind: "hub"; id: string } | { kind: "folder" };

export type DataChoice =
  | { kind: "preset"; name: string }
  | {
      kind: "text";
      source: string;
      text: string;
      testSplit: number;
      /** A separate test file, which replaces the test split. */
      test?: { source: string; text: string };
      /** Drop rows that cannot be read instead of stopping at the first. */
      skipBadRows?: boolean;
    };

export interface SavedRun {
  startedAt: string;
  model: ModelChoice;
  data: DataChoice;
  settings: Record<string, string>;
  events: TrainEvent[];
}

/** Text datasets above this are not kept for resuming (localStorage holds a few MB). */
const MAX_SAVED_TEXT = 1_000_000;

export function saveRun(run: SavedRun): void {
  if (
    run.data.kind === "text" &&
    run.data.text.length + (run.data.test?.text.length ?? 0) > MAX_SAVED_TEXT
  )
    return;
  try {
    localStorage.setItem(KEY, JSON.stringify(run));
  } catch {
    // Storage full or denied: the run still trains, it just cannot resume after a reload.
  }
}

export function loadRun(): SavedRun | undefined {
  try {
    const text = localStorage.getItem(KEY);
    return text ? (JSON.parse(text) as SavedRun) : undefined;
  } catch {
    return undefined;
  }
}

export function forgetRun(): void {
  localStorage.removeItem(KEY);
}

/** One finished run, as the run history keeps it. */
export interface FinishedRun {
  /** ISO time the run ended. */
  finishedAt: string;
  /** The job as it ran. */
  job: FineTuneJobSpec;
  /** Optimizer steps taken. */
  steps: number;
  /**
   * The task's metric on the test rows (accuracy, exact match, micro entity F1 for token classification, or loss),
   * base and tuned; null: not scored.
   */
  test: {
    metric: "accuracy" | "exactMatch" | "f1" | "loss";
    base: number | null;
    tuned: number | null;
  } | null;
  /** The last validation loss (the kept one, after early stopping). */
  valLoss: number | null;
  /** The forgetting check: the reference text's loss after tuning minus before. */
  referenceDelta: number | null;
  wallMs: number;
}

/** Finished runs the history keeps, newest first. */
export const MAX_HISTORY = 20;

export function loadHistory(): FinishedRun[] {
  try {
    const text = localStorage.getItem(HISTORY_KEY);
    return text ? (JSON.parse(text) as FinishedRun[]) : [];
  } catch {
    return [];
  }
}

export function saveHistory(runs: FinishedRun[]): void {
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(runs));
  } catch {
    // Storage full or denied: the history shows this page's runs until a reload.
  }
}

/** What a running job reports, in order: its phases, its data, the Trainer's events, test scores, forgetting. */
import type { Dataset } from "../train/data/build.js";
import type { EvaluationResult } from "../train/evaluate.js";
import type { TrainEvent } from "../train/trainer.js";

/** What a run is doing, for a status line. */
export interface PhaseEvent {
  type: "phase";
  phase:
    | "loading model"
    | "reading data"
    | "scoring base"
    | "training"
    | "scoring tuned"
    | "checking forgetting";
  /** Rows being scored, in the scoring phases. */
  rows?: number;
}

/** The data as read: its cleaning report, split sizes, and test rows the training data also holds. */
export interface DataEvent {
  type: "data";
  format: Dataset["format"];
  report: Dataset["report"];
  labels?: string[];
  sizes: { train: number; val: number; test: number };
  overlap: { rows: number; lines: number[] };
  promptTemplate: string | null;
}

/** Test metrics of the base model (before training) or of the tuned one. */
export type TestEvent = {
  type: "test";
  phase: "base" | "tuned";
  step: number;
} & EvaluationResult;

/** The reference text's loss before and after tuning (a positive delta is forgetting). */
export interface ForgettingEvent {
  type: "forgetting";
  base_loss: number;
  tuned_loss: number;
  loss_delta: number;
}

/** Everything a run reports, in order; the Trainer's step and eval events among them. */
export type JobEvent =
  TrainEvent | PhaseEvent | DataEvent | TestEvent | ForgettingEvent;

/** What a running job reports, in order: its phases, its data, the Trainer's events, test scores, forgetting. */
import type { Dataset } from "../train/data/build.js";
import type { EvaluationResult } from "../train/evaluate.js";
import type { FewShotReport } from "../train/few_shot.js";
import type { TrainEvent } from "../train/trainer.js";

/** What a run is doing, for a status line. */
export interface PhaseEvent {
  type: "phase";
  phase:
    | "loading model"
    | "reading data"
    | "augmenting"
    | "paraphrasing"
    | "scoring base"
    | "scoring few-shot"
    | "training"
    | "scoring tuned"
    | "checking retention"
    | "checking forgetting";
  /** Rows being scored, in the scoring phases. */
  rows?: number;
  /** The task being scored, when the run has several (or it is an earlier task's retention). */
  task?: string;
}

/** The data as read: its cleaning report, split sizes, and test rows the training data also holds. */
export interface DataEvent {
  type: "data";
  format: Dataset["format"] | "tagged";
  report: Dataset["report"];
  labels?: string[];
  sizes: { train: number; val: number; test: number };
  overlap: { rows: number; lines: number[] };
  promptTemplate: string | null;
  /** Multitask: each task's data (the fields above are the first task's). */
  tasks?: {
    name: string;
    format: Dataset["format"] | "tagged";
    labels?: string[];
    sizes: { train: number; val: number; test: number };
    overlap: { rows: number; lines: number[] };
  }[];
  /** Rows of the replay file, when the job replays one. */
  replayRows?: number;
}

/**
 * Test metrics of the base model (before training), of the base model prompted with k training examples (the
 * few-shot baseline), or of the tuned one.
 */
export type TestEvent = {
  type: "test";
  phase: "base" | "few-shot" | "tuned";
  /** The few-shot baseline: its k, seed, examples and prompt lengths. */
  fewShot?: FewShotReport;
  step: number;
  /** The task scored, when the run trains several. */
  task?: string;
} & EvaluationResult;

/** Sequential fine-tuning: an earlier task's test scores before and after this run (what the adapter kept). */
export interface RetentionEvent {
  type: "retention";
  task: string;
  /** Its test file. */
  source: string;
  before: EvaluationResult;
  after: EvaluationResult;
}

/** The reference text's loss before and after tuning (a positive delta is forgetting). */
export interface ForgettingEvent {
  type: "forgetting";
  base_loss: number;
  tuned_loss: number;
  loss_delta: number;
}

/** Everything a run reports, in order; the Trainer's step and eval events among them. */
export type JobEvent =
  | TrainEvent
  | PhaseEvent
  | DataEvent
  | TestEvent
  | ForgettingEvent
  | RetentionEvent;

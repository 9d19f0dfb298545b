/**
 * Running a sweep: each trial-rung is a run of the trial's job that stops at exactly the rung's last step with a
 * checkpoint there, and the trial's next rung resumes from that checkpoint, so a promoted trial trains as if it had
 * never stopped (its schedule is over its full steps throughout). Trials are scored on the validation rows; the
 * best one alone is scored on the test rows, once, at the end.
 */
import { ConfigError, DivergenceError } from "../errors.js";
import type { CheckpointStore } from "../io/checkpoint_store.js";
import { LoraModel } from "../lora/model.js";
import { loadModel, type PretrainedModel } from "../models/pretrained.js";
import { initRuntime } from "../runtime/runtime.js";
import { evaluate, type EvaluationResult } from "../train/evaluate.js";
import { JobControl } from "./control.js";
import type { JobEvent } from "./events.js";
import type { FineTuneJob } from "./fine_tune_job.js";
import type { JobResult, JobRunOptions } from "./run.js";
import {
  nextSweepAction,
  rungEnd,
  sweepMetric,
  type HalvingOptions,
  type SweepRecord,
  type SweepTrial,
} from "./sweep.js";

/** What {@link runSweep} needs: the trials, halving, and where checkpoints and records go. */
export interface SweepRunOptions extends Pick<
  JobRunOptions,
  "readFile" | "load" | "trainerNames" | "dataNames"
> {
  trials: readonly SweepTrial[];
  halving: HalvingOptions;
  /** The records of an earlier, interrupted run of this sweep: those trial-rungs are not run again. */
  records?: readonly SweepRecord[];
  /** The checkpoints of one trial (a folder each): rung ends, which the trial's next rung resumes from. */
  checkpoints: (trial: string) => CheckpointStore;
  /** Each trial-rung's record, as soon as it is scored (a CLI appends it to sweep.jsonl). */
  onRecord?: (record: SweepRecord) => Promise<void> | void;
  /** A trial-rung starts: from step `from` (a checkpoint, or 0) to `until`, of the trial's `total`. */
  onStart?: (run: {
    trial: SweepTrial;
    rung: number;
    from: number;
    until: number;
    total: number;
  }) => void;
  /** The events of the run in progress (a trial-rung, or the best trial's test run). */
  onEvent?: (trial: SweepTrial, event: JobEvent) => void;
  /** Run at most this many trial-rungs, then return without a best (run the sweep again to go on). */
  maxRuns?: number;
  /** false: return once the best trial is known, without its test run (it was done before). Default true. */
  scoreBest?: boolean;
}

/** What a sweep leaves: every record, and the best trial with its test run (the caller disposes its model). */
export interface SweepResult {
  records: SweepRecord[];
  /** Unset when `maxRuns` ended the sweep before the best trial was known. */
  best?: { trial: SweepTrial; record: SweepRecord; run?: JobResult };
}

/**
 * Runs the trial-rungs {@link nextSweepAction} asks for, in order, skipping those `records` already hold; then runs
 * the best trial's job once more from its last checkpoint, with the job's own scoring (base and tuned test scores,
 * the forgetting check), which for a trial that finished its steps trains nothing. Every trial trains an adapter on
 * one loaded model (loaded again only when a trial's job names other model fields).
 *
 * @example
 * ```ts
 * const trials = sweepTrials(job, [{ name: "lr", field: "training.learningRate", values: [1e-3, 3e-3] }], { kind: "grid" });
 * const { best } = await runSweep({ trials, halving: { eta: 2, minSteps: 10 }, readFile,
 *   checkpoints: (id) => directoryStore(`sweep/${id}`) });
 * console.log(best!.record.params, best!.run!.summary);
 * ```
 */
export async function runSweep(o: SweepRunOptions): Promise<SweepResult> {
  const records = [...(o.records ?? [])];
  const models = new SharedModel(o.load);
  const ids = o.trials.map((t) => t.id);
  const trialOf = (id: string) => o.trials.find((t) => t.id === id)!;
  let runs = 0;
  try {
    for (;;) {
      const action = nextSweepAction(ids, records, o.halving);
      if (action.type === "done") {
        const trial = trialOf(action.best.trial);
        const best = { trial, record: action.best };
        if (o.scoreBest === false) return { records, best };
        const run = await testRun(trial, action.best, o, models);
        models.release();
        return { records, best: { ...best, run } };
      }
      if (o.maxRuns !== undefined && runs >= o.maxRuns) return { records };
      const trial = trialOf(action.trial);
      const previous = records
        .filter((r) => r.trial === action.trial)
        .sort((a, b) => b.rung - a.rung)[0];
      const record = await trialRung(trial, action, previous, o, models);
      records.push(record);
      runs++;
      await o.onRecord?.(record);
    }
  } finally {
    models.dispose();
  }
}

/** One trial-rung: the trial's job from its last checkpoint to the rung's end, scored on the validation rows. */
async function trialRung(
  trial: SweepTrial,
  action: { rung: number; straight: boolean },
  previous: SweepRecord | undefined,
  o: SweepRunOptions,
  models: SharedModel,
): Promise<SweepRecord> {
  const started = performance.now();
  const base = {
    trial: trial.id,
    rung: action.rung,
    params: trial.params,
  };
  // Trials score nothing but their validation rows: no base, few-shot or test scores, no forgetting or
  // retention check.
  const job = trial.job.with({
    evaluation: {
      scoreBase: false,
      fewShot: null,
      reference: null,
      retention: null,
    },
  });
  let total = previous?.total ?? 0;
  let steps = previous?.steps ?? 0;
  try {
    total ||= await stepsOf(job, o, models);
    const until = rungEnd(action.rung, total, action.straight, o.halving);
    const store = o.checkpoints(trial.id);
    const resume = await latestCheckpoint(store, until);
    const control = new JobControl();
    // Its rung's checkpoint was saved before the sweep was interrupted: score it, train nothing.
    if (resume?.step === until) control.stop();
    o.onStart?.({
      trial,
      rung: action.rung,
      from: resume?.step ?? 0,
      until,
      total,
    });
    const run = await job.with({ checkpointEvery: until }).run({
      ...(await runOptions(o, job, models)),
      control,
      checkpoints: stoppingAt(store, until, control),
      resume: resume?.files,
      onEvent: (e) => {
        if (e.type === "phase" && e.phase === "scoring tuned")
          control.skipScoring(); // the test rows wait for the best trial
        o.onEvent?.(trial, e);
      },
    });
    steps = run.train.steps;
    const val = await scoreValidation(run);
    const metric = sweepMetric(run.splits.format);
    return {
      ...base,
      steps,
      total,
      metric: metric.name,
      value: val[metric.name] ?? null,
      valLoss: val.loss,
      wallMs: performance.now() - started,
      status: run.train.stoppedEarly
        ? "stopped early"
        : steps >= total
          ? "finished"
          : "paused",
    };
  } catch (error) {
    // A trial its settings break (a diverging rate, a batch too large): recorded, and the sweep goes on.
    if (!(error instanceof DivergenceError || error instanceof ConfigError))
      throw error;
    return {
      ...base,
      steps,
      total,
      metric: previous?.metric ?? "loss",
      value: null,
      valLoss: null,
      wallMs: performance.now() - started,
      status: "failed",
      error: error.message,
    };
  }
}

/** The best trial's job, resumed from its last checkpoint, with the job's own test scoring and forgetting check. */
async function testRun(
  trial: SweepTrial,
  record: SweepRecord,
  o: SweepRunOptions,
  models: SharedModel,
): Promise<JobResult> {
  const resume = await latestCheckpoint(o.checkpoints(trial.id), record.total);
  return trial.job.run({
    ...(await runOptions(o, trial.job, models)),
    resume: resume?.files,
    onEvent: (e) => o.onEvent?.(trial, e),
  });
}

/** The task metric and loss on the run's validation rows (the rows the Trainer evaluates on). */
function scoreValidation(run: JobResult): Promise<EvaluationResult> {
  const rows = run.splits.val.slice(0, run.job.evaluation.valRows ?? undefined);
  if (rows.length === 0)
    throw new ConfigError(
      "a sweep selects trials on the validation rows, and this job has none: give job.data.valSplit above 0.",
    );
  return evaluate(run.peft, run.model.tokenizer!, rows, {
    format: run.splits.format,
    labels: run.splits.labels,
    head: run.peft.head(),
  });
}

const STEP_NAME = /^step-(\d+)$/;

/** The last checkpoint of `store` at or before step `until`, with its step. */
async function latestCheckpoint(
  store: CheckpointStore,
  until: number,
): Promise<{ step: number; files: Record<string, Uint8Array> } | undefined> {
  const saved = (await store.list())
    .map((name) => ({ name, step: Number(STEP_NAME.exec(name)?.[1] ?? NaN) }))
    .filter((c) => c.step <= until)
    .sort((a, b) => a.step - b.step)
    .at(-1);
  return saved && { step: saved.step, files: await store.load(saved.name) };
}

/**
 * `store`, for a run that must end at exactly step `until`. The Trainer saves step N's checkpoint after step N's
 * update and before step N + 1 is enqueued (a checkpoint must hold exactly N's optimizer state), so stopping the
 * run from inside that save ends it at N, where JobControl.stop alone would let the step in flight finish.
 */
function stoppingAt(
  store: CheckpointStore,
  until: number,
  control: JobControl,
): CheckpointStore {
  return {
    description: store.description,
    save: async (name, files) => {
      await store.save(name, files);
      if (name === checkpointName(until)) control.stop();
    },
    load: (name) => store.load(name),
    list: () => store.list(),
    clear: () => store.clear(),
  };
}

/** The Trainer's name for step N's checkpoint. */
const checkpointName = (step: number) =>
  `step-${String(step).padStart(6, "0")}`;

/** A run's optimizer steps, from the run itself: it reads and batches the data, then stops before training. */
async function stepsOf(
  job: FineTuneJob,
  o: SweepRunOptions,
  models: SharedModel,
): Promise<number> {
  if (job.training.maxSteps !== null) return job.training.maxSteps;
  let steps: number | undefined;
  const counted = new Error("counted");
  await job
    .run({
      ...(await runOptions(o, job, models)),
      beforeRun: async (run) => {
        steps = run.steps;
        throw counted;
      },
    })
    .catch((error: unknown) => {
      if (error !== counted) throw error;
    });
  return steps!;
}

/** The options every run of the sweep shares, with the loaded model. */
async function runOptions(
  o: SweepRunOptions,
  job: FineTuneJob,
  models: SharedModel,
): Promise<JobRunOptions> {
  return {
    readFile: o.readFile,
    trainerNames: o.trainerNames,
    dataNames: o.dataNames,
    ...(await models.for(job)),
  };
}

/** The base model the trials share: loaded once, and again only when a trial's job names other model fields. */
class SharedModel {
  private key: string | undefined;
  private loaded: { model: PretrainedModel; peft: LoraModel } | undefined;

  constructor(private readonly load: SweepRunOptions["load"]) {}

  async for(
    job: FineTuneJob,
  ): Promise<{ model: PretrainedModel; peft: LoraModel }> {
    const key = JSON.stringify(job.model);
    if (this.loaded && this.key === key) return this.loaded;
    this.dispose();
    await initRuntime();
    const m = job.model;
    const model = await loadModel(m.source, {
      ...this.load,
      revision: m.revision,
      dtype: m.dtype,
      quantize: m.quantize ?? undefined,
      doubleQuant: m.doubleQuant,
    });
    this.loaded = { model, peft: new LoraModel(model) };
    this.key = key;
    return this.loaded;
  }

  /** Hands the model to the caller (the best trial's test run holds it). */
  release(): void {
    this.loaded = undefined;
    this.key = undefined;
  }

  dispose(): void {
    this.loaded?.peft.dispose();
    this.loaded?.model.dispose();
    this.release();
  }
}

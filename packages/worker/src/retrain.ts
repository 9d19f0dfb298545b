/**
 * Retraining on drift in the worker, as `webtune monitor --retrain` does it in Node: a job that goes on training the
 * worker's adapter on the new rows (a seeded, stratified share held out), with the loaded training file replayed
 * into every batch; then the adapter as it was and the retrained one scored on the same rows: the held-out new
 * rows, and the loaded test split. The service hands over its model, data and job runner (RetrainContext).
 */
import {
  bootstrapDelta,
  ConfigError,
  evaluate,
  FineTuneJob,
  metricRows,
  type AdapterFiles,
  type DatasetFormat,
  type DriftMetric,
  type EvaluationResult,
  type Example,
  type FineTuneJobInput,
  type FineTuneJobSpec,
  type JobControl,
  type JobEvent,
  type JobResult,
  type LoraModel,
  type Tokenizer,
} from "@webtune/core";
import type {
  BeforeAfter,
  NewRowsFile,
  RetrainOutcome,
  WorkerRetrainOptions,
} from "./api.js";
import type { LoadedData } from "./data.js";
import { fileFormat, withoutRows, type DataReading } from "./monitor.js";

/** retrainOnDrift's defaults, as `webtune monitor --retrain`'s: the share held out, and replayed per batch. */
export const RETRAIN_DEFAULTS = { holdout: 0.3, replayRatio: 0.25 };

/** The name the job gives the adapter it continues: the worker's active adapter, handed over as files. */
export const CURRENT_ADAPTER = "the adapter in the worker";

/** The adapter as it was, loaded beside the retrained one to score it on the same rows. */
export const RETRAIN_BEFORE = "before-retraining";

/**
 * The job that goes on training the adapter on the new rows: `page` (the caller's settings and loaded data, checked)
 * with the new file as its training data and a held-out share of it as its test rows, the loaded training file
 * replayed, the worker's adapter continued from, and no base, few-shot or checkpoint work (the adapter as it was
 * is the "before", scored after the run).
 */
export function retrainInput(
  page: FineTuneJobSpec,
  file: NewRowsFile,
  format: DatasetFormat,
  reading: DataReading,
  o: WorkerRetrainOptions,
): FineTuneJobInput {
  if (Array.isArray(reading.source))
    throw new ConfigError(
      `The loaded adapter was trained on several files (${reading.source.join(", ")}): retraining here replays one; run webtune monitor --retrain --replay <file> instead.`,
    );
  if (file.name === reading.source)
    throw new ConfigError(
      `The new rows' file is named ${file.name}, as the loaded training file that retraining replays: rename the new file.`,
    );
  return {
    ...page,
    data: {
      ...page.data,
      train: file.name,
      test: null,
      mix: null,
      format,
      testSplit: o.holdout ?? RETRAIN_DEFAULTS.holdout,
      maxLength: reading.maxLength,
      skipBadRows: reading.skipBadRows,
    },
    adapter: { ...page.adapter, continueFrom: CURRENT_ADAPTER },
    replay: {
      source: reading.source,
      ratio: o.replayRatio ?? RETRAIN_DEFAULTS.replayRatio,
    },
    evaluation: {
      ...page.evaluation,
      scoreBase: false,
      fewShot: null,
      retention: null,
    },
    checkpointEvery: null,
  };
}

/** The adapter as it was (`before`, an adapter name) and the active one on `rows`, each row kept. */
async function scoreBeforeAfter(
  peft: LoraModel,
  tokenizer: Tokenizer,
  rows: Example[],
  how: {
    format: DatasetFormat;
    labels?: string[];
    metric: DriftMetric;
    before: string;
    after?: EvaluationResult;
    signal?: AbortSignal;
    resamples?: number;
    seed?: number;
  },
): Promise<BeforeAfter> {
  const score = () =>
    evaluate(peft, tokenizer, rows, {
      format: how.format,
      labels: how.labels,
      signal: how.signal,
      keepRows: true,
    });
  const after = how.after ?? (await score());
  const active = peft.activeAdapter!;
  peft.setAdapter(how.before);
  let before: EvaluationResult;
  try {
    before = await score();
  } finally {
    peft.setAdapter(active);
  }
  const change = bootstrapDelta(
    metricRows(before.rowScores!, how.metric, "rows before"),
    metricRows(after.rowScores!, how.metric, "rows after"),
    { seed: how.seed ?? 0, resamples: how.resamples ?? 2000 },
  );
  return { rows: rows.length, metric: how.metric, before, after, change };
}

/** What retraining uses of the worker: its adapters, loaded data and job control, and how it runs a job. */
export interface RetrainContext {
  peft: LoraModel;
  tokenizer: Tokenizer;
  /** The loaded data, whose test split is scored before and after; it stays loaded. */
  data: LoadedData;
  reading: DataReading;
  control: JobControl;
  onEvent?: (event: JobEvent) => void;
  /** Whether a job's model is the one loaded, on which the adapter lives. */
  isLoaded: (model: FineTuneJobSpec["model"]) => boolean;
  /** Runs a checked job on the loaded model, the adapter it continues read by `readAdapter`. */
  runJob: (
    job: FineTuneJob,
    files: Record<string, string | ArrayBuffer>,
    readAdapter: (source: string) => Promise<AdapterFiles>,
  ) => Promise<JobResult>;
}

/** The caller's job (settings and loaded data), the new rows, and the files the job names. */
export interface RetrainRequest {
  input: FineTuneJobInput;
  file: NewRowsFile;
  files: Record<string, string | ArrayBuffer>;
}

/** See TrainerApi.retrainOnDrift. */
export async function retrainOnNewRows(
  c: RetrainContext,
  { input, file, files }: RetrainRequest,
  o: WorkerRetrainOptions,
): Promise<RetrainOutcome> {
  const format = fileFormat(c.data, "Retraining on new rows");
  const page = FineTuneJob.from(input, o.names).toJSON();
  if (page.method === "full")
    throw new ConfigError(
      "The settings say full fine-tuning, but retraining on new rows continues the adapter: choose LoRA.",
    );
  const job = FineTuneJob.from(
    retrainInput(page, file, format, c.reading, o),
    o.names,
  );
  if (!c.isLoaded(job.model))
    throw new ConfigError(
      `The job's model (${job.model.source}, ${job.model.quantize ?? job.model.dtype}) is not the loaded one, on which the adapter to retrain lives: load that model's settings again.`,
    );
  const saved = await c.peft.saveAdapter();
  const run = await c.runJob(
    job,
    { ...files, [file.name]: file.text },
    // The adapter the job continues is the active one, as it was saved above.
    async (source) => {
      if (source !== CURRENT_ADAPTER)
        throw new ConfigError(
          `The retraining job continues ${CURRENT_ADAPTER}, not ${source}.`,
        );
      return saved;
    },
  );
  // The new rows are not the task's data: the loaded splits stay what Evaluate and the baselines score.
  const outcome: RetrainOutcome = {
    job: run.job,
    train: run.train,
    sizes: {
      train: run.splits.train.length,
      // All held out, of which the first evaluation.testRows are scored.
      heldOut: run.splits.tasks[0]!.test.length,
      replay: run.splits.replay?.length ?? 0,
    },
  };
  if (c.control.stopRequested) return outcome;
  await c.peft.loadAdapter(RETRAIN_BEFORE, saved);
  try {
    return await scoreRetrained(c, run, { ...o, outcome, format });
  } finally {
    c.peft.deleteAdapter(RETRAIN_BEFORE);
  }
}

/**
 * The adapter as it was (loaded as RETRAIN_BEFORE) against the retrained one: on the held-out new rows (their
 * "after" scored by the run) and on the loaded test split (its first `evaluation.testRows`). Each pass can be
 * skipped; a stop skips the rest.
 */
async function scoreRetrained(
  c: RetrainContext,
  run: JobResult,
  o: WorkerRetrainOptions & { outcome: RetrainOutcome; format: DatasetFormat },
): Promise<RetrainOutcome> {
  const { control } = c;
  const labels =
    o.format === "classification"
      ? [...new Set([...(c.data.labels ?? []), ...(run.splits.labels ?? [])])]
      : undefined;
  const how = {
    format: o.format,
    labels,
    metric: o.metric,
    before: RETRAIN_BEFORE,
    resamples: o.resamples,
    seed: o.seed ?? run.job.training.seed,
  };
  const pass = async (
    rows: Example[],
    task: string,
    after?: EvaluationResult,
  ) => {
    if (rows.length === 0 || control.stopRequested) return undefined;
    const signal = control.startScoring();
    c.onEvent?.({
      type: "phase",
      phase: "checking retention",
      rows: rows.length,
      task,
    });
    try {
      return await scoreBeforeAfter(c.peft, c.tokenizer, rows, {
        ...how,
        after,
        signal,
      });
    } catch (error) {
      if (signal.aborted) return undefined;
      throw error;
    } finally {
      control.endScoring();
    }
  };
  const tuned = run.test.tuned;
  const heldOut = tuned?.rowScores
    ? await pass(run.splits.test, "held-out new rows", tuned)
    : undefined;
  const testRows = c.data.test.slice(
    0,
    run.job.evaluation.testRows ?? undefined,
  );
  const test = await pass(testRows, "the loaded test rows");
  return {
    ...o.outcome,
    ...(heldOut && {
      heldOut: {
        ...heldOut,
        before: withoutRows(heldOut.before),
        after: withoutRows(heldOut.after),
      },
    }),
    // The retrained adapter's rows on the loaded test split: the drift check's next baseline.
    ...(test && { test: { ...test, before: withoutRows(test.before) } }),
  };
}

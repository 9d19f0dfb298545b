/**
 * `webtune monitor --retrain`: the adapter goes on training on the new rows, as `webtune train --continue-from`
 * would. The job is the adapter's own webtune_job.json with the new file as its training data, a seeded (stratified)
 * share of it held out, the old training file replayed, and the old test file(s) scored before and after; it runs
 * through train.ts, so --out gets the adapter, its job and metrics.jsonl. The adapter as it was is then scored on the
 * same held-out rows, so that before and after are read on rows the retraining never saw.
 */
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  bootstrapDelta,
  ConfigError,
  evaluate,
  FineTuneJob,
  JOB_ADAPTER,
  metricRows,
  taskMetric,
  type DeltaInterval,
  type DriftMetric,
  type EvaluationResult,
  type FineTuneJobSpec,
  type JobFieldNames,
  type JobResult,
} from "@webtune/core";
import { FLAG_NAMES, JOB_FILE } from "./job_flags.js";
import { retrainTable, type BeforeAfter } from "./monitor_report.js";
import { checkOutFolder } from "./out_folder.js";
import { trainJob } from "./train.js";

/** --retrain's defaults: the share of the new rows held out, and of every batch replayed from the old training file. */
export const RETRAIN_DEFAULTS = { holdout: 0.3, replayRatio: 0.25 };

/** The flags --retrain reads (and `webtune monitor`'s --adapter, --data, --model, --seed and --resamples). */
export interface RetrainFlags {
  adapter?: string;
  data?: string;
  model?: string;
  seed?: number;
  resamples?: number;
  out?: string;
  replay?: string;
  replayRatio?: number;
  maxSteps?: number;
  lr?: number;
  holdout?: number;
}

/** How errors name a field of the adapter's job file. */
export function jobFileNames(path: string): JobFieldNames {
  return Object.fromEntries(
    Object.keys(FLAG_NAMES).map((field) => [field, `${field} in ${path}`]),
  );
}

/** What --retrain reports, in the JSON line. */
export interface Retrained {
  out: string;
  /** Before and after on the held-out new rows. */
  heldOut?: {
    rows: number;
    metric: DriftMetric;
    before: EvaluationResult;
    after: EvaluationResult;
    change: DeltaInterval;
  };
  /** Before and after on each old test file. */
  retention: {
    task: string;
    source: string;
    metric: DriftMetric;
    before: EvaluationResult;
    after: EvaluationResult;
  }[];
  /** The run's flat numbers, as `webtune train` prints them. */
  summary: Record<string, unknown>;
}

/** The adapter as it was, loaded beside the retrained one to score it on the held-out rows. */
const BEFORE = "monitor-before";

/** Read-only checks, before any scoring: --out, and the old files the job will read. */
export async function checkRetrain(
  o: RetrainFlags,
  job: FineTuneJobSpec | undefined,
): Promise<void> {
  if (!o.out)
    throw new ConfigError(
      "--retrain needs --out: the folder the retrained adapter, its webtune_job.json and metrics.jsonl go to.",
    );
  if (resolve(o.out) === resolve(o.adapter!))
    throw new ConfigError(
      `--out ${o.out} is the --adapter folder: retraining goes on from that adapter and must not replace it; choose another --out.`,
    );
  await checkOutFolder(o.out, {});
  const old = job!;
  const path = join(o.adapter!, JOB_FILE);
  if (o.replay === undefined && Array.isArray(old.data.train))
    throw new ConfigError(
      `${path} trained on several files (${old.data.train.join(", ")}): pass --replay <file> to name the one to replay.`,
    );
  const files: [string, string][] = [
    [
      o.replay ?? (old.data.train as string),
      o.replay ? "--replay" : `data.train in ${path}, replayed`,
    ],
    ...[old.data.test ?? []]
      .flat()
      .map((f): [string, string] => [
        f,
        `data.test in ${path}, scored before and after`,
      ]),
    ...(old.evaluation.reference
      ? [
          [old.evaluation.reference, `evaluation.reference in ${path}`] as [
            string,
            string,
          ],
        ]
      : []),
  ];
  for (const [file, what] of files)
    if (!(await stat(file).catch(() => undefined))?.isFile())
      throw new ConfigError(
        `--retrain reads ${file} (${what}), which is not a file here: run monitor from the folder the adapter was ` +
          `trained in${o.replay ? "" : ", or pass --replay <file>"}.`,
      );
  if (old.data.test === null)
    process.stderr.write(
      `note: ${path} names no test file (its test rows were a split of its training data), so what the retrained ` +
        "adapter kept of the old task is not scored.\n",
    );
}

/** The job that goes on training the adapter on --data, from the adapter's own job. */
export function retrainJob(o: RetrainFlags, old: FineTuneJobSpec): FineTuneJob {
  const path = join(o.adapter!, JOB_FILE);
  return FineTuneJob.from(
    {
      ...old,
      model: { ...old.model, source: o.model ?? old.model.source },
      data: {
        ...old.data,
        train: o.data,
        test: null,
        mix: null,
        testSplit: o.holdout ?? RETRAIN_DEFAULTS.holdout,
      },
      adapter: { ...old.adapter, continueFrom: o.adapter },
      training: {
        ...old.training,
        ...(o.maxSteps !== undefined ? { maxSteps: o.maxSteps } : {}),
        ...(o.lr !== undefined ? { learningRate: o.lr } : {}),
      },
      replay: {
        source: o.replay ?? (old.data.train as string),
        ratio: o.replayRatio ?? RETRAIN_DEFAULTS.replayRatio,
      },
      // The base model's score is no "before" here (the adapter as it was is, scored below); nor is a few-shot one.
      evaluation: {
        ...old.evaluation,
        retention: old.data.test,
        scoreBase: false,
        fewShot: null,
      },
    },
    {
      ...jobFileNames(path),
      "model.source": "--model",
      "data.train": "--data",
      "data.testSplit": "--holdout",
      "adapter.continueFrom": "--adapter",
      "replay.source": "--replay",
      "replay.ratio": "--replay-ratio",
      "training.maxSteps": "--max-steps",
      "training.learningRate": "--lr",
    },
  );
}

/** Retrains, prints before → after, and gives the numbers for the JSON line. */
export async function retrain(
  o: RetrainFlags,
  old: FineTuneJobSpec,
  metric: DriftMetric,
): Promise<Retrained> {
  const job = retrainJob(o, old);
  process.stderr.write(
    `retraining ${o.adapter} on ${o.data} (${Math.round(job.data.testSplit * 100)} % held out), replaying ` +
      `${job.replay.source} at ${job.replay.ratio}, into ${o.out}\n`,
  );
  const run = await trainJob(job, { out: o.out });
  try {
    const heldOut = await beforeAfter(run, o, metric);
    const retention = (run.retention ?? []).map((r) => ({
      task: r.task,
      source: r.source,
      metric: taskMetric(r.before),
      before: r.before,
      after: r.after,
    }));
    const lines: BeforeAfter[] = [
      ...(heldOut
        ? [
            {
              what: "held-out new rows",
              ...heldOut,
              before: value(heldOut.before, metric),
              after: value(heldOut.after, metric),
            },
          ]
        : []),
      ...retention.map((r) => ({
        what: `old test ${r.task}`,
        rows: r.before.rows,
        metric: r.metric,
        before: value(r.before, r.metric),
        after: value(r.after, r.metric),
      })),
    ];
    process.stdout.write(`${retrainTable(lines)}\n`);
    return { out: o.out!, heldOut, retention, summary: run.summary };
  } finally {
    run.peft.dispose();
    run.model.dispose();
  }
}

const value = (r: EvaluationResult, metric: DriftMetric) => r[metric];

/** The adapter as it was and the retrained one on the rows the run held out. */
async function beforeAfter(
  run: JobResult,
  o: RetrainFlags,
  metric: DriftMetric,
): Promise<Retrained["heldOut"]> {
  const rows = run.splits.test;
  const tuned = run.test.tuned;
  if (rows.length === 0 || !tuned?.rowScores) {
    process.stderr.write(
      "note: no held-out rows were scored (too few new rows for --holdout, or the run was stopped).\n",
    );
    return undefined;
  }
  await run.peft.loadAdapter(BEFORE, o.adapter!);
  run.peft.setAdapter(BEFORE);
  let before: EvaluationResult;
  try {
    before = await evaluate(run.peft, run.model.tokenizer!, rows, {
      format: run.splits.format,
      labels: run.splits.labels,
      keepRows: true,
    });
  } finally {
    run.peft.setAdapter(JOB_ADAPTER);
    run.peft.deleteAdapter(BEFORE);
  }
  const change = bootstrapDelta(
    metricRows(before.rowScores!, metric, "rows before"),
    metricRows(tuned.rowScores, metric, "rows after"),
    { seed: o.seed ?? 0, resamples: o.resamples ?? 2000 },
  );
  return {
    rows: rows.length,
    metric,
    before: withoutRows(before),
    after: withoutRows(tuned),
    change,
  };
}

/** A result without its row scores (the JSON line carries the numbers, not every row). */
export function withoutRows(r: EvaluationResult): EvaluationResult {
  const copy = { ...r };
  delete copy.rowScores;
  return copy;
}

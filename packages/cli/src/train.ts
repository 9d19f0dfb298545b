/**
 * `webtune train`: the flags (or a --job file) become a FineTuneJob, which runs; the adapter (or the full model),
 * the job itself and metrics.jsonl go to --out.
 */
import { appendFile, readFile } from "node:fs/promises";
import {
  ConfigError,
  DivergenceError,
  directoryStore,
  JobControl,
  saveAdapterToDirectory,
  savePretrainedToDirectory,
  writeFilesAtomically,
  augmentedRecords,
  type AugmentReport,
  type EvaluationResult,
  type DataEvent,
  type FineTuneJob,
  type JobEvent,
  type JobResult,
} from "@webtune/core";
import { DATA_FLAG_NAMES } from "./common.js";
import {
  FLAG_NAMES,
  JOB_FILE,
  buildJob,
  type RecipeFlags,
} from "./job_flags.js";
import {
  AUGMENTED,
  abandonRun,
  checkApartFromModel,
  checkOutFolder,
  checkpointStep,
  startRun,
} from "./out_folder.js";
import { progress } from "./progress.js";

export { JOB_FILE };

export interface TrainFlags extends RecipeFlags {
  out?: string;
  job?: string;
  printJob?: boolean;
  overwrite?: boolean;
  resume?: string;
}

/** How a surface names the Trainer's and dataset reader's options: by the flags that set them. */
const TRAINER_NAMES = {
  learningRate: "--lr",
  warmupSteps: "--warmup",
  float16: "--dtype float16",
  nf4: "--quantize nf4",
  nf4DoubleQuant: "--quantize nf4 --double-quant",
  gradientCheckpointing: "--gradient-checkpointing",
};
/** The Trainer's divergence, told with the CLI's flags, and what is left in --out. */
function diverged(
  e: DivergenceError,
  job: FineTuneJob,
  out: string,
): DivergenceError {
  const show = (v: number) => (Number.isFinite(v) ? v.toPrecision(4) : v);
  const every = job.checkpointEvery;
  const kept =
    every && e.step > every
      ? ` Checkpoints up to step ${Math.floor((e.step - 1) / every) * every} are kept in ${out}/checkpoints.`
      : "";
  return new DivergenceError(
    `training diverged at step ${e.step}: the loss is ${show(e.loss)} and the gradient norm ${show(e.gradNorm)}. The learning ` +
      `rate is probably too high: run again with --lr ${e.suggestedLearningRate} (a tenth of ${e.learningRate})` +
      `${job.training.warmupSteps === 0 ? ", and a --warmup of about 5% of the steps" : ""}, with --overwrite to replace this run. ` +
      `No adapter was written (one already in ${out} is left as it was); metrics.jsonl has the steps before.${kept}`,
    e,
  );
}

export async function trainCommand(o: TrainFlags): Promise<void> {
  const job = await buildJob(o, o.job);
  if (o.printJob) {
    process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
    return;
  }
  const run = await trainJob(job, o);
  process.stdout.write(`${JSON.stringify({ ...run.summary, out: o.out })}\n`);
  run.peft.dispose();
  run.model.dispose();
}

/**
 * Runs a checked job as `webtune train` does: checks --out, writes metrics.jsonl as it goes, then the adapter (or
 * model) and the job, and prints the test tables. The caller disposes the run's model and adapter (`webtune monitor
 * --retrain` runs its job through here too).
 */
export async function trainJob(
  job: FineTuneJob,
  o: TrainFlags,
): Promise<JobResult> {
  if (!o.out)
    throw new ConfigError(
      "--out is needed: the folder the adapter, the job and metrics.jsonl go to.",
    );
  const out = o.out;
  const full = job.method === "full";
  // Read-only checks of --out; nothing is written there until the job, the model and the data are checked.
  if (full) await checkApartFromModel(out, job.model.source);
  const plan = await checkOutFolder(out, o);
  const resume = o.resume ? await latestCheckpoint(o.resume) : undefined;

  const metrics = `${out}/metrics.jsonl`;
  let writes = Promise.resolve();
  let trainerLogged = false;
  let bar: ReturnType<typeof progress> | undefined;
  const onEvent = (e: JobEvent) => {
    if (e.type === "phase") {
      if (e.phase !== "training")
        process.stderr.write(
          `${e.phase}${e.rows ? ` (${e.rows} rows)` : ""}…\n`,
        );
      return;
    }
    if (e.type === "data") return dataLines(e, job);
    if (e.type === "step" || e.type === "eval") {
      trainerLogged = true;
      bar?.event(e);
    }
    writes = writes.then(() => appendFile(metrics, `${JSON.stringify(e)}\n`));
  };
  const run = await job
    .run({
      readFile: (path, field) =>
        readFile(path).catch((e: NodeJS.ErrnoException) => {
          throw new ConfigError(
            `cannot read ${FLAG_NAMES[field]} ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}.`,
          );
        }),
      names: o.job ? undefined : FLAG_NAMES,
      trainerNames: TRAINER_NAMES,
      dataNames: DATA_FLAG_NAMES,
      control: new JobControl(),
      checkpoints: directoryStore(`${out}/checkpoints`),
      resume,
      // Everything is checked: only now is --out created and metrics.jsonl started (or, resuming, kept to the checkpoint).
      beforeRun: async ({ trainable, steps }) => {
        await startRun(plan, resume && checkpointStep(resume, o.resume!));
        process.stderr.write(`${trainable}\n`);
        bar = progress(steps);
      },
      onEvent,
    })
    .catch(async (error: unknown) => {
      bar?.stop();
      await writes;
      // Refused before its first step (the job's or the Trainer's own checks): --out is left as it was found.
      if (!trainerLogged) await abandonRun(plan);
      throw error instanceof DivergenceError
        ? diverged(error, job, out)
        : error;
    });
  bar?.stop();
  await writes;
  if (full) await savePretrainedToDirectory(run.model, out);
  else await saveAdapterToDirectory(await run.peft.saveAdapter(), out);
  const augmented = augmentedRecords(run.splits);
  await writeFilesAtomically(
    out,
    [
      [JOB_FILE, `${JSON.stringify(run.job, null, 2)}\n`],
      ...(augmented.length > 0
        ? [
            [
              AUGMENTED,
              augmented.map((r) => `${JSON.stringify(r)}\n`).join(""),
            ] as [string, string],
          ]
        : []),
    ],
    "the job",
  );
  for (const t of run.tasks)
    if (t.base && t.tuned)
      process.stderr.write(
        testTable(
          run.tasks.length > 1 ? `test: ${t.name}` : "test",
          t.base,
          t.tuned,
          t.majorityAccuracy,
          ["base", "tuned"],
          t.fewShot && t.fewShotReport
            ? {
                name: `${t.fewShotReport.k}-shot`,
                result: t.fewShot,
                note: `${t.fewShotReport.k}-shot prompts: ${Math.round(t.fewShotReport.promptTokens.mean)} tokens on average, ${t.fewShotReport.promptTokens.max} at most`,
              }
            : undefined,
        ),
      );
  for (const r of run.retention ?? [])
    process.stderr.write(
      testTable(`kept: ${r.task}`, r.before, r.after, undefined, [
        "before",
        "after",
      ]),
    );
  if (run.forgetting)
    process.stderr.write(
      `${"reference".padEnd(12)}${run.forgetting.base_loss.toFixed(4).padStart(10)}${run.forgetting.tuned_loss.toFixed(4).padStart(10)}` +
        `  (loss on general text: ${run.forgetting.loss_delta >= 0 ? "+" : ""}${run.forgetting.loss_delta.toFixed(2)} nats)\n`,
    );
  return run;
}

/** The cleaning report, and a warning when test rows are in the training data too. */
function dataLines(e: DataEvent, job: FineTuneJob): void {
  const r = e.report;
  process.stderr.write(
    `data: ${e.format}, ${r.kept} of ${r.total} rows kept (empty ${r.dropped.empty}, duplicate ${r.dropped.duplicate}, ` +
      `too long ${r.dropped.tooLong}, malformed ${r.dropped.malformed}; truncated ${r.truncated}); ` +
      `${e.sizes.train} train, ${e.sizes.val} validation, ${e.sizes.test} test\n`,
  );
  if (r.augmented) process.stderr.write(augmentLine(r.augmented));
  if (e.promptTemplate)
    process.stderr.write(
      `prompt template: ${JSON.stringify(e.promptTemplate)}\n`,
    );
  for (const t of e.tasks ?? [])
    process.stderr.write(
      `  task ${t.name}: ${t.format}, ${t.sizes.train} train, ${t.sizes.val} validation, ${t.sizes.test} test\n`,
    );
  if (e.replayRows)
    process.stderr.write(
      `replay: ${e.replayRows} rows of ${job.replay.source}, ${Math.round(job.replay.ratio * 100)}% of every batch\n`,
    );
  if (e.overlap.rows > 0) {
    const file = job.data.test
      ? `--test ${String(job.data.test)}`
      : `--data ${String(job.data.train)}`;
    const more = e.overlap.rows > e.overlap.lines.length ? ", ..." : "";
    process.stderr.write(
      `warning: ${e.overlap.rows} of ${e.sizes.test} test rows are also in the training data (${file}, lines ` +
        `${e.overlap.lines.join(", ")}${more}); the test scores overstate how well the model generalizes. Remove them ` +
        "from one of the files.\n",
    );
  }
}

/** What augmentation added: rows by kind, the paraphrase filter, and what cleaning dropped. */
function augmentLine(a: AugmentReport): string {
  const p = a.paraphrases;
  const rejected = Object.entries(p.rejected)
    .map(([why, n]) => `${why} ${n}`)
    .join(", ");
  const dropped = Object.entries(a.dropped)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${why} ${n}`)
    .join(", ");
  return (
    `augmented: ${a.added} rows added to ${a.sourceRows} training rows (eda made ${a.eda}` +
    `${p.sampled > 0 ? `; paraphrases kept ${p.kept} of ${p.sampled} sampled${rejected ? `, rejected: ${rejected}` : ""}` : ""})` +
    `${dropped ? `; dropped ${dropped}` : ""}\n`
  );
}

async function latestCheckpoint(
  dir: string,
): Promise<Record<string, Uint8Array>> {
  const store = directoryStore(dir);
  const names = await store.list();
  if (names.length === 0)
    throw new ConfigError(`--resume ${dir} holds no complete checkpoint.`);
  process.stderr.write(`resuming from ${dir}/${names.at(-1)}\n`);
  return store.load(names.at(-1)!);
}

/** Two sets of metrics side by side (base and tuned, or an earlier task's before and after), for the terminal. */
function testTable(
  title: string,
  base: EvaluationResult,
  tuned: EvaluationResult,
  majority: number | undefined,
  columns = ["base", "tuned"],
  /** A third column between them: the few-shot baseline. */
  extra?: { name: string; result: EvaluationResult; note: string },
): string {
  const keys = ["loss", "perplexity", "exactMatch", "accuracy", "f1"] as const;
  const fmt = (v: number | undefined) =>
    (v === undefined ? "–" : v.toFixed(4)).padStart(10);
  const lines = [
    `${title.padEnd(12)}${columns[0]!.padStart(10)}${extra ? extra.name.padStart(10) : ""}${columns[1]!.padStart(10)}`,
  ];
  for (const k of keys) {
    const [b, t] = [base[k], tuned[k]];
    if (typeof b === "number" && typeof t === "number")
      lines.push(
        `${k.padEnd(12)}${fmt(b)}${extra ? fmt(extra.result[k]) : ""}${fmt(t)}`,
      );
  }
  const types = Object.keys(tuned.entities?.perType ?? {});
  for (const type of types)
    lines.push(
      `${`f1 ${type}`.padEnd(12)}${fmt(base.entities?.perType[type]?.f1)}${extra ? "–".padStart(10) : ""}${fmt(tuned.entities!.perType[type]!.f1)}`,
    );
  if (majority !== undefined)
    lines.push(
      `${"majority".padEnd(12)}${fmt(majority)}${extra ? fmt(majority) : ""}${fmt(majority)}`,
    );
  if (extra) lines.push(extra.note);
  return `${lines.join("\n")}\n`;
}

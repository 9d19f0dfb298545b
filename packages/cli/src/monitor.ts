/**
 * `webtune monitor`: a trained adapter after deployment. Its scores on new labelled rows are read against the scores
 * its training run recorded on its test rows (metrics.jsonl's last tuned test event, row by row): the task metric's
 * change with a bootstrap interval, the input lengths (KS) and the label mixes (chi-square), a table, the flags in
 * words, then one JSON line. Exit code 0 whatever it finds (3 on drift with --fail-on-drift). With --retrain the
 * adapter goes on training on the new rows, with replay of its old training file (monitor_retrain.ts).
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  ConfigError,
  driftReport,
  evaluate,
  FineTuneJob,
  fitsPromptTemplate,
  JOB_DEFAULTS,
  readBaselineMetrics,
  type BaselineMetrics,
  type DriftReport,
  type EvaluationResult,
  type FineTuneJobSpec,
} from "@webtune/core";
import { loadForCommand, readDataset } from "./common.js";
import { EMBEDDED_MODEL } from "./embedded.js";
import { JOB_FILE } from "./job_flags.js";
import { driftTable, flagLines } from "./monitor_report.js";
import {
  checkRetrain,
  jobFileNames,
  retrain,
  withoutRows,
  type Retrained,
  type RetrainFlags,
} from "./monitor_retrain.js";
import { METRICS } from "./out_folder.js";

export interface MonitorFlags extends RetrainFlags {
  baseline?: string;
  baselineTask?: string;
  format?: string;
  seqLen?: number;
  failOnDrift?: boolean;
  retrain?: boolean;
}

/** The exit code --fail-on-drift asks for when something moved. */
export const DRIFT_EXIT_CODE = 3;

/** Runs the command; resolves to its exit code. */
export async function monitorCommand(o: MonitorFlags): Promise<number> {
  if (!o.adapter)
    throw new ConfigError(
      "--adapter is needed: the folder `webtune train` wrote the adapter to (its webtune_job.json and metrics.jsonl are the baseline).",
    );
  if (!o.data)
    throw new ConfigError(
      "--data is needed: a file of new labelled rows, in the format the adapter was trained on.",
    );
  if (o.resamples !== undefined && o.resamples < 1)
    throw new ConfigError(
      `--resamples is ${o.resamples}; the bootstrap needs at least 1 (default 2000).`,
    );
  const adapter = o.adapter;
  const job = await adapterJob(adapter, o);
  if (o.retrain) await checkRetrain(o, job);
  else checkNoRetrainFlags(o);
  const baseline = await readBaseline(o, adapter);

  const { report, current, misfits } = await scoreNewRows(
    o,
    adapter,
    job,
    baseline,
  );
  process.stdout.write(
    `${driftTable(report, baseline)}\n${flagLines(report).join("\n")}\n`,
  );
  let retrained: Retrained | undefined;
  if (o.retrain) retrained = await retrain(o, job!, baseline.metric);
  process.stdout.write(
    `${JSON.stringify({
      adapter,
      data: o.data,
      baseline: {
        source: baseline.source,
        line: baseline.line,
        step: baseline.step,
        ...(baseline.task ? { task: baseline.task } : {}),
      },
      current,
      ...(misfits ? { promptTemplateMisfits: misfits } : {}),
      ...report,
      ...(retrained ? { retrain: retrained } : {}),
    })}\n`,
  );
  return report.driftFlagged && o.failOnDrift ? DRIFT_EXIT_CODE : 0;
}

/** The adapter's scores on --data, row by row, and the drift report against the baseline. */
async function scoreNewRows(
  o: MonitorFlags,
  adapter: string,
  job: FineTuneJobSpec | undefined,
  baseline: BaselineMetrics,
): Promise<{
  report: DriftReport;
  current: EvaluationResult;
  misfits: number | undefined;
}> {
  const data = o.data!;
  const source = o.model ?? job?.model.source ?? EMBEDDED_MODEL;
  const { model, peft } = await loadForCommand(source, adapter, {
    dtype: job?.model.dtype,
    quantize: job?.model.quantize ?? undefined,
    doubleQuant: job?.model.doubleQuant,
  });
  try {
    if (model.lm.taskHead) throw headError(adapter, model.lm.taskHead.task);
    const rows = await readDataset(data, model, {
      format: o.format ?? job?.data.format ?? undefined,
      seqLen: o.seqLen ?? job?.data.maxLength ?? JOB_DEFAULTS.data.maxLength,
      evaluation: true,
      skipBadRows: job?.data.skipBadRows,
    });
    checkFormat(baseline, rows.format, data);
    const kept = rows.report;
    // Rows dropped here are not compared: say so, since long ones dropped bias the length comparison.
    if (kept.kept < kept.total)
      process.stderr.write(
        `data: ${kept.kept} of ${kept.total} rows of ${data} kept (empty ${kept.dropped.empty}, too long ` +
          `${kept.dropped.tooLong}, malformed ${kept.dropped.malformed}; truncated ${kept.truncated})\n`,
      );
    const misfits = templateMisfits(job, rows.examples);
    // The labels the adapter could answer: those of its test rows (true and predicted) and the new rows'.
    const labels = [
      ...new Set([
        ...baseline.rowScores.flatMap((r) => [r.label, r.predicted]),
        ...(rows.labels ?? []),
      ]),
    ]
      .filter((l): l is string => l !== undefined)
      .sort();
    const scored = await evaluate(peft, model.tokenizer!, rows.examples, {
      format: rows.format,
      labels,
      keepRows: true,
    });
    const report = driftReport(baseline.rowScores, scored.rowScores!, {
      metric: baseline.metric,
      seed: o.seed ?? 0,
      resamples: o.resamples ?? 2000,
    });
    return { report, current: withoutRows(scored), misfits };
  } finally {
    peft.dispose();
    model.dispose();
  }
}

/**
 * The job `webtune train` saved beside the adapter, checked and with defaults filled in; undefined when there is
 * none and --format and --baseline say what it would have. Head adapters and full models are refused.
 */
async function adapterJob(
  adapter: string,
  o: MonitorFlags,
): Promise<FineTuneJobSpec | undefined> {
  const kind = await stat(adapter).catch(() => undefined);
  if (!kind?.isDirectory())
    throw new ConfigError(
      `--adapter ${adapter}: ${kind ? "is a file" : "no such folder"}; give the folder webtune train wrote the adapter to.`,
    );
  const path = join(adapter, JOB_FILE);
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) {
    if (o.format !== undefined && o.baseline !== undefined && !o.retrain)
      return undefined;
    throw new ConfigError(
      `--adapter ${adapter} has no ${JOB_FILE}: it was not trained by \`webtune train\`, so how its rows were read ` +
        `and scored is unknown. Pass --format and --baseline <metrics.jsonl> explicitly${o.retrain ? " (and leave --retrain out)" : ""}, ` +
        "or retrain it with webtune train.",
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not JSON: ${(e as Error).message}.`);
  }
  const job = FineTuneJob.from(parsed, jobFileNames(path)).toJSON();
  if (job.method === "full")
    throw new ConfigError(
      `--adapter ${adapter} holds a fully fine-tuned model (method "full" in ${JOB_FILE}), not an adapter: monitoring it is not supported yet.`,
    );
  if (job.adapter.task !== "causal-lm")
    throw headError(adapter, job.adapter.task);
  return job;
}

function headError(adapter: string, task: string): ConfigError {
  return new ConfigError(
    `--adapter ${adapter} answers with a ${task} head: monitoring head adapters (seq-cls, token-cls) is not supported yet.`,
  );
}

/** Flags that only --retrain reads, given without it. */
function checkNoRetrainFlags(o: MonitorFlags): void {
  const given = (
    [
      ["--out", o.out],
      ["--replay", o.replay],
      ["--replay-ratio", o.replayRatio],
      ["--max-steps", o.maxSteps],
      ["--lr", o.lr],
      ["--holdout", o.holdout],
    ] as const
  ).filter(([, v]) => v !== undefined);
  if (given.length > 0)
    throw new ConfigError(
      `${given.map(([f]) => f).join(", ")} ${given.length > 1 ? "are" : "is"} read only with --retrain: add --retrain to train the adapter on --data, or leave ${given.length > 1 ? "them" : "it"} out.`,
    );
}

/** The baseline: --baseline, or the metrics.jsonl beside the adapter. */
async function readBaseline(
  o: MonitorFlags,
  adapter: string,
): Promise<BaselineMetrics> {
  const path = o.baseline ?? join(adapter, METRICS);
  const text = await readFile(path, "utf8").catch(
    (e: NodeJS.ErrnoException) => {
      const why = e.code === "ENOENT" ? "no such file" : e.message;
      throw new ConfigError(
        o.baseline
          ? `cannot read --baseline ${path}: ${why}.`
          : `--adapter ${adapter} has no ${METRICS} (${why}): pass --baseline <the metrics.jsonl of the run that trained it>.`,
      );
    },
  );
  try {
    return readBaselineMetrics(text, path, { task: o.baselineTask });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new ConfigError(
      `${e.message} ${/several tasks/.test(e.message) ? "Pass --baseline-task <name>." : "Pass it with --baseline <metrics.jsonl>."}`,
    );
  }
}

/** The new rows must be scored as the baseline was: classification for accuracy, instruction for exact match. */
function checkFormat(
  baseline: BaselineMetrics,
  format: string,
  file: string,
): void {
  const needs =
    baseline.metric === "accuracy"
      ? "classification"
      : baseline.metric === "exactMatch"
        ? "instruction"
        : undefined;
  if (needs && format !== needs)
    throw new ConfigError(
      `--data ${file} reads as ${format} rows, but the adapter's test rows were ${needs} rows (scored by ` +
        `${baseline.metric} in ${baseline.source}): give ${needs} rows${needs === "classification" ? ' ({"text","label"})' : ' ({"prompt","completion"})'}, or --format ${needs}.`,
    );
}

/** Instruction rows whose prompt is not in the shape of the adapter's prompt template: reported, not refused. */
function templateMisfits(
  job: FineTuneJobSpec | undefined,
  rows: { prompt?: string }[],
): number | undefined {
  const template = job?.data.promptTemplate;
  if (!template) return undefined;
  const misfits = rows.filter(
    (r) => r.prompt !== undefined && !fitsPromptTemplate(template, r.prompt),
  ).length;
  if (misfits > 0)
    process.stderr.write(
      `note: ${misfits} of ${rows.length} rows have prompts not shaped like the adapter's template ${JSON.stringify(template)}\n`,
    );
  return misfits;
}

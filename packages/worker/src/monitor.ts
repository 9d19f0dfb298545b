/**
 * Monitoring in the worker, as `webtune monitor` does it in Node: new labelled rows read as the loaded data was,
 * scored by the adapter row by row and compared with its test scores from training (core's driftReport).
 * Retraining on them is retrain.ts.
 */
import {
  buildDataset,
  ConfigError,
  derivePromptTemplate,
  driftReport,
  evaluate,
  fitsPromptTemplate,
  JOB_DEFAULTS,
  type Dataset,
  type DatasetFormat,
  type DriftMetric,
  type EvaluationResult,
  type FineTuneJobSpec,
  type LoraModel,
  type OptionNames,
  type PretrainedModel,
} from "@webtune/core";
import type {
  DataOptions,
  DriftBaseline,
  MonitorResult,
  NewRowsFile,
  WorkerMonitorOptions,
} from "./api.js";
import type { LoadedData } from "./data.js";

/** How the loaded data was read, which new rows are read the same way. */
export interface DataReading {
  /** The training file(s), by the names the loaded data (or job) gave them. */
  source: string | string[];
  maxLength: number;
  skipBadRows: boolean;
  /** The template of the job's prompts; undefined: derived from the loaded training prompts when asked. */
  promptTemplate?: string | null;
}

/** How loadData's options read data. */
export function readingOf(o: DataOptions): DataReading {
  return {
    source: o.source,
    maxLength: o.maxLength ?? JOB_DEFAULTS.data.maxLength,
    skipBadRows: o.skipBadRows ?? false,
  };
}

/** How a job that ran read its data (its prompt template filled in). */
export function jobReading(job: FineTuneJobSpec): DataReading {
  return {
    source: job.data.train,
    maxLength: job.data.maxLength,
    skipBadRows: job.data.skipBadRows,
    promptTemplate: job.data.promptTemplate,
  };
}

/** The loaded data's file format; a ConfigError for tagged words, which have no drift metric here. */
export function fileFormat(data: LoadedData, what: string): DatasetFormat {
  if (data.format === "tagged")
    throw new ConfigError(
      `${what} is not supported for token classification (words and their tags) yet: its rows have no text answer to score.`,
    );
  return data.format;
}

/** `file`'s rows, read as the loaded data was: its format, max tokens, truncation and bad-row policy; every row kept. */
export function readNewRows(
  file: NewRowsFile,
  format: DatasetFormat,
  reading: DataReading,
  model: Pick<PretrainedModel, "tokenizer" | "dims">,
  optionNames?: Partial<OptionNames>,
): Dataset {
  const text =
    typeof file.text === "string" ? file.text : new Uint8Array(file.text);
  return buildDataset(text, model.tokenizer!, {
    source: file.name,
    format,
    maxLength: reading.maxLength,
    truncate: true,
    // Scored rows, not training rows: every row counts, as in a test file.
    dedupe: false,
    onError: reading.skipBadRows ? "skip" : "throw",
    vocabSize: model.dims.vocabSize,
    optionNames,
  });
}

/** The prompt template the adapter was trained with: the job's, else the one the loaded training prompts share. */
function promptTemplateOf(
  data: LoadedData,
  reading: DataReading,
): string | null {
  if (data.format !== "instruction") return null;
  if (reading.promptTemplate !== undefined) return reading.promptTemplate;
  return derivePromptTemplate(data.train.map((e) => e.prompt ?? ""));
}

/** What the monitor scores and with what: the worker's model, adapter and loaded data. */
export interface MonitorContext {
  peft: LoraModel;
  model: PretrainedModel;
  data: LoadedData;
  reading: DataReading;
  signal?: AbortSignal;
}

/** The adapter's scores on the new rows against the baseline (see TrainerApi.monitor). */
export async function monitorNewRows(
  c: MonitorContext,
  file: NewRowsFile,
  baseline: DriftBaseline,
  o: WorkerMonitorOptions = {},
): Promise<MonitorResult> {
  checkBaseline(baseline);
  const format = fileFormat(c.data, "Monitoring");
  const rows = readNewRows(file, format, c.reading, c.model, o.optionNames);
  checkMetricFormat(baseline.metric, format, file.name);
  const scored = rows.examples.slice(0, o.maxRows);
  const template = promptTemplateOf(c.data, c.reading);
  const misfits = template
    ? scored.filter(
        (r) =>
          r.prompt !== undefined && !fitsPromptTemplate(template, r.prompt),
      ).length
    : 0;
  const current = await evaluate(c.peft, c.model.tokenizer!, scored, {
    format,
    labels: answerLabels(baseline, c.data, rows.labels),
    signal: c.signal,
    keepRows: true,
  });
  const report = driftReport(baseline.rowScores, current.rowScores!, {
    metric: baseline.metric,
    seed: o.seed ?? 0,
    resamples: o.resamples ?? 2000,
    alpha: o.alpha,
  });
  return {
    report,
    current: withoutRows(current),
    read: rows.report,
    format,
    promptTemplate: template,
    misfits,
  };
}

/**
 * The labels the adapter can answer: the loaded data's, those of its test rows (true and predicted) and the new
 * rows' (a label new to the adapter is then one it could never answer, which the scores show).
 */
function answerLabels(
  baseline: DriftBaseline,
  data: LoadedData,
  fresh: string[] | undefined,
): string[] | undefined {
  if (data.format !== "classification") return undefined;
  return [
    ...new Set([
      ...(data.labels ?? []),
      ...baseline.rowScores.flatMap((r) => [r.label, r.predicted]),
      ...(fresh ?? []),
    ]),
  ]
    .filter((l): l is string => l !== undefined)
    .sort();
}

function checkBaseline(baseline: DriftBaseline): void {
  if (!Array.isArray(baseline?.rowScores) || baseline.rowScores.length === 0)
    throw new ConfigError(
      "The drift baseline has no rows: give the tuned adapter's test scores with their rowScores (a job's tuned test event, or evaluate with keepRows).",
    );
  if (!["accuracy", "exactMatch", "loss"].includes(baseline.metric))
    throw new ConfigError(
      `The drift baseline's metric is ${JSON.stringify(baseline.metric)}; expected "accuracy", "exactMatch" or "loss".`,
    );
}

/** Accuracy needs classification rows, exact match instruction rows; the loss any. */
function checkMetricFormat(
  metric: DriftMetric,
  format: DatasetFormat,
  file: string,
): void {
  const needs =
    metric === "accuracy"
      ? "classification"
      : metric === "exactMatch"
        ? "instruction"
        : undefined;
  if (needs && format !== needs)
    throw new ConfigError(
      `${file} reads as ${format} rows, but the drift check compares ${metric === "accuracy" ? "accuracy" : "exact match"}, which ${needs} rows have: compare on the loss instead.`,
    );
}

/** A result without its row scores (what crosses to the page when it needs the numbers alone). */
export function withoutRows(r: EvaluationResult): EvaluationResult {
  const copy = { ...r };
  delete copy.rowScores;
  return copy;
}

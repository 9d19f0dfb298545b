/**
 * Drift after deployment: a trained adapter's scores on new labelled rows read against the scores its training run
 * recorded on its test rows (evaluate's `rowScores`). The task metric's change with a bootstrap interval, the shift
 * of the input lengths (Kolmogorov–Smirnov) and of the true and predicted label mixes (chi-square), and flags in
 * words for what moved. Pure: no model, no files (the caller reads metrics.jsonl and hands over its text).
 */
import { ConfigError, FormatError } from "../errors.js";
import type { RowScore } from "./evaluate.js";
import {
  bootstrapDelta,
  chiSquareHomogeneity,
  ksTwoSample,
  quantile,
  type ChiSquareTest,
  type DeltaInterval,
  type KsTest,
  type RatioRow,
} from "./drift_stats.js";

/** The task metric compared: classification's accuracy, instruction's exact match, or the loss per token. */
export type DriftMetric = "accuracy" | "exactMatch" | "loss";

/** The metric's change from the training run's test rows to the new rows. */
export interface MetricDrift extends DeltaInterval {
  metric: DriftMetric;
  /** It got worse (accuracy or exact match fell, loss rose) and the interval leaves 0 out. */
  worse: boolean;
}

/** Mean, median and 90th percentile of the rows' input tokens. */
export interface LengthSummary {
  rows: number;
  mean: number;
  median: number;
  p90: number;
}

export interface LengthShift {
  baseline: LengthSummary;
  current: LengthSummary;
  ks: KsTest;
}

/** How a label mix moved: each side's counts and shares, their total variation distance and a chi-square test. */
export interface LabelShift {
  counts: { baseline: Record<string, number>; current: Record<string, number> };
  shares: { baseline: Record<string, number>; current: Record<string, number> };
  /** ½ Σ |share now − share then|: 0 for the same mix, 1 for mixes with no label in common. */
  totalVariation: number;
  chiSquare: ChiSquareTest;
  /** Labels seen on one side only. */
  onlyInBaseline: string[];
  onlyInCurrent: string[];
}

export interface DriftReport {
  rows: { baseline: number; current: number };
  metric: MetricDrift;
  inputLength: LengthShift;
  /** Classification: the true labels' mix, and the mix the adapter predicts. */
  labels?: LabelShift;
  predicted?: LabelShift;
  /** Below this p-value a length or label test counts as moved. */
  alpha: number;
  /** What moved, in words ("accuracy fell 12.3 points (95 % CI −18.1 to −6.0)"); empty when nothing did. */
  flags: string[];
  driftFlagged: boolean;
}

export interface DriftOptions {
  metric: DriftMetric;
  /** Bootstrap resamples (default 2000), interval confidence (default 0.95) and seed (default 0). */
  resamples?: number;
  confidence?: number;
  seed?: number;
  /** A length or label test below this p-value is flagged. Default 0.01. */
  alpha?: number;
}

/**
 * Compares the rows a training run scored (`baseline`) with the same adapter's scores on new rows (`current`).
 *
 * @example
 * ```ts
 * const base = readBaselineMetrics(await readFile("run/metrics.jsonl", "utf8"), "run/metrics.jsonl");
 * const now = await evaluate(peft, tokenizer, newRows, { format: "classification", labels, keepRows: true });
 * const report = driftReport(base.rowScores, now.rowScores!, { metric: base.metric, seed: 0 });
 * if (report.driftFlagged) console.log(report.flags.join("\n"));
 * ```
 */
export function driftReport(
  baseline: readonly RowScore[],
  current: readonly RowScore[],
  options: DriftOptions,
): DriftReport {
  const { metric, alpha = 0.01 } = options;
  if (!(alpha > 0 && alpha < 1))
    throw new ConfigError(
      `alpha is ${alpha}; expected a p-value threshold in (0, 1), e.g. 0.01.`,
    );
  const delta = bootstrapDelta(
    metricRows(baseline, metric, "baseline"),
    metricRows(current, metric, "current"),
    options,
  );
  const higherIsBetter = metric !== "loss";
  const worse =
    (higherIsBetter ? delta.high < 0 : delta.low > 0) && delta.delta !== 0;
  const report: DriftReport = {
    rows: { baseline: baseline.length, current: current.length },
    metric: { metric, ...delta, worse },
    inputLength: lengthShift(
      baseline.map((r) => r.inputTokens),
      current.map((r) => r.inputTokens),
    ),
    alpha,
    flags: [],
    driftFlagged: false,
  };
  const truth = (rows: readonly RowScore[], key: "label" | "predicted") =>
    rows.flatMap((r) => (r[key] === undefined ? [] : [r[key]]));
  for (const key of ["label", "predicted"] as const) {
    const [a, b] = [truth(baseline, key), truth(current, key)];
    if (a.length > 0 && b.length > 0)
      report[key === "label" ? "labels" : "predicted"] = labelShift(a, b);
  }
  report.flags = driftFlags(report);
  report.driftFlagged = report.flags.length > 0;
  return report;
}

/** The rows as a ratio metric's numerators and denominators; a row without the metric is an error naming it. */
export function metricRows(
  rows: readonly RowScore[],
  metric: DriftMetric,
  side = "rows",
): RatioRow[] {
  if (metric === "loss")
    return rows.map((r) => ({ num: r.nll, den: r.tokens }));
  const scored = rows.filter((r) => r.correct !== undefined);
  if (scored.length === 0)
    throw new ConfigError(
      `the ${side} have no ${metric === "accuracy" ? "accuracy" : "exact match"} (${rows.length} rows, none with ` +
        `\`correct\`): they were not scored as ${metric === "accuracy" ? "classification" : "instruction"} rows. ` +
        'Compare them on "loss", or score rows of the same format as the baseline.',
    );
  return scored.map((r) => ({ num: r.correct!, den: 1 }));
}

/** The task metric a result reports: accuracy, else exact match, else the loss. */
export function taskMetric(result: {
  accuracy?: number;
  exactMatch?: number;
}): DriftMetric {
  return result.accuracy !== undefined
    ? "accuracy"
    : result.exactMatch !== undefined
      ? "exactMatch"
      : "loss";
}

/** Both sides' input lengths summarised, and their Kolmogorov–Smirnov test. */
export function lengthShift(
  baseline: readonly number[],
  current: readonly number[],
): LengthShift {
  return {
    baseline: summary(baseline),
    current: summary(current),
    ks: ksTwoSample(baseline, current),
  };
}

function summary(values: readonly number[]): LengthSummary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    rows: values.length,
    mean: values.reduce((s, v) => s + v, 0) / values.length,
    median: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
  };
}

/** Two label mixes compared: counts, shares, total variation distance and the chi-square test of homogeneity. */
export function labelShift(
  baseline: readonly string[],
  current: readonly string[],
): LabelShift {
  const [a, b] = [countOf(baseline), countOf(current)];
  const labels = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const share = (c: Record<string, number>, n: number) =>
    Object.fromEntries(labels.map((l) => [l, (c[l] ?? 0) / n]));
  const shares = {
    baseline: share(a, baseline.length),
    current: share(b, current.length),
  };
  return {
    counts: { baseline: a, current: b },
    shares,
    totalVariation:
      labels.reduce(
        (s, l) => s + Math.abs(shares.current[l]! - shares.baseline[l]!),
        0,
      ) / 2,
    chiSquare: chiSquareHomogeneity(a, b),
    onlyInBaseline: labels.filter((l) => b[l] === undefined),
    onlyInCurrent: labels.filter((l) => a[l] === undefined),
  };
}

function countOf(labels: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const l of labels) counts[l] = (counts[l] ?? 0) + 1;
  return counts;
}

/** U+2212 for negative numbers, as the reports print them. */
export function signedText(v: number, digits: number): string {
  const text = Math.abs(v).toFixed(digits);
  return v < 0 && Number(text) !== 0 ? `−${text}` : text;
}

/** A p-value for people: 4 decimals, or 2 significant digits below 0.0001. */
export function pValueText(p: number): string {
  return p >= 1e-4 ? p.toFixed(4) : p.toExponential(1);
}

/** What moved, in words. */
function driftFlags(r: DriftReport): string[] {
  const flags: string[] = [];
  const m = r.metric;
  const ci = `${Math.round(m.confidence * 100)} % CI`;
  if (m.worse && m.metric === "loss")
    flags.push(
      `loss rose ${signedText(m.delta, 3)} nats per token (${ci} ${signedText(m.low, 3)} to ${signedText(m.high, 3)})`,
    );
  else if (m.worse)
    flags.push(
      `${m.metric === "accuracy" ? "accuracy" : "exact match"} fell ${signedText(-m.delta * 100, 1)} points ` +
        `(${ci} ${signedText(m.low * 100, 1)} to ${signedText(m.high * 100, 1)})`,
    );
  const len = r.inputLength;
  if (len.ks.pValue < r.alpha)
    flags.push(
      `input length moved: mean ${len.baseline.mean.toFixed(1)} → ${len.current.mean.toFixed(1)} tokens, median ` +
        `${len.baseline.median} → ${len.current.median} (KS D = ${len.ks.d.toFixed(3)}, p = ${pValueText(len.ks.pValue)})`,
    );
  for (const [name, shift] of [
    ["label", r.labels],
    ["predicted label", r.predicted],
  ] as const)
    if (shift && shift.chiSquare.pValue < r.alpha)
      flags.push(
        `${name} distribution moved: total variation ${shift.totalVariation.toFixed(3)} (χ² = ` +
          `${shift.chiSquare.statistic.toFixed(2)}, ${shift.chiSquare.dof} dof, p = ${pValueText(shift.chiSquare.pValue)})` +
          (shift.onlyInCurrent.length > 0
            ? `; new: ${shift.onlyInCurrent.join(", ")}`
            : "") +
          (shift.onlyInBaseline.length > 0
            ? `; gone: ${shift.onlyInBaseline.join(", ")}`
            : ""),
      );
  return flags;
}

/** The test scores of a training run that a drift report reads as its baseline. */
export interface BaselineMetrics {
  source: string;
  /** The metrics.jsonl line (1-based) the scores were read from, and the optimizer step they were taken at. */
  line: number;
  step: number;
  /** The task, when the run trained several. */
  task?: string;
  /** The run's task metric, and its numbers. */
  metric: DriftMetric;
  loss: number;
  accuracy?: number;
  exactMatch?: number;
  rowScores: RowScore[];
}

/**
 * The last test scores of the tuned adapter in a training run's metrics.jsonl (`{"type":"test","phase":"tuned"}`,
 * for `task` when the run trained several), with each row's scores. Throws a FormatError naming the line for a
 * line that is not JSON, and a ConfigError when there are no such scores or they hold no `rowScores` (a run made
 * before webtune kept them).
 *
 * @example
 * ```ts
 * const base = readBaselineMetrics(await readFile("runs/fortunes/metrics.jsonl", "utf8"), "runs/fortunes/metrics.jsonl");
 * console.log(base.metric, base.accuracy, base.rowScores.length);
 * ```
 */
export function readBaselineMetrics(
  text: string,
  source: string,
  options: { task?: string } = {},
): BaselineMetrics {
  const events: { line: number; event: Record<string, unknown> }[] = [];
  text.split("\n").forEach((raw, i) => {
    if (raw.trim() === "") return;
    let event: unknown;
    try {
      event = JSON.parse(raw);
    } catch (e) {
      throw new FormatError(
        `${source} line ${i + 1} is not JSON (${(e as Error).message}); a metrics.jsonl holds one JSON event a line, ` +
          "as webtune train writes it.",
      );
    }
    const r = event as Record<string, unknown> | null;
    if (r?.["type"] === "test" && r["phase"] === "tuned")
      events.push({ line: i + 1, event: r });
  });
  const tasks = [
    ...new Set(
      events.flatMap((e) =>
        typeof e.event["task"] === "string" ? [e.event["task"]] : [],
      ),
    ),
  ];
  if (events.length === 0)
    throw new ConfigError(
      `${source} holds no test scores of the tuned adapter (no {"type":"test","phase":"tuned"} line): its run ` +
        "scored no test rows or stopped before. Give the metrics.jsonl of a run that scored its test rows " +
        "(webtune train with --test or --test-split).",
    );
  if (options.task !== undefined && !tasks.includes(options.task))
    throw new ConfigError(
      `${source} has no test scores of a task "${options.task}"; ${tasks.length > 0 ? `its tasks are ${tasks.join(", ")}` : "its run trained one task, so name none"}.`,
    );
  if (options.task === undefined && tasks.length > 1)
    throw new ConfigError(
      `${source} holds test scores of several tasks (${tasks.join(", ")}): choose the one to compare with.`,
    );
  const { line, event } = events
    .filter(
      (e) => options.task === undefined || e.event["task"] === options.task,
    )
    .at(-1)!;
  return baselineOf(event, source, line);
}

function baselineOf(
  event: Record<string, unknown>,
  source: string,
  line: number,
): BaselineMetrics {
  const rows = event["rowScores"];
  if (rows === undefined)
    throw new ConfigError(
      `${source} line ${line}: the tuned adapter's test scores have no rowScores; its run was made before webtune ` +
        "kept each row's scores. Train the adapter again with webtune train (or continue it with --continue-from), " +
        "or give the metrics.jsonl of a newer run.",
    );
  const bad = (what: string) =>
    new FormatError(
      `${source} line ${line}: ${what}; expected webtune train's test event with rowScores.`,
    );
  if (!Array.isArray(rows) || rows.length === 0)
    throw bad("rowScores is not a list of rows");
  rows.forEach((r: unknown, i) => {
    const row = r as Record<string, unknown> | null;
    for (const key of ["nll", "tokens", "inputTokens"])
      if (typeof row?.[key] !== "number")
        throw bad(`rowScores[${i}].${key} is not a number`);
  });
  const num = (key: string) =>
    typeof event[key] === "number" ? event[key] : undefined;
  return {
    source,
    line,
    step: num("step") ?? 0,
    ...(typeof event["task"] === "string" ? { task: event["task"] } : {}),
    metric: taskMetric({
      accuracy: num("accuracy"),
      exactMatch: num("exactMatch"),
    }),
    loss: num("loss") ?? NaN,
    ...(num("accuracy") !== undefined ? { accuracy: num("accuracy") } : {}),
    ...(num("exactMatch") !== undefined
      ? { exactMatch: num("exactMatch") }
      : {}),
    rowScores: rows as RowScore[],
  };
}

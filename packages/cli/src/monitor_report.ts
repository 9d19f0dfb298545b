/** `webtune monitor`'s tables: the drift report, then (with --retrain) the scores before and after retraining. */
import Table from "cli-table3";
import {
  pValueText,
  signedText,
  type BaselineMetrics,
  type DeltaInterval,
  type DriftMetric,
  type DriftReport,
  type LabelShift,
} from "@webtune/core";

const NAMES: Record<DriftMetric, string> = {
  accuracy: "accuracy",
  exactMatch: "exact match",
  loss: "loss",
};

/** A value of the metric: a percentage for accuracy and exact match, nats per token for the loss. */
export function metricText(metric: DriftMetric, v: number | undefined) {
  if (v === undefined || Number.isNaN(v)) return "–";
  return metric === "loss" ? v.toFixed(4) : `${(v * 100).toFixed(1)} %`;
}

/** A change with its interval: "−11.9 points (95 % CI −18.1 to −6.0)", or "+0.120 (95 % CI 0.050 to 0.190)". */
export function changeText(metric: DriftMetric, d: DeltaInterval): string {
  const [scale, digits, unit] =
    metric === "loss" ? [1, 3, ""] : [100, 1, " points"];
  const v = (x: number) => signedText(x * scale, digits);
  const plus = d.delta > 0 ? "+" : "";
  return `${plus}${v(d.delta)}${unit} (${Math.round(d.confidence * 100)} % CI ${v(d.low)} to ${v(d.high)})`;
}

const newTable = (head: string[]) =>
  new Table({ head, style: { head: [], border: [], compact: true } });

/** The report as a table: the metric, the input lengths, the label mixes. */
export function driftTable(r: DriftReport, baseline: BaselineMetrics): string {
  const table = newTable([
    baseline.task ? `task ${baseline.task}` : "",
    `at training (step ${baseline.step})`,
    "now",
    "change",
  ]);
  const m = r.metric;
  const len = r.inputLength;
  table.push(
    ["rows", String(r.rows.baseline), String(r.rows.current), ""],
    [
      NAMES[m.metric],
      metricText(m.metric, m.baseline),
      metricText(m.metric, m.current),
      changeText(m.metric, m),
    ],
    [
      "input tokens mean",
      len.baseline.mean.toFixed(1),
      len.current.mean.toFixed(1),
      `KS D = ${len.ks.d.toFixed(3)}, p = ${pValueText(len.ks.pValue)}`,
    ],
    [
      "input tokens median",
      String(len.baseline.median),
      String(len.current.median),
      "",
    ],
    [
      "input tokens p90",
      len.baseline.p90.toFixed(1),
      len.current.p90.toFixed(1),
      "",
    ],
    ...labelRows("label", r.labels),
    ...labelRows("predicted", r.predicted),
  );
  return table.toString();
}

function labelRows(name: string, s: LabelShift | undefined): string[][] {
  if (!s) return [];
  const share = (v: number) => `${(v * 100).toFixed(1)} %`;
  return [
    ...Object.keys(s.shares.baseline).map((l) => [
      `${name} ${l}`,
      share(s.shares.baseline[l]!),
      share(s.shares.current[l]!),
      `${s.shares.current[l]! > s.shares.baseline[l]! ? "+" : ""}${signedText((s.shares.current[l]! - s.shares.baseline[l]!) * 100, 1)} points`,
    ]),
    [
      `${name} mix`,
      "",
      "",
      `TV ${s.totalVariation.toFixed(3)}, χ² = ${s.chiSquare.statistic.toFixed(2)} (${s.chiSquare.dof} dof), p = ${pValueText(s.chiSquare.pValue)}`,
    ],
  ];
}

/** The flags, one a line ("DRIFT: accuracy fell ..."), or that nothing moved. */
export function flagLines(r: DriftReport): string[] {
  return r.driftFlagged
    ? r.flags.map((f) => `DRIFT: ${f}`)
    : [
        `no drift detected (the ${NAMES[r.metric.metric]} did not get worse beyond its interval; lengths and labels p ≥ ${r.alpha})`,
      ];
}

/** One before → after line of the retraining table. */
export interface BeforeAfter {
  what: string;
  rows: number;
  metric: DriftMetric;
  before: number | undefined;
  after: number | undefined;
  change?: DeltaInterval;
}

/** Before → after retraining: on the held-out new rows, and on each old test file. */
export function retrainTable(lines: BeforeAfter[]): string {
  const table = newTable(["retrained", "rows", "before", "after", "change"]);
  for (const l of lines)
    table.push([
      `${l.what}: ${NAMES[l.metric]}`,
      String(l.rows),
      metricText(l.metric, l.before),
      metricText(l.metric, l.after),
      l.change ? changeText(l.metric, l.change) : "",
    ]);
  return table.toString();
}

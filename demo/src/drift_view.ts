/**
 * The monitor panel's views, as `webtune monitor` prints them: the drift table (the metric at training time, now,
 * and its change with a 95 % interval; the input lengths with their KS test; classification's label mixes with
 * their χ² test), the flags in words, and the before → after table of a retraining.
 *
 * The number formats are the CLI's (core's signedText, pValueText); they are written again here because this page
 * may not import core's runtime (see settings.ts).
 */
import type {
  DeltaInterval,
  DriftMetric,
  DriftReport,
  LabelShift,
} from "@webtune/core";
import type {
  BeforeAfter,
  MonitorResult,
  RetrainOutcome,
} from "@webtune/worker";
import { byId, headerRow, tableRow } from "./dom.js";

export const METRIC_NAMES: Record<DriftMetric, string> = {
  accuracy: "accuracy",
  exactMatch: "exact match",
  loss: "loss per token",
};

/** U+2212 for negative numbers. */
function signed(v: number, digits: number): string {
  const text = Math.abs(v).toFixed(digits);
  return v < 0 && Number(text) !== 0 ? `−${text}` : text;
}

/** A p-value for people: 4 decimals, or 2 significant digits below 0.0001. */
const pValue = (p: number) => (p >= 1e-4 ? p.toFixed(4) : p.toExponential(1));

/** A value of the metric: a percentage for accuracy and exact match, nats per token for the loss. */
export function metricText(metric: DriftMetric, v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return "–";
  return metric === "loss" ? v.toFixed(4) : `${(v * 100).toFixed(1)} %`;
}

/** "−11.9 points (95 % CI −18.1 to −6.0)", or "+0.120 (95 % CI 0.050 to 0.190)" for the loss. */
export function changeText(metric: DriftMetric, d: DeltaInterval): string {
  const [scale, digits, unit] =
    metric === "loss" ? [1, 3, ""] : [100, 1, " points"];
  const v = (x: number) => signed(x * scale, digits);
  return `${d.delta > 0 ? "+" : ""}${v(d.delta)}${unit} (${Math.round(d.confidence * 100)} % CI ${v(d.low)} to ${v(d.high)})`;
}

/** What a drift check showed: the file, and what the worker found. */
export interface DriftView {
  file: string;
  result: MonitorResult;
}

/** The drift table, the flags and notes on reading the file; nothing without a check. */
export function showDrift(view?: DriftView): void {
  const box = byId("drift-result");
  box.replaceChildren();
  if (!view) return;
  const { result, file } = view;
  const table = document.createElement("table");
  table.id = "drift-table";
  table.createTHead().append(headerRow(["", "at training", "now", "change"]));
  table.createTBody().append(...driftRows(result.report));
  const caption = Object.assign(document.createElement("p"), {
    className: "note",
    textContent: `The adapter's scores on ${file} against its test scores from training:`,
  });
  box.append(caption, table, flagBox(result.report), readingNote(file, result));
}

function driftRows(r: DriftReport): HTMLTableRowElement[] {
  const m = r.metric;
  const len = r.inputLength;
  return [
    tableRow(["rows", String(r.rows.baseline), String(r.rows.current), ""]),
    tableRow(
      [
        METRIC_NAMES[m.metric],
        metricText(m.metric, m.baseline),
        metricText(m.metric, m.current),
        changeText(m.metric, m),
      ],
      m.worse ? "moved" : undefined,
    ),
    tableRow(
      [
        "input tokens, mean",
        len.baseline.mean.toFixed(1),
        len.current.mean.toFixed(1),
        `KS D = ${len.ks.d.toFixed(3)}, p = ${pValue(len.ks.pValue)}`,
      ],
      len.ks.pValue < r.alpha ? "moved" : undefined,
    ),
    tableRow([
      "input tokens, median",
      String(len.baseline.median),
      String(len.current.median),
      "",
    ]),
    tableRow([
      "input tokens, p90",
      len.baseline.p90.toFixed(1),
      len.current.p90.toFixed(1),
      "",
    ]),
    ...labelRows("label", r.labels, r.alpha),
    ...labelRows("predicted", r.predicted, r.alpha),
  ];
}

/** Each label's share then and now, and the mix's test. */
function labelRows(
  name: string,
  s: LabelShift | undefined,
  alpha: number,
): HTMLTableRowElement[] {
  if (!s) return [];
  const share = (v: number) => `${(v * 100).toFixed(1)} %`;
  return [
    ...Object.keys(s.shares.baseline).map((l) => {
      const [then, now] = [s.shares.baseline[l]!, s.shares.current[l]!];
      return tableRow([
        `${name} ${l}`,
        share(then),
        share(now),
        `${now > then ? "+" : ""}${signed((now - then) * 100, 1)} points`,
      ]);
    }),
    tableRow(
      [
        `${name} mix`,
        "",
        "",
        `TV ${s.totalVariation.toFixed(3)}, χ² = ${s.chiSquare.statistic.toFixed(2)} (${s.chiSquare.dof} dof), p = ${pValue(s.chiSquare.pValue)}`,
      ],
      s.chiSquare.pValue < alpha ? "moved" : undefined,
    ),
  ];
}

/** The flags in words in a warning box, or a plain note that nothing moved. */
function flagBox(r: DriftReport): HTMLElement {
  const box = document.createElement("div");
  box.id = "drift-flags";
  if (!r.driftFlagged) {
    box.className = "ok";
    box.textContent =
      `No drift detected: the ${METRIC_NAMES[r.metric.metric]} did not get worse beyond its interval, and the ` +
      `lengths${r.labels ? " and labels" : ""} did not move (p ≥ ${r.alpha}).`;
    return box;
  }
  box.className = "warning";
  const title = document.createElement("strong");
  title.textContent = "Drift detected:";
  const list = document.createElement("ul");
  list.append(
    ...r.flags.map((f) =>
      Object.assign(document.createElement("li"), { textContent: f }),
    ),
  );
  box.append(title, list);
  return box;
}

/** How many rows were read and scored, and prompts not shaped like the adapter's. */
function readingNote(file: string, result: MonitorResult): HTMLElement {
  const { read, report, misfits, promptTemplate } = result;
  const dropped = Object.entries(read.dropped)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${n} ${why}`)
    .join(", ");
  const parts = [
    `${file}: ${read.kept} of ${read.total} rows read${dropped ? ` (dropped: ${dropped})` : ""}` +
      `${read.truncated > 0 ? `, ${read.truncated} cut to the max tokens` : ""}; the first ${report.rows.current} scored by the adapter.`,
  ];
  if (misfits > 0 && promptTemplate)
    parts.push(
      `${misfits} of them have prompts not shaped like the adapter's template ${JSON.stringify(promptTemplate)}: check the file's prompts first.`,
    );
  return Object.assign(document.createElement("p"), {
    className: "note",
    textContent: parts.join(" "),
  });
}

/** Before → after a retraining, on the held-out new rows and on the test rows; nothing without one. */
export function showRetrained(outcome?: RetrainOutcome, file?: string): void {
  const box = byId("retrain-result");
  box.replaceChildren();
  if (!outcome) return;
  const { sizes, train, job } = outcome;
  const line = Object.assign(document.createElement("p"), {
    className: "note",
    textContent:
      `${train.aborted ? "Stopped after" : "Retrained for"} ${train.steps} steps on ${sizes.train} rows of ${file ?? job.data.train}` +
      ` (${sizes.heldOut} more held out), replaying ${job.replay.source} (${sizes.replay} rows) as ${Math.round(job.replay.ratio * 100)} % of each batch.` +
      " The adapter column of 7 · Test metrics and the next drift check are the retrained adapter's.",
  });
  const rows = [
    ["held-out new rows", outcome.heldOut],
    ["test rows", outcome.test],
  ] as const;
  const table = document.createElement("table");
  table.id = "retrain-table";
  table
    .createTHead()
    .append(headerRow(["retrained", "rows", "before", "after", "change"]));
  const body = table.createTBody();
  for (const [what, scores] of rows) body.append(beforeAfterRow(what, scores));
  box.append(table, line);
}

function beforeAfterRow(what: string, s: BeforeAfter | undefined) {
  if (!s)
    return tableRow([what, "–", "not scored (skipped or stopped)", "", ""]);
  return tableRow([
    `${what}: ${METRIC_NAMES[s.metric]}`,
    String(s.rows),
    metricText(s.metric, s.before[s.metric]),
    metricText(s.metric, s.after[s.metric]),
    changeText(s.metric, s.change),
  ]);
}

/** The test-metrics panel: base model and adapter side by side, and a confusion matrix for classification. */
import type { EvaluationResult, ForgettingEvent } from "@webtune/core";
import type { DataSummary } from "@webtune/worker";
import { byId, tableRow } from "./dom.js";
import { showTradeoff } from "./tradeoff.js";

const percent = (v: number) => `${(v * 100).toFixed(1)} %`;

/** Each metric, how it reads from a result, and the one data format that has it (none: every format). */
export const ROWS: [
  string,
  (r: EvaluationResult) => string | undefined,
  DataSummary["format"]?,
][] = [
  ["rows", (r) => String(r.rows)],
  ["loss", (r) => r.loss.toFixed(4)],
  ["perplexity", (r) => r.perplexity.toFixed(2)],
  [
    "accuracy",
    (r) => (r.accuracy === undefined ? undefined : percent(r.accuracy)),
    "classification",
  ],
  ["precision (macro)", (r) => r.precision?.toFixed(3), "classification"],
  ["recall (macro)", (r) => r.recall?.toFixed(3), "classification"],
  ["F1 (macro)", (r) => r.f1?.toFixed(3), "classification"],
  [
    "exact match",
    (r) => (r.exactMatch === undefined ? undefined : percent(r.exactMatch)),
    "instruction",
  ],
];

/**
 * Fills the table with whichever of the two results exist. Before any, it lists the metrics that the loaded
 * data's format (if any) will have, each "–".
 */
export function showMetrics(
  base?: EvaluationResult,
  tuned?: EvaluationResult,
  format?: DataSummary["format"],
  forgetting?: ForgettingEvent,
): void {
  const body = byId("metrics").querySelector("tbody")!;
  body.replaceChildren(
    ...ROWS.flatMap(([name, read, only]) => {
      const cells = [base, tuned].map((r) => (r ? read(r) : undefined));
      if (cells.every((c) => c === undefined) && (base || tuned)) return [];
      if (!base && !tuned && only !== undefined && only !== format) return [];
      return [tableRow([name, ...cells.map((c) => c ?? "–")])];
    }),
    // Beside the task's metrics: what tuning cost on general text (a rise in its loss is forgetting).
    ...(forgetting
      ? [
          tableRow([
            `general-text loss (${forgetting.loss_delta >= 0 ? "+" : ""}${forgetting.loss_delta.toFixed(2)})`,
            forgetting.base_loss.toFixed(4),
            forgetting.tuned_loss.toFixed(4),
          ]),
        ]
      : []),
  );
  showConfusion(tuned ?? base, tuned ? "adapter's" : "base model's");
  showTradeoff(base, tuned, forgetting, format);
}

function showConfusion(
  result: EvaluationResult | undefined,
  who: string,
): void {
  const box = byId("confusion");
  box.replaceChildren();
  if (!result?.confusionMatrix || !result.labels) return;
  const caption = document.createElement("p");
  caption.className = "note";
  caption.textContent = `Confusion matrix of the ${who} predictions: rows are true labels, columns predicted.`;
  const table = document.createElement("table");
  table.className = "confusion";
  table.append(tableRow(["", ...result.labels]));
  result.confusionMatrix.forEach((row, i) => {
    const tr = tableRow([result.labels![i]!, ...row.map(String)]);
    tr.children[i + 1]?.classList.add("diagonal");
    table.append(tr);
  });
  box.append(caption, table);
}

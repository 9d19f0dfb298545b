/**
 * The test-metrics panel: base model and adapter side by side, a confusion matrix for classification, and for token
 * classification an entity table (precision, recall and F1 per entity type and over all, base → adapter).
 */
import type {
  EntityScores,
  EvaluationResult,
  ForgettingEvent,
  NerMetrics,
} from "@webtune/core";
import type { DataSummary } from "@webtune/worker";
import { byId, headerRow, tableRow } from "./dom.js";
import { showTradeoff } from "./tradeoff.js";

const percent = (v: number) => `${(v * 100).toFixed(1)} %`;

type Format = DataSummary["format"];

const accuracy = (r: EvaluationResult) =>
  r.accuracy === undefined ? undefined : percent(r.accuracy);

/** Which data formats have a metric. */
type Fits = (format: Format) => boolean;
const only =
  (...formats: Format[]): Fits =>
  (format) =>
    formats.includes(format);

/**
 * Each metric, how it reads from a result, and the data formats that have it (none: every format). Tagged data's
 * precision, recall and F1 are over entities, in the entity table; a head's perplexity is over its labels, which
 * says nothing a language model's would.
 */
export const ROWS: [
  string,
  (r: EvaluationResult) => string | undefined,
  Fits?,
][] = [
  ["rows", (r) => String(r.rows)],
  ["loss", (r) => r.loss.toFixed(4)],
  ["perplexity", (r) => r.perplexity.toFixed(2), (f) => f !== "tagged"],
  ["accuracy", accuracy, only("classification")],
  ["word accuracy", accuracy, only("tagged")],
  ["precision (macro)", (r) => r.precision?.toFixed(3), only("classification")],
  ["recall (macro)", (r) => r.recall?.toFixed(3), only("classification")],
  ["F1 (macro)", (r) => r.f1?.toFixed(3), only("classification")],
  [
    "exact match",
    (r) => (r.exactMatch === undefined ? undefined : percent(r.exactMatch)),
    only("instruction"),
  ],
];

/**
 * Whether a ROWS entry shows for data of this format. An unknown format shows every row with a value, but before
 * any result only the rows of every format.
 */
export function rowFits(
  fits: Fits | undefined,
  format: Format | undefined,
  scored: boolean,
): boolean {
  if (fits === undefined) return true;
  return format === undefined ? scored : fits(format);
}

/**
 * Fills the table with whichever of the two results exist. Before any, it lists the metrics that the loaded
 * data's format (if any) will have, each "–".
 */
/**
 * A baseline's box: a table headed by `heads`, the result's metrics that fit the data's format, then its prompt
 * lengths (the few-shot and retrieval baselines add their own rows after it).
 */
export function baselineTable(
  heads: [string, string],
  result: EvaluationResult,
  promptTokens: { mean: number; max: number },
  format: DataSummary["format"] | undefined,
): HTMLTableElement {
  const table = document.createElement("table");
  table.createTHead().append(headerRow(heads));
  for (const [name, read, fits] of ROWS) {
    const value = read(result);
    if (value !== undefined && rowFits(fits, format, true))
      table.append(tableRow([name, value]));
  }
  const { mean, max } = promptTokens;
  table.append(
    tableRow(["prompt tokens", `${mean.toFixed(0)} mean, ${max} max`]),
  );
  return table;
}

export function showMetrics(
  base?: EvaluationResult,
  tuned?: EvaluationResult,
  format?: DataSummary["format"],
  forgetting?: ForgettingEvent,
): void {
  const body = byId("metrics").querySelector("tbody")!;
  body.replaceChildren(
    ...ROWS.flatMap(([name, read, fits]) => {
      const cells = [base, tuned].map((r) => (r ? read(r) : undefined));
      if (cells.every((c) => c === undefined) && (base || tuned)) return [];
      if (!rowFits(fits, format, base !== undefined || tuned !== undefined))
        return [];
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
  showEntities(base, tuned);
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

/**
 * The entity table of token classification: one row per entity type and one over all entities (micro), each with
 * its gold count and precision, recall and F1 base → adapter; hidden unless a result has entity scores.
 */
function showEntities(
  base: EvaluationResult | undefined,
  tuned: EvaluationResult | undefined,
): void {
  const box = byId("entities");
  box.replaceChildren();
  const results = [base?.entities, tuned?.entities];
  if (results.every((e) => e === undefined)) return;
  const types = [
    ...new Set(results.flatMap((e) => Object.keys(e?.perType ?? {}))),
  ].sort();
  const sides = results.flatMap((e, i) =>
    e ? [i === 0 ? "base" : "adapter"] : [],
  );
  const table = document.createElement("table");
  table.id = "entity-table";
  table
    .createTHead()
    .append(headerRow(["entity", "support", "precision", "recall", "F1"]));
  const row = (
    name: string,
    pick: (e: NerMetrics) => EntityScores | undefined,
  ) => {
    const scores = results.map((e) => (e ? pick(e) : undefined));
    const support = scores.find((s) => s !== undefined)?.support;
    const cell = (key: "precision" | "recall" | "f1") =>
      results
        .flatMap((e, i) => (e ? [scores[i]?.[key].toFixed(3) ?? "–"] : []))
        .join(" → ");
    return tableRow([
      name,
      support === undefined ? "–" : String(support),
      cell("precision"),
      cell("recall"),
      cell("f1"),
    ]);
  };
  const body = table.createTBody();
  body.append(
    ...types.map((type) => row(type, (e) => e.perType[type])),
    row("all (micro)", (e) => e.micro),
  );
  body.lastElementChild!.classList.add("total");
  const caption = document.createElement("p");
  caption.className = "note";
  caption.textContent =
    `Entities (${sides.join(" → ")}): a predicted entity counts only when its type and its first and last word ` +
    "match a true one (strict IOB2, as seqeval scores them). Support is the true entities in the test rows scored.";
  box.append(caption, table);
}

/**
 * The retrieval baseline button (RAG in place of tuning): the base model scored on the test rows with each row's k
 * most similar training rows in its prompt, found by BM25 or by the base model's hidden states, shown beside the
 * few-shot box with its prompt lengths and a warning when test rows are training rows too.
 */
import type { EvaluationResult, RetrievalReport } from "@webtune/core";
import type { DataSummary, RetrieverName } from "@webtune/worker";
import type { DemoApp } from "./app.js";
import { byId, setStatus, tableRow } from "./dom.js";
import { baselineTable } from "./metrics.js";
import { settingsJob } from "./settings.js";

/** How the worker's messages name this page's controls. */
const NAMES = { k: 'the retrieval "k"', train: "the training split" };

const RETRIEVERS: Record<RetrieverName, string> = {
  bm25: "bm25 (the words they share)",
  hidden: "the base model's hidden states (cosine of their means)",
};

/** Scores the retrieval baseline (Stop or Skip scoring cancels it) and shows it. */
export async function scoreRetrieval(app: DemoApp): Promise<void> {
  const k = byId<HTMLInputElement>("retrieval-k").valueAsNumber;
  const retriever = byId<HTMLSelectElement>("retriever").value as RetrieverName;
  const maxRows =
    (settingsJob().evaluation?.testRows as number | null) ?? undefined;
  app.setPhase("scoring");
  setStatus(
    `Scoring the base model with each test row's ${k} most similar training rows (by ${RETRIEVERS[retriever]}) in its prompt…`,
  );
  const { result, report } = await app.trainer.api.retrieval(k, {
    retriever,
    maxRows,
    names: NAMES,
  });
  showRetrieval(result, report, app.data?.format);
  setStatus(
    `Scored the retrieval baseline (k ${k}, ${report.retriever}) on the test split.`,
  );
}

/** The result's metrics, its prompts and its leaks; nothing (an empty box) without a result. */
export function showRetrieval(
  result?: EvaluationResult,
  report?: RetrievalReport,
  format?: DataSummary["format"],
): void {
  const box = byId("retrieval-result");
  box.replaceChildren();
  if (!result || !report) return;
  const table = baselineTable(
    ["retrieval baseline", `base, k ${report.k} by ${report.retriever}`],
    result,
    report.promptTokens,
    format,
  );
  if (report.shortened > 0)
    table.append(
      tableRow([
        "rows shortened",
        `${report.shortened} (fewer examples to fit the model's positions; fewest ${report.minShots})`,
      ]),
    );
  if (report.fewerMatches > 0)
    table.append(
      tableRow([
        "fewer matches",
        `${report.fewerMatches} rows shared no word with ${report.k} training rows (fewest examples ${report.minShots})`,
      ]),
    );
  const note = document.createElement("p");
  note.className = "note";
  note.textContent =
    `Before each test row, the ${report.k} most similar training rows by ${RETRIEVERS[report.retriever as RetrieverName] ?? report.retriever}, ` +
    "the nearest last, each as it is trained on; similarity is read from the row's prompt, never its answer. The " +
    "loss is over the test row's own tokens, as in the table above.";
  box.append(table, note);
  if (report.duplicates > 0) box.append(leakWarning(report, result.rows));
}

/** Test rows that are training rows too: retrieval finds them, answer and all, which flatters its scores. */
function leakWarning(report: RetrievalReport, rows: number): HTMLElement {
  const lines = report.duplicateLines.slice(0, 8).join(", ");
  const more = report.duplicates > 8 ? ", …" : "";
  const warning = document.createElement("p");
  warning.className = "warning";
  warning.id = "retrieval-leak";
  warning.textContent =
    `${report.duplicates} of ${rows} test rows are also training rows (test lines ${lines}${more}): retrieval puts ` +
    "each in its own prompt with its answer, so these scores overstate it. Remove them from one of the files.";
  return warning;
}

/**
 * The few-shot baseline button: the base model scored on the test rows with k rows of the training split in each
 * prompt (drawn with the page's seed), shown beside the test metrics with the prompt's length, so that a tuned
 * adapter can be read against prompting alone.
 */
import type { EvaluationResult, FewShotReport } from "@webtune/core";
import type { DataSummary } from "@webtune/worker";
import type { DemoApp } from "./app.js";
import { byId, setStatus, tableRow } from "./dom.js";
import { baselineTable } from "./metrics.js";
import { settingsJob } from "./settings.js";

/** How the worker's messages name this page's controls. */
const NAMES = { k: 'the few-shot "k"', train: "the training split" };

/** Scores the few-shot baseline (Stop or Skip scoring cancels it) and shows it. */
export async function scoreFewShot(app: DemoApp): Promise<void> {
  const k = byId<HTMLInputElement>("few-shot-k").valueAsNumber;
  const job = settingsJob();
  const maxRows = (job.evaluation?.testRows as number | null) ?? undefined;
  const seed = (job.training?.seed as number | undefined) ?? 0;
  app.setPhase("scoring");
  setStatus(
    `Scoring the base model with ${k} training rows in each prompt on the test split…`,
  );
  const { result, report } = await app.trainer.api.fewShot(k, seed, {
    maxRows,
    names: NAMES,
  });
  showFewShot(result, report, app.data?.format);
  setStatus(`Scored the few-shot baseline (k ${k}) on the test split.`);
}

/** The result's metrics and how its prompts were made; nothing (an empty box) without a result. */
export function showFewShot(
  result?: EvaluationResult,
  report?: FewShotReport,
  format?: DataSummary["format"],
): void {
  const box = byId("few-shot-result");
  box.replaceChildren();
  if (!result || !report) return;
  const table = baselineTable(
    ["few-shot baseline", `base, k ${report.k}`],
    result,
    report.promptTokens,
    format,
  );
  table.append(tableRow(["seed", String(report.seed)]));
  if (report.shortened > 0)
    table.append(
      tableRow([
        "fewer examples",
        `${report.shortened} rows (to fit the model's positions; fewest ${report.minShots})`,
      ]),
    );
  const note = document.createElement("p");
  note.className = "note";
  note.textContent =
    `The same ${report.shots.length} training rows${report.balanced ? " (balanced across labels)" : ""}, ` +
    "each as it is trained on and ended by the end-of-text token, before every test row; the loss is over the test " +
    "row's own tokens, as in the table above.";
  box.append(table, note);
}

/**
 * The data panel's report: what cleaning kept and dropped, the splits, a warning when test rows are also training
 * rows, a note when the form's task reads them differently, and a preview of rows as the model sees them.
 */
import type { AugmentReport } from "@webtune/core";
import type { DataSummary } from "@webtune/worker";
import { byId, headerRow, tableRow } from "./dom.js";
import { markEntities, TASK_NAMES } from "./heads.js";
import { sameReading, type DataReading, type Task } from "./settings.js";

/**
 * What augmentation added to the training split when the run started (rows by kind, the paraphrase filter, what
 * cleaning dropped), or nothing.
 */
export function showAugmented(a: AugmentReport | undefined): void {
  const box = byId("data-augmented");
  box.hidden = !a;
  if (!a) return;
  const p = a.paraphrases;
  const rejected = Object.entries(p.rejected)
    .map(([why, n]) => `${n} ${why}`)
    .join(", ");
  const dropped = Object.entries(a.dropped)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${n} ${why}`)
    .join(", ");
  box.textContent =
    `Augmented: ${a.added} rows added to the ${a.sourceRows} training rows (validation and test untouched)` +
    `${a.eda > 0 ? `; word operations made ${a.eda}` : ""}` +
    `${p.sampled > 0 ? `; the base model's paraphrases: ${p.kept} of ${p.sampled} kept${rejected ? ` (rejected: ${rejected})` : ""}` : ""}` +
    `${dropped ? `; cleaning dropped ${dropped}` : ""}.`;
}

/** `s`, the rows of `source` as the worker read them for `task`. */
export function showDataSummary(
  source: string,
  s: DataSummary,
  task: Task,
): void {
  const r = s.report;
  const dropped = Object.entries(r.dropped)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${n} ${why}`);
  const firstDropped = r.rows[0]
    ? ` First dropped: line ${r.rows[0].line}, ${r.rows[0].message}.`
    : "";
  byId("data-report").textContent =
    `${source}: ${s.format} data${s.labels ? ` with labels ${s.labels.join(", ")}` : ""}. ` +
    `Kept ${r.kept} of ${r.total} rows${dropped.length ? ` (dropped ${dropped.join(", ")})` : ""}` +
    `${r.truncated ? `, ${r.truncated} truncated` : ""}.${firstDropped} ` +
    `Splits: ${s.sizes.train} train, ${s.sizes.val} validation, ${s.sizes.test} test.`;
  showOverlap(s);
  const table = byId("data-preview");
  // Tagged rows are sentences of words, each tagged: no prompt, and the words beside the tokens they make.
  const tagged = s.format === "tagged";
  table
    .querySelector("thead")!
    .replaceChildren(
      headerRow(
        tagged
          ? [
              "sentence, entities marked (what the head learns)",
              "words",
              "tokens",
            ]
          : task === "seq-cls"
            ? ["text", "label (what the head learns)", "tokens"]
            : ["prompt", "target (what the loss is on)", "tokens"],
      ),
    );
  table
    .querySelector("tbody")!
    .replaceChildren(
      ...s.preview.train.map((row) =>
        tableRow(
          tagged
            ? [
                markEntities(row.words ?? [], row.tags ?? []),
                String(row.words?.length ?? 0),
                String(row.tokens),
              ]
            : [row.prompt ?? "", row.target, String(row.tokens)],
        ),
      ),
    );
  table.hidden = s.preview.train.length === 0;
}

/** Contamination: test rows that the training split holds too make the test scores look better than they are. */
function showOverlap(s: DataSummary): void {
  const warning = byId("data-overlap");
  const { rows, lines } = s.overlap;
  warning.hidden = rows === 0;
  if (rows === 0) return;
  const more = rows > lines.length ? ", …" : "";
  warning.textContent =
    `Warning: ${rows} of ${s.sizes.test} test rows are also in the training data (test file lines ` +
    `${lines.join(", ")}${more}). The test scores will overstate how well the adapter generalizes; remove ` +
    "those rows from one of the files.";
}

/**
 * Rows are read for a task (a head's rows are not the language model's): while the form names another, says that
 * Load data reads them again. Train reads its own rows either way.
 */
export function showReadingNote(
  read: DataReading | undefined,
  form: DataReading,
): void {
  const note = byId("data-stale");
  const stale = read !== undefined && !sameReading(read, form);
  note.hidden = !stale;
  note.textContent = stale
    ? `These rows were read for ${readingWords(read)}; the form now trains ${readingWords(form)}. ` +
      "Press Load data to read them for it (Train reads its own rows either way)."
    : "";
}

const readingWords = (r: DataReading) =>
  r.task === "token-cls"
    ? `${TASK_NAMES[r.task]} (${r.labelSubwords === "all" ? "every subword" : "the first subword"} of a word tagged)`
    : TASK_NAMES[r.task];

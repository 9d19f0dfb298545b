/** The data panel's report: what cleaning kept and dropped, the splits, and a preview of rows as the model sees them. */
import type { DataSummary } from "@webtune/worker";
import { byId, tableRow } from "./dom.js";

export function showDataSummary(source: string, s: DataSummary): void {
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
  const table = byId("data-preview");
  table
    .querySelector("tbody")!
    .replaceChildren(
      ...s.preview.train.map((row) =>
        tableRow([row.prompt ?? "", row.target, String(row.tokens)]),
      ),
    );
  table.hidden = s.preview.train.length === 0;
}

/**
 * `webtune eval`: loss and perplexity over every loss token (each row scored alone), plus the task's metrics
 * (classification: accuracy, macro precision/recall/F1, confusion matrix; instruction: exact match). Prints a
 * table, then one JSON line.
 */
import { evaluate } from "@webtune/core";
import { loadForCommand, readDataset } from "./common.js";

export async function evalCommand(o: {
  model: string;
  adapter?: string;
  data: string;
  format?: string;
  seqLen: number;
  skipBadRows?: boolean;
}): Promise<void> {
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  // Every row is scored, repeated ones too: evaluation files are not deduplicated.
  const data = await readDataset(o.data, model, {
    format: o.format,
    seqLen: o.seqLen,
    evaluation: true,
    skipBadRows: o.skipBadRows,
  });
  const result = await evaluate(peft, model.tokenizer!, data.examples, {
    format: data.format,
    labels: data.labels,
  });
  const table = Object.entries(result)
    .filter(([, v]) => typeof v === "number")
    .map(
      ([k, v]) =>
        `${k.padEnd(12)} ${Number.isInteger(v) ? v : (v as number).toFixed(6)}`,
    );
  process.stdout.write(`${table.join("\n")}\n${JSON.stringify(result)}\n`);
  peft.dispose();
  model.dispose();
}

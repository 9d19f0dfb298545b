/**
 * `webtune eval`: loss and perplexity over every loss token (each row scored alone), plus accuracy, macro
 * precision/recall/F1 and the confusion matrix for classification (each label scored by its log-likelihood).
 * Prints a table, then one JSON line.
 */
import {
  classificationMetrics,
  type Example,
  type PretrainedModel,
  type LoraModel,
} from "@webtune/core";
import { loadForCommand, readDataset } from "./common.js";

/** Summed next-token NLL of one row's loss tokens, and how many there were. */
async function rowNll(
  peft: LoraModel,
  inputIds: number[],
  labels: number[],
): Promise<{ nll: number; tokens: number }> {
  const tokens = labels.slice(1).filter((l) => l !== -100).length;
  if (tokens === 0) return { nll: 0, tokens: 0 };
  const loss = peft.loss([inputIds], [labels]);
  const mean = (await loss.data())[0]!;
  loss.dispose();
  return { nll: mean * tokens, tokens };
}

async function predictLabel(
  peft: LoraModel,
  model: PretrainedModel,
  ex: Example,
  labels: string[],
): Promise<string> {
  const tok = model.tokenizer!;
  const prefix = tok.encode(ex.prompt ?? "");
  let best = labels[0]!;
  let bestNll = Infinity;
  for (const label of labels) {
    const ids = [
      ...tok.encode(` ${label}`, { addSpecialTokens: false }),
      ...(tok.eosTokenId !== undefined ? [tok.eosTokenId] : []),
    ];
    const input = [...prefix, ...ids];
    const { nll } = await rowNll(
      peft,
      input,
      input.map((id, i) => (i < prefix.length ? -100 : id)),
    );
    if (nll < bestNll) [best, bestNll] = [label, nll];
  }
  return best;
}

export async function evalCommand(o: {
  model: string;
  adapter?: string;
  data: string;
  format?: string;
  seqLen: number;
}): Promise<void> {
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  const data = await readDataset(o.data, model, {
    format: o.format,
    seqLen: o.seqLen,
  });
  let nll = 0;
  let tokens = 0;
  for (const ex of data.examples) {
    const row = await rowNll(peft, ex.inputIds, ex.labels);
    nll += row.nll;
    tokens += row.tokens;
  }
  const result: Record<string, unknown> = {
    loss: nll / tokens,
    perplexity: Math.exp(nll / tokens),
    tokens,
    rows: data.examples.length,
  };
  if (data.format === "classification" && data.labels) {
    const truth = data.examples.map((e) => e.label!);
    const predicted: string[] = [];
    for (const ex of data.examples)
      predicted.push(await predictLabel(peft, model, ex, data.labels));
    const m = classificationMetrics(truth, predicted, { labels: data.labels });
    Object.assign(result, {
      accuracy: m.accuracy,
      precision: m.macroPrecision,
      recall: m.macroRecall,
      f1: m.macroF1,
      labels: data.labels,
      confusion_matrix: (await import("@webtune/core")).confusionMatrix(
        truth,
        predicted,
        data.labels,
      ),
    });
  }
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

/**
 * `webtune eval`: loss and perplexity over every loss token (each row scored alone), plus the task's metrics
 * (classification: accuracy, macro precision/recall/F1, confusion matrix; instruction: exact match). Prints a
 * table, then one JSON line. With `--few-shot k --train file`, the few-shot baseline: each row scored with k
 * seeded examples of the training file in front (see core's fewShotRows), the prompt length and the examples'
 * lines printed too, and the JSON line's `fewShot` holding the report.
 */
import { ConfigError, evaluate, fewShotEvaluate } from "@webtune/core";
import { loadForCommand, readDataset } from "./common.js";

export async function evalCommand(o: {
  model: string;
  adapter?: string;
  data: string;
  format?: string;
  seqLen: number;
  skipBadRows?: boolean;
  fewShot?: number;
  train?: string;
  seed?: number;
}): Promise<void> {
  if (o.fewShot !== undefined && o.train === undefined)
    throw new ConfigError(
      "--few-shot needs --train: the training file its examples are drawn from.",
    );
  if (o.train !== undefined && o.fewShot === undefined)
    throw new ConfigError(
      "--train is read only with --few-shot: pass --few-shot <k> to score with k of its rows in each prompt.",
    );
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  // Every row is scored, repeated ones too: evaluation files are not deduplicated.
  const data = await readDataset(o.data, model, {
    format: o.format,
    seqLen: o.seqLen,
    evaluation: true,
    skipBadRows: o.skipBadRows,
  });
  const options = { format: data.format, labels: data.labels };
  let lines: string[] = [];
  let fewShot: object | undefined;
  let result;
  if (o.fewShot === undefined) {
    result = await evaluate(peft, model.tokenizer!, data.examples, options);
  } else {
    // The examples as training reads them (deduplicated), in the test file's format.
    const train = await readDataset(o.train!, model, {
      format: data.format,
      seqLen: o.seqLen,
      flag: "--train",
      skipBadRows: o.skipBadRows,
    });
    const scored = await fewShotEvaluate(peft, model.tokenizer!, {
      ...options,
      train: train.examples,
      test: data.examples,
      k: o.fewShot,
      seed: o.seed ?? 0,
      names: { k: "--few-shot", train: "--train" },
    });
    const { report } = scored;
    result = scored.result;
    const trainLines = report.shots.map((i) => train.examples[i]!.line);
    fewShot = { ...report, lines: trainLines };
    lines = [
      `few-shot     k=${report.k} seed=${report.seed}${report.balanced ? " (balanced across labels)" : ""}, --train lines ${trainLines.join(", ") || "none"}`,
      `prompt       ${report.promptTokens.mean.toFixed(1)} tokens mean, ${report.promptTokens.max} max`,
      ...(report.shortened > 0
        ? [
            `shortened    ${report.shortened} rows got fewer examples to fit the model's positions (fewest: ${report.minShots})`,
          ]
        : []),
    ];
  }
  const table = Object.entries(result)
    .filter(([, v]) => typeof v === "number")
    .map(
      ([k, v]) =>
        `${k.padEnd(12)} ${Number.isInteger(v) ? v : (v as number).toFixed(6)}`,
    );
  const json = fewShot === undefined ? result : { ...result, fewShot };
  process.stdout.write(
    `${[...table, ...lines].join("\n")}\n${JSON.stringify(json)}\n`,
  );
  peft.dispose();
  model.dispose();
}

/**
 * `webtune eval`: loss and perplexity over every loss token (each row scored alone), plus the task's metrics
 * (classification: accuracy, macro precision/recall/F1, confusion matrix; instruction: exact match). Prints a
 * table, then one JSON line. With `--few-shot k --train file`, the few-shot baseline: each row scored with k
 * seeded examples of the training file in front (see core's fewShotRows), the prompt length and the examples'
 * lines printed too, and the JSON line's `fewShot` holding the report. With `--retrieve k --train file`, one table
 * comparing the base model, the few-shot baseline (with --few-shot), the retrieval baseline and the tuned adapter
 * (with --adapter) on the same rows (eval_compare.ts). An adapter with a classification head
 * (SEQ_CLS / TOKEN_CLS) is scored through its head: `{"text","label"}` rows by the pooled argmax, tagged rows by
 * entity-level precision, recall and F1 per type.
 */
import { readFile } from "node:fs/promises";
import {
  ConfigError,
  evaluate,
  fewShotEvaluate,
  sequenceExample,
  taggedDataset,
  type ClassificationHead,
  type EvaluationResult,
  type Example,
  type PretrainedModel,
} from "@webtune/core";
import { loadForCommand, readDataset } from "./common.js";
import {
  compareCommand,
  RETRIEVERS,
  type RetrieverName,
} from "./eval_compare.js";

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
  retrieve?: number;
  retriever?: string;
}): Promise<void> {
  const retriever = checkExampleFlags(o);
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  // The adapter's head, or the head a merged classification model was saved with.
  const head = model.lm.taskHead;
  if (head) {
    const flag = o.retrieve !== undefined ? "--retrieve" : "--few-shot";
    if (o.fewShot !== undefined || o.retrieve !== undefined)
      throw new ConfigError(
        `${o.adapter ? `--adapter ${o.adapter}` : `--model ${o.model}`} answers with a ${head.task} head: a prompt ` +
          `with examples is no baseline for it; leave ${flag} out.`,
      );
    const rows = await headRows(o.data, model, head, o.seqLen);
    const result = await evaluate(peft, model.tokenizer!, rows, {
      format: head.task === "seq-cls" ? "classification" : "tagged",
      head,
    });
    process.stdout.write(
      `${[...numberRows(result), ...entityRows(result)].join("\n")}\n${JSON.stringify(result)}\n`,
    );
    peft.dispose();
    model.dispose();
    return;
  }
  // Every row is scored, repeated ones too: evaluation files are not deduplicated.
  const data = await readDataset(o.data, model, {
    format: o.format,
    seqLen: o.seqLen,
    evaluation: true,
    skipBadRows: o.skipBadRows,
  });
  const options = { format: data.format, labels: data.labels };
  if (o.retrieve !== undefined) {
    const train = await readTrain(o.train!, model, data.format, o);
    await compareCommand(peft, model, data, train, {
      ...o,
      retrieve: o.retrieve,
      retriever,
    });
    peft.dispose();
    model.dispose();
    return;
  }
  let lines: string[] = [];
  let fewShot: object | undefined;
  let result;
  if (o.fewShot === undefined) {
    result = await evaluate(peft, model.tokenizer!, data.examples, options);
  } else {
    const train = await readTrain(o.train!, model, data.format, o);
    const scored = await fewShotEvaluate(peft, model.tokenizer!, {
      ...options,
      train,
      test: data.examples,
      k: o.fewShot,
      seed: o.seed ?? 0,
      names: { k: "--few-shot", train: "--train" },
    });
    const { report } = scored;
    result = scored.result;
    const trainLines = report.shots.map((i) => train[i]!.line);
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
  const table = numberRows(result);
  const json = fewShot === undefined ? result : { ...result, fewShot };
  process.stdout.write(
    `${[...table, ...lines].join("\n")}\n${JSON.stringify(json)}\n`,
  );
  peft.dispose();
  model.dispose();
}

/** The flags that put examples in prompts, checked before anything loads; the retriever --retriever names. */
function checkExampleFlags(o: {
  fewShot?: number;
  train?: string;
  retrieve?: number;
  retriever?: string;
}): RetrieverName {
  if (o.fewShot !== undefined && o.train === undefined)
    throw new ConfigError(
      "--few-shot needs --train: the training file its examples are drawn from.",
    );
  if (o.retrieve !== undefined && o.train === undefined)
    throw new ConfigError(
      "--retrieve needs --train: the training file its examples are retrieved from.",
    );
  if (
    o.train !== undefined &&
    o.fewShot === undefined &&
    o.retrieve === undefined
  )
    throw new ConfigError(
      "--train is read only with --few-shot or --retrieve: pass --few-shot <k> to score with k of its rows in each " +
        "prompt, or --retrieve <k> for each row's k nearest.",
    );
  if (o.retriever !== undefined && o.retrieve === undefined)
    throw new ConfigError(
      `--retriever is read only with --retrieve: pass --retrieve <k> to put each row's k nearest --train rows in its prompt.`,
    );
  const retriever = o.retriever ?? "bm25";
  if (!(RETRIEVERS as readonly string[]).includes(retriever))
    throw new ConfigError(
      `--retriever is "${retriever}"; expected ${RETRIEVERS.join(" or ")}.`,
    );
  return retriever as RetrieverName;
}

/** The examples as training reads them (deduplicated), in the test file's format. */
async function readTrain(
  file: string,
  model: PretrainedModel,
  format: string,
  o: { seqLen: number; skipBadRows?: boolean },
): Promise<Example[]> {
  const train = await readDataset(file, model, {
    format,
    seqLen: o.seqLen,
    flag: "--train",
    skipBadRows: o.skipBadRows,
  });
  return train.examples;
}

/** Each number of a result, one a line. */
function numberRows(result: EvaluationResult): string[] {
  return Object.entries(result)
    .filter(([, v]) => typeof v === "number")
    .map(
      ([k, v]) =>
        `${k.padEnd(12)} ${Number.isInteger(v) ? v : (v as number).toFixed(6)}`,
    );
}

/** NER: precision, recall, F1 and support of each entity type. */
export function entityRows(result: EvaluationResult): string[] {
  const types = result.entities?.perType;
  if (!types) return [];
  const f = (v: number) => v.toFixed(4).padStart(10);
  return [
    `${"entity".padEnd(12)}${"precision".padStart(10)}${"recall".padStart(10)}${"f1".padStart(10)}${"support".padStart(10)}`,
    ...Object.entries(types).map(
      ([type, s]) =>
        `${type.padEnd(12)}${f(s.precision)}${f(s.recall)}${f(s.f1)}${String(s.support).padStart(10)}`,
    ),
  ];
}

/** The rows of `file` as the adapter's head reads them: labels (or tags) from the head's own id2label. */
async function headRows(
  file: string,
  model: PretrainedModel,
  head: ClassificationHead,
  seqLen: number,
): Promise<Example[]> {
  if (head.task === "seq-cls")
    return (
      await readDataset(file, model, {
        format: "classification",
        // Read whole: the head's row is the text alone, cut to seqLen by sequenceExample (the language model's
        // rendering, text and label, must not decide which rows are too long).
        seqLen: Infinity,
        evaluation: true,
      })
    ).examples.map((e) =>
      sequenceExample(e, model.tokenizer!, head.labels, {
        maxLength: seqLen,
        padId: head.padTokenId,
      }),
    );
  const text = await readFile(file, "utf8").catch(
    (e: NodeJS.ErrnoException) => {
      throw new ConfigError(
        `cannot read --data ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}.`,
      );
    },
  );
  return taggedDataset(text, model.tokenizer!, {
    source: file,
    maxLength: seqLen,
    labelSubwords: "first",
    labels: head.labels,
  }).examples;
}

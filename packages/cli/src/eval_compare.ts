/**
 * `webtune eval --retrieve k --train file`: one table comparing, on the same test rows, the base model, the
 * few-shot baseline (with --few-shot), the retrieval baseline (each row's k nearest --train rows in its prompt,
 * see core's retrievalRows) and the tuned adapter (with --adapter). A row per method; columns are the task's
 * metrics, loss and perplexity, and the mean prompt tokens. Then notes (which examples, rows shortened, test rows
 * also in --train), then one JSON line `{base, fewShot, retrieval, tuned}`. The base model and the baselines are
 * scored with the adapter disabled.
 */
import {
  evaluate,
  fewShotEvaluate,
  fewShotRows,
  hiddenStateRetriever,
  retrievalEvaluate,
  retrievalRows,
  retrievalText,
  type DatasetFormat,
  type EvaluationResult,
  type Example,
  type FewShotReport,
  type LoraModel,
  type PretrainedModel,
  type RetrievalReport,
} from "@webtune/core";

/** The retrievers `--retriever` names. */
export const RETRIEVERS = ["bm25", "hidden"] as const;
export type RetrieverName = (typeof RETRIEVERS)[number];

export interface CompareFlags {
  adapter?: string;
  retrieve: number;
  retriever: RetrieverName;
  fewShot?: number;
  seed?: number;
}

interface Scored {
  result: EvaluationResult;
  promptTokens: { mean: number; max: number };
}

/** Scores every method on `test` and prints the table, the notes and the JSON line. */
export async function compareCommand(
  peft: LoraModel,
  model: PretrainedModel,
  data: { format: DatasetFormat; labels?: string[]; examples: Example[] },
  train: readonly Example[],
  o: CompareFlags,
): Promise<void> {
  const tok = model.tokenizer!;
  const test = data.examples;
  const options = { format: data.format, labels: data.labels, train, test };
  const fewShotOptions = {
    ...options,
    k: o.fewShot ?? 0,
    seed: o.seed ?? 0,
    names: { k: "--few-shot", train: "--train" },
  };
  const retrieveOptions = {
    ...options,
    k: o.retrieve,
    names: { k: "--retrieve", train: "--train" },
  };
  // Refuse a bad k now, before any scoring (no test rows: nothing is built).
  fewShotRows(tok, { ...fewShotOptions, test: [] });
  retrievalRows(tok, { ...retrieveOptions, test: [] });
  const plainPrompt = fewShotRows(tok, { ...options, k: 0 }).report
    .promptTokens;
  const baselines = await peft.withAdaptersDisabled(async () => {
    const base = await evaluate(peft, tok, test, options);
    const fewShot =
      o.fewShot === undefined
        ? undefined
        : await fewShotEvaluate(peft, tok, fewShotOptions);
    const retriever =
      o.retriever === "hidden"
        ? await hiddenStateRetriever(
            model,
            tok,
            train.map((e) => retrievalText(tok, e, data.format)),
            test.map((e) => retrievalText(tok, e, data.format)),
          )
        : undefined;
    const retrieval = await retrievalEvaluate(peft, tok, {
      ...retrieveOptions,
      retriever,
    });
    return { base, fewShot, retrieval };
  });
  const tuned = o.adapter
    ? await evaluate(peft, tok, test, options)
    : undefined;
  const { fewShot, retrieval } = baselines;
  const plain = (result: EvaluationResult) => ({
    result,
    promptTokens: plainPrompt,
  });
  const rows: [string, Scored][] = [["base", plain(baselines.base)]];
  if (fewShot) rows.push([`${fewShot.report.k}-shot`, scored(fewShot)]);
  rows.push([
    `${retrieval.report.retriever} k=${o.retrieve}`,
    scored(retrieval),
  ]);
  if (tuned) rows.push(["tuned", plain(tuned)]);
  const lines = [
    ...table(rows),
    ...(fewShot ? fewShotNotes(fewShot.report, train) : []),
    ...retrievalNotes(retrieval.report, test.length),
  ];
  const entry = (s: Scored) => ({ ...s.result, promptTokens: s.promptTokens });
  const json = {
    base: entry(rows[0]![1]),
    ...(fewShot && {
      fewShot: {
        ...entry(scored(fewShot)),
        report: {
          ...fewShot.report,
          lines: fewShot.report.shots.map((i) => train[i]!.line),
        },
      },
    }),
    retrieval: {
      ...entry(scored(retrieval)),
      report: {
        ...retrieval.report,
        lines: retrieval.report.shots.map((s) => s.map((i) => train[i]!.line)),
      },
    },
    ...(tuned && {
      tuned: entry({ result: tuned, promptTokens: plainPrompt }),
    }),
  };
  process.stdout.write(`${lines.join("\n")}\n${JSON.stringify(json)}\n`);
}

function scored(s: {
  result: EvaluationResult;
  report: { promptTokens: { mean: number; max: number } };
}): Scored {
  return { result: s.result, promptTokens: s.report.promptTokens };
}

/** A row per method; the metrics the base result has, then the mean prompt tokens. */
function table(rows: [string, Scored][]): string[] {
  const first = rows[0]![1].result;
  const keys = (
    ["accuracy", "f1", "exactMatch", "loss", "perplexity"] as const
  ).filter((k) => typeof first[k] === "number");
  const fmt = (v: number | undefined) =>
    (v === undefined ? "–" : v.toFixed(4)).padStart(12);
  return [
    `${"".padEnd(14)}${keys.map((k) => k.padStart(12)).join("")}${"prompt".padStart(10)}`,
    ...rows.map(
      ([name, s]) =>
        `${name.padEnd(14)}${keys.map((k) => fmt(s.result[k])).join("")}${s.promptTokens.mean.toFixed(1).padStart(10)}`,
    ),
  ];
}

function fewShotNotes(
  report: FewShotReport,
  train: readonly Example[],
): string[] {
  const lines = report.shots.map((i) => train[i]!.line);
  return [
    `few-shot     k=${report.k} seed=${report.seed}${report.balanced ? " (balanced across labels)" : ""}, --train lines ${lines.join(", ") || "none"}`,
    ...(report.shortened > 0
      ? [
          `             ${report.shortened} rows got fewer examples to fit the model's positions (fewest: ${report.minShots})`,
        ]
      : []),
  ];
}

function retrievalNotes(report: RetrievalReport, rows: number): string[] {
  const out = [
    `retrieval    k=${report.k} by ${report.retriever}, the nearest example last; prompt ${report.promptTokens.mean.toFixed(1)} tokens mean, ${report.promptTokens.max} max`,
  ];
  if (report.fewerMatches > 0)
    out.push(
      `             ${report.fewerMatches} rows matched fewer than ${report.k} --train rows (fewest examples: ${report.minShots})`,
    );
  if (report.shortened > 0)
    out.push(
      `             ${report.shortened} rows got fewer examples to fit the model's positions (fewest: ${report.minShots})`,
    );
  if (report.duplicates > 0) {
    const shown = report.duplicateLines.slice(0, 10).join(", ");
    const more = report.duplicates > 10 ? ", ..." : "";
    out.push(
      `warning: ${report.duplicates} of ${rows} test rows are also in --train (--data lines ${shown}${more}); retrieval ` +
        "puts them in their own prompts, so its scores overstate it. Remove them from one of the files.",
    );
  }
  return out;
}

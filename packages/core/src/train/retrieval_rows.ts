/**
 * The retrieval-augmented baseline (RAG in place of fine-tuning): the base model scored on the test rows with,
 * in front of each, the k training rows nearest it, so a tuning result can be read against "look up similar
 * examples and prompt with them".
 *
 * - Nearest: by a {@link Retriever} over the training rows' {@link retrievalText} (BM25 by default), queried with
 *   the test row's own text: its prompt, never its answer.
 * - Order: the nearest example last, next to the test row; the rest before it, least similar first.
 * - Rendering, scoring and rows too long: as the few-shot baseline (few_shot.ts, {@link rowsWithShots}); examples
 *   are dropped from the front, so the least similar go first.
 * - Leaks: test rows whose text is a training row's are counted, since the example retrieved for them may hold the
 *   answer.
 */
import type { Tokenizer } from "../models/tokenizer.js";
import { ConfigError } from "../errors.js";
import type { DatasetFormat, Example } from "./data/types.js";
import type { EvaluationResult, Scorer } from "./evaluate.js";
import {
  checkShotCount,
  defaultSeparator,
  rowsWithShots,
  scoreWithShots,
  SHOT_FORMATS,
  type FewShotOptionNames,
  type FewShotTokenizer,
} from "./few_shot.js";
import { bm25Retriever, retrievalText, type Retriever } from "./retrieval.js";

export interface RetrievalOptions {
  /** The rows examples are retrieved from: the task's training rows. */
  train: readonly Example[];
  /** The rows scored, each with its nearest training rows in front. */
  test: readonly Example[];
  /** Examples in each prompt: an integer from 1 to the number of training rows. */
  k: number;
  /** Over `train`'s rows, in order. Default: {@link bm25Retriever} over their {@link retrievalText}. */
  retriever?: Retriever;
  /** The rows' format: completion, instruction or classification. */
  format: DatasetFormat;
  /** The classes, for classification (as evaluate() takes them). */
  labels?: string[];
  /** The model's positions; longer rows lose examples from the front. Default: no limit. */
  maxPositions?: number;
  /** Instruction data: the greedy budget per row, as evaluate() takes it. */
  exactMatchTokens?: number;
  /** After each example. Default: the EOS token's text, else `"\n\n"`. */
  separator?: string;
  /** How messages name `k` and `train`. */
  names?: Partial<FewShotOptionNames>;
}

export interface RetrievalReport {
  k: number;
  /** The retriever's name: "bm25", "hidden", ... */
  retriever: string;
  separator: string;
  /** Per test row, the examples in its prompt (indices into `train`), in prompt order: the nearest last. */
  shots: number[][];
  /** As the few-shot report's: tokens each row is conditioned on before its scored tokens, mean and max. */
  promptTokens: { mean: number; max: number };
  /** Rows that lost examples to stay within `maxPositions`. */
  shortened: number;
  /** Rows for which the retriever found fewer than k training rows (BM25: no term in common with the rest). */
  fewerMatches: number;
  /** The fewest examples a row got. */
  minShots: number;
  /** Test rows whose text is also a training row's (a leak: the retrieved example may hold the answer). */
  duplicates: number;
  /** Those test rows' lines. */
  duplicateLines: number[];
}

/** The retrieval rows, ready for evaluate(), and how they were made. */
export interface RetrievalRows {
  rows: Example[];
  report: RetrievalReport;
}

/**
 * The test rows with each one's k nearest training rows in front (see the file header).
 *
 * @example
 * ```ts
 * const { rows, report } = retrievalRows(tok, { train, test, k: 4, format: "instruction" });
 * report.shots[0]; // the first test row's examples, the nearest last
 * ```
 */
export function retrievalRows(
  tokenizer: FewShotTokenizer,
  options: RetrievalOptions,
): RetrievalRows {
  const { train, test, k, format } = options;
  checkShotCount(options, 1);
  if (!SHOT_FORMATS.includes(format))
    throw new ConfigError(
      `Retrieval prompts are built for ${SHOT_FORMATS.join(", ")} data; this is ${format} data.`,
    );
  const trainTexts = train.map((e) => retrievalText(tokenizer, e, format));
  const retriever = options.retriever ?? bm25Retriever(trainTexts);
  const separator = options.separator ?? defaultSeparator(tokenizer);
  let fewerMatches = 0;
  const fitted = rowsWithShots(
    tokenizer,
    test,
    (row) => {
      const hits = retriever.nearest(retrievalText(tokenizer, row, format), k);
      if (hits.length < k) fewerMatches++;
      return hits
        .map((hit) => checkedIndex(hit.index, retriever, train))
        .reverse();
    },
    { ...options, separator },
  );
  const known = new Set(trainTexts);
  const duplicateLines = test
    .filter((row) => known.has(retrievalText(tokenizer, row, format)))
    .map((row) => row.line);
  return {
    rows: fitted.rows,
    report: {
      k,
      retriever: retriever.name,
      separator,
      shots: fitted.kept,
      promptTokens: fitted.promptTokens,
      shortened: fitted.shortened,
      fewerMatches,
      minShots: fitted.kept.reduce((m, s) => Math.min(m, s.length), k),
      duplicates: duplicateLines.length,
      duplicateLines,
    },
  };
}

/**
 * The retrieval baseline's scores: {@link retrievalRows} scored by evaluate(), so the metrics are the format's own
 * on the same test rows. Score the base model (with a LoraModel: inside `withAdaptersDisabled`). `maxPositions`
 * defaults to the scorer's.
 *
 * @example
 * ```ts
 * const { result, report } = await peft.withAdaptersDisabled(() =>
 *   retrievalEvaluate(peft, tok, { train, test, k: 4, format: data.format, labels: data.labels }),
 * );
 * console.log(result.exactMatch, report.duplicates);
 * ```
 */
export async function retrievalEvaluate(
  scorer: Scorer & { readonly dims: { maxPositions?: number } },
  tokenizer: Tokenizer,
  options: RetrievalOptions & { signal?: AbortSignal },
): Promise<{ result: EvaluationResult; report: RetrievalReport }> {
  return scoreWithShots(scorer, tokenizer, options, (maxPositions) =>
    retrievalRows(tokenizer, { ...options, maxPositions }),
  );
}

/** A retriever built over other rows than `train` would put the wrong examples in: refuse its indices. */
function checkedIndex(
  index: number,
  retriever: Retriever,
  train: readonly Example[],
): number {
  if (!Number.isSafeInteger(index) || index < 0 || index >= train.length)
    throw new ConfigError(
      `retriever "${retriever.name}" returned row ${index}, but train has ${train.length} rows; build it over the training rows, in order.`,
    );
  return index;
}

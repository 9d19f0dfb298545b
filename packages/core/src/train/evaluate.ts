/**
 * Evaluation on held-out examples: loss and perplexity over every loss token (each row scored alone), plus the
 * task's metrics: for classification each label scored by its log-likelihood after the same prompt; for
 * instruction data the exact match of greedy generations. And the forgetting check: the same loss on a general
 * reference text with the adapter off and on.
 */
import type { GenerateOptions, GenerateResult } from "../models/generate.js";
import type { Tokenizer } from "../models/tokenizer.js";
import type { LoraModel } from "../lora/model.js";
import {
  IGNORE_INDEX,
  type DatasetFormat,
  type Example,
} from "./data/types.js";
import {
  classificationMetrics,
  confusionMatrix,
  exactMatch,
} from "./metrics.js";
import * as tf from "@tensorflow/tfjs";
import { trimBufferPool } from "../backend/buffers.js";
import { lossTokens } from "./trainer.js";
import type { ClassificationHead } from "../models/heads.js";
import type { NerMetrics } from "./ner_metrics.js";
import { evaluateHead } from "./head_evaluate.js";
import type { LabelScores } from "../models/prefix_scoring.js";

/** What evaluation needs of a model: logits, a loss over labelled ids, and generation. */
export interface Scorer {
  readonly dims: { vocabSize: number };
  logits(ids: number[][]): tf.Tensor3D;
  loss(ids: number[][], labels?: number[][]): tf.Scalar;
  generate(
    prompt: string | number[],
    options?: GenerateOptions,
  ): Promise<GenerateResult>;
  greedyBatch(
    prompts: number[][],
    maxNewTokens: number[],
    options?: { signal?: AbortSignal },
  ): Promise<GenerateResult[]>;
  /**
   * Each label's summed NLL after each prompt with the prompt run once (see models/prefix_scoring.ts); undefined
   * where the compiled decoder is not available, and then labels are scored as whole rows.
   */
  labelNlls?(
    prompts: number[][],
    labels: number[][],
    signal?: AbortSignal,
  ): Promise<LabelScores | undefined>;
}

export interface EvaluationResult {
  loss: number;
  perplexity: number;
  /** Tokens the loss is over. */
  tokens: number;
  rows: number;
  accuracy?: number;
  precision?: number;
  recall?: number;
  f1?: number;
  labels?: string[];
  confusionMatrix?: number[][];
  /** Instruction data: the share of greedy generations equal to the reference completion. */
  exactMatch?: number;
  /**
   * Token classification: entity-level scores (strict IOB2 spans), per type and micro-averaged; `precision`,
   * `recall` and `f1` are then the micro entity scores and `accuracy` the share of words tagged right.
   */
  entities?: NerMetrics;
  /** Each row's own scores, in row order, when evaluate() was asked to `keepRows` (what monitoring compares). */
  rowScores?: RowScore[];
}

/**
 * One evaluated row: what a later comparison (monitoring, drift) needs to resample rows and to see how the inputs
 * and labels moved.
 */
export interface RowScore {
  /** Summed NLL of the row's loss tokens, and their count. */
  nll: number;
  tokens: number;
  /** Tokens the model reads before the answer: the prompt (instruction, classification), else every token. */
  inputTokens: number;
  /** Classification: the true label and the predicted one. */
  label?: string;
  predicted?: string;
  /** Classification and instruction: 1 when the answer was right (the label, or an exact match), else 0. */
  correct?: 0 | 1;
}

/** The summed NLL of one row's loss tokens and their count (label t is predicted at t − 1; -100 is skipped). */
export async function rowNll(
  model: Scorer,
  inputIds: number[],
  labels: number[],
): Promise<{ nll: number; tokens: number }> {
  const tokens = lossTokens([labels]);
  if (tokens === 0) return { nll: 0, tokens: 0 };
  const loss = model.loss([inputIds], [labels]);
  const mean = (await loss.data())[0]!;
  loss.dispose();
  return { nll: mean * tokens, tokens };
}

/** Logits of at most this many floats at once when scoring rows together (64 MiB). */
const SCORE_FLOATS = 1 << 24;
/**
 * Rows scored in one forward pass at most. A pass cannot be interrupted, so this bounds how long a cancelled
 * scoring takes to stop: seconds on a software adapter, milliseconds on a GPU, where 16 rows already
 * fill the step.
 */
const SCORE_ROWS = 16;

/**
 * The summed NLL and loss-token count of each row, as {@link rowNll} gives them one by one, computed for many rows
 * in one forward pass. Rows are sorted by length and right-padded to the longest of their batch, with the padding
 * out of the loss: for a causal model, padding after a row changes none of its logits. Each batch's logits stay
 * under 64 MiB.
 */
export async function rowNlls(
  model: Scorer,
  rows: { inputIds: number[]; labels: number[] }[],
  signal?: AbortSignal,
): Promise<{ nll: number; tokens: number }[]> {
  const out = rows.map((r) => ({ nll: 0, tokens: lossTokens([r.labels]) }));
  const order = rows
    .map((_, i) => i)
    .filter((i) => out[i]!.tokens > 0)
    .sort((a, b) => rows[a]!.inputIds.length - rows[b]!.inputIds.length);
  const V = model.dims.vocabSize;
  let at = 0;
  while (at < order.length) {
    signal?.throwIfAborted();
    let end = at + 1;
    // Sorted ascending, so the last row of a batch is its longest.
    while (
      end < order.length &&
      end - at < SCORE_ROWS &&
      (end + 1 - at) * rows[order[end]!]!.inputIds.length * V <= SCORE_FLOATS
    )
      end++;
    const batch = order.slice(at, end);
    const T = rows[batch.at(-1)!]!.inputIds.length;
    const pad = (xs: number[], value: number) => [
      ...xs,
      ...new Array<number>(T - xs.length).fill(value),
    ];
    const sums = await batchNll(
      model,
      batch.map((i) => pad(rows[i]!.inputIds, 0)),
      batch.map((i) => pad(rows[i]!.labels, IGNORE_INDEX)),
    );
    batch.forEach((i, b) => (out[i]!.nll = sums[b]!));
    trimBufferPool(); // every batch has its own length
    at = end;
  }
  return out;
}

/** Each row's summed NLL of its labels (label t predicted at t − 1; −100 skipped); rows of equal length. */
async function batchNll(
  model: Scorer,
  ids: number[][],
  labels: number[][],
): Promise<Float32Array> {
  const sums = tf.tidy(() => {
    const logits = model.logits(ids);
    const [B, T, V] = logits.shape;
    const logProbs = tf
      .logSoftmax(logits.slice([0, 0, 0], [B, T - 1, V]))
      .reshape([B * (T - 1) * V]);
    const at: number[] = [];
    const mask: number[] = [];
    labels.forEach((row, b) =>
      row.slice(1).forEach((label, t) => {
        at.push((b * (T - 1) + t) * V + Math.max(label, 0));
        mask.push(label === IGNORE_INDEX ? 0 : 1);
      }),
    );
    const picked = tf.gather(logProbs, tf.tensor1d(at, "int32"));
    return picked
      .mul(tf.tensor1d(mask))
      .reshape([B, T - 1])
      .sum(1)
      .neg();
  });
  const data = (await sums.data()) as Float32Array;
  sums.dispose();
  return data;
}

/** For each example, the label whose tokens (and EOS) are most likely after its prompt. */
async function predictLabels(
  model: Scorer,
  tokenizer: Tokenizer,
  examples: Example[],
  labels: string[],
  signal?: AbortSignal,
): Promise<string[]> {
  const eos = tokenizer.eosTokenId !== undefined ? [tokenizer.eosTokenId] : [];
  const labelIds = labels.map((label) => [
    ...tokenizer.encode(` ${label}`, { addSpecialTokens: false }),
    ...eos,
  ]);
  const prompts = examples.map((ex) => tokenizer.encode(ex.prompt ?? ""));
  const pick = (scores: number[]) =>
    labels[scores.indexOf(Math.min(...scores))]!;
  const shared = await model.labelNlls?.(prompts, labelIds, signal);
  if (shared) return shared.nll.map(pick);
  const candidates = prompts.flatMap((prefix) => {
    return labelIds.map((ids) => {
      const inputIds = [...prefix, ...ids];
      return {
        inputIds,
        labels: inputIds.map((id, i) =>
          i < prefix.length ? IGNORE_INDEX : id,
        ),
      };
    });
  });
  const nlls = await rowNlls(model, candidates, signal);
  return examples.map((_, e) =>
    pick(labels.map((_, l) => nlls[e * labels.length + l]!.nll)),
  );
}

/**
 * Loss, perplexity and the format's task metrics over `examples`. Every example counts, repeated ones too, so the
 * numbers match other tools' on the same file: read a file for evaluation with `dedupe: false` (deduplication is
 * for training data), and use `findOverlap` to see which test rows the training data also holds.
 *
 * @example
 * ```ts
 * const r = await evaluate(peft, model.tokenizer!, splits.test, { format: data.format, labels: data.labels });
 * console.log(r.loss, r.perplexity, r.accuracy);
 * ```
 */
export async function evaluate(
  model: Scorer,
  tokenizer: Tokenizer,
  examples: Example[],
  options: {
    /** "tagged": token classification's words and tags (with `head`). */
    format: DatasetFormat | "tagged";
    labels?: string[];
    exactMatchTokens?: number;
    /** Checked between row batches and decode steps: an abort rejects with its reason. */
    signal?: AbortSignal;
    /** The model's active classification head: the rows are scored through it (see head_evaluate.ts). */
    head?: ClassificationHead;
    /** Also give each row's own scores (`rowScores`). Default false. */
    keepRows?: boolean;
  },
): Promise<EvaluationResult> {
  if (options.head)
    return evaluateHead(model, options.head, examples, {
      signal: options.signal,
    });
  let nll = 0;
  let tokens = 0;
  const perRow = await rowNlls(model, examples, options.signal);
  for (const row of perRow) {
    nll += row.nll;
    tokens += row.tokens;
  }
  const rowScores: RowScore[] | undefined = options.keepRows
    ? perRow.map((row, i) => ({
        ...row,
        inputTokens: inputTokens(tokenizer, examples[i]!),
      }))
    : undefined;
  const result: EvaluationResult = {
    loss: nll / tokens,
    perplexity: Math.exp(nll / tokens),
    tokens,
    rows: examples.length,
  };
  if (
    options.format === "classification" &&
    options.labels &&
    options.labels.length > 0
  ) {
    const truth = examples.map((e) => e.label!);
    const predicted = await predictLabels(
      model,
      tokenizer,
      examples,
      options.labels,
      options.signal,
    );
    const m = classificationMetrics(truth, predicted, {
      labels: options.labels,
    });
    predicted.forEach((p, i) =>
      Object.assign(rowScores?.[i] ?? {}, {
        label: truth[i],
        predicted: p,
        correct: p === truth[i] ? 1 : 0,
      }),
    );
    Object.assign(result, {
      accuracy: m.accuracy,
      precision: m.macroPrecision,
      recall: m.macroRecall,
      f1: m.macroF1,
      labels: options.labels,
      confusionMatrix: confusionMatrix(truth, predicted, options.labels),
    });
  }
  if (options.format === "instruction") {
    const scoredAt = examples.flatMap((e, i) =>
      e.prompt !== undefined && e.completion !== undefined ? [i] : [],
    );
    const scored = scoredAt.map((i) => examples[i]!);
    const generated = (
      await model.greedyBatch(
        scored.map((ex) => tokenizer.encode(ex.prompt!)),
        scored.map(
          (ex) =>
            options.exactMatchTokens ??
            tokenizer.encode(ex.completion!, { addSpecialTokens: false })
              .length + 8,
        ),
        { signal: options.signal },
      )
    ).map((g) => g.text);
    if (scored.length > 0)
      result.exactMatch = exactMatch(
        generated,
        scored.map((e) => e.completion!),
      );
    scoredAt.forEach((at, i) => {
      const same = exactMatch([generated[i]!], [scored[i]!.completion!]);
      if (rowScores) rowScores[at]!.correct = same === 1 ? 1 : 0;
    });
  }
  if (rowScores) result.rowScores = rowScores;
  return result;
}

/** The tokens a row's model reads before its answer: the prompt's, or the whole row's when it has no prompt. */
function inputTokens(tokenizer: Tokenizer, row: Example): number {
  if (row.prompt === undefined) return row.inputIds.length;
  return tokenizer.encode(row.prompt).length;
}

/**
 * Catastrophic-forgetting check: loss and perplexity on general reference examples with the adapter disabled
 * (the base model) and enabled. A large positive delta means tuning cost general ability.
 */
export async function forgettingCheck(
  peft: LoraModel,
  tokenizer: Tokenizer,
  reference: Example[],
): Promise<{
  base: EvaluationResult;
  tuned: EvaluationResult;
  lossDelta: number;
}> {
  const base = await peft.withAdaptersDisabled(() =>
    evaluate(peft, tokenizer, reference, { format: "completion" }),
  );
  const tuned = await evaluate(peft, tokenizer, reference, {
    format: "completion",
  });
  return { base, tuned, lossDelta: tuned.loss - base.loss };
}

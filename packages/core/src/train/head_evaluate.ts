/**
 * Evaluation through a classification head (models/heads.ts), as HF's pipelines read one:
 * - sequence classification: the argmax of the pooled logits (rightmost non-pad token), with accuracy, macro
 *   precision/recall/F1 and the confusion matrix of metrics.ts;
 * - token classification: each word's tag from the argmax at its first subword, with entity-level precision,
 *   recall and F1 (strict IOB2 spans, per type and micro-averaged, as seqeval computes them) and word accuracy.
 * The loss is the head's mean cross-entropy over the rows' targets.
 */
import * as tf from "@tensorflow/tfjs";
import { trimBufferPool } from "../backend/buffers.js";
import { ShapeError } from "../errors.js";
import { pooledPositions, type ClassificationHead } from "../models/heads.js";
import { IGNORE_INDEX, type Example } from "./data/types.js";
import { wordPredictions } from "./data/token_tags.js";
import { classificationMetrics, confusionMatrix } from "./metrics.js";
import { nerMetrics, type NerMetrics } from "./ner_metrics.js";

/** What head evaluation needs of a model: logits [B, T, L] through its head. */
export interface HeadScorer {
  logits(ids: number[][]): tf.Tensor3D;
}

/** The result, in the fields of EvaluationResult (see evaluate.ts), plus the entity scores for NER. */
export interface HeadEvaluation {
  loss: number;
  perplexity: number;
  tokens: number;
  rows: number;
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  labels: string[];
  confusionMatrix?: number[][];
  /** Token classification: entity-level scores (strict IOB2 spans), per type and micro-averaged. */
  entities?: NerMetrics;
}

/** Rows per forward pass: it bounds how long a cancelled scoring takes to stop (see evaluate.ts). */
const SCORE_ROWS = 16;

/**
 * Scores `examples` (built for the head: `label` for a sequence, `tags` and `wordIds` for tokens) through
 * `head`, which must be the model's active head.
 *
 * @example
 * ```ts
 * const r = await evaluateHead(peft, peft.head()!, splits.test);
 * console.log(r.accuracy, r.f1, r.entities?.perType);
 * ```
 */
export async function evaluateHead(
  model: HeadScorer,
  head: ClassificationHead,
  examples: Example[],
  options: { signal?: AbortSignal } = {},
): Promise<HeadEvaluation> {
  const scored = await scoreRows(model, head, examples, options.signal);
  const tokens = scored.reduce((n, r) => n + r.tokens, 0);
  const nll = scored.reduce((n, r) => n + r.nll, 0);
  const loss = tokens > 0 ? nll / tokens : NaN;
  const base = {
    loss,
    perplexity: Math.exp(loss),
    tokens,
    rows: examples.length,
    labels: head.labels,
  };
  if (head.task === "seq-cls") {
    const truth = examples.map((e) => e.label!);
    const predicted = scored.map((r) => head.labels[r.predicted[0]!]!);
    const m = classificationMetrics(truth, predicted, { labels: head.labels });
    return {
      ...base,
      accuracy: m.accuracy,
      precision: m.macroPrecision,
      recall: m.macroRecall,
      f1: m.macroF1,
      confusionMatrix: confusionMatrix(truth, predicted, head.labels),
    };
  }
  const gold = examples.map((e) => e.tags!);
  const predicted = scored.map((r) => r.predicted.map((i) => head.labels[i]!));
  const words = gold.flat().length;
  const right = gold
    .flatMap((tags, s) => tags.map((t, w) => t === predicted[s]![w]))
    .filter(Boolean).length;
  const entities = nerMetrics(gold, predicted, "strict");
  return {
    ...base,
    accuracy: words > 0 ? right / words : 0,
    precision: entities.micro.precision,
    recall: entities.micro.recall,
    f1: entities.micro.f1,
    entities,
  };
}

interface ScoredRow {
  nll: number;
  tokens: number;
  /** Sequence: [the predicted label id]; tokens: one predicted label id per word. */
  predicted: number[];
}

async function scoreRows(
  model: HeadScorer,
  head: ClassificationHead,
  examples: Example[],
  signal: AbortSignal | undefined,
): Promise<ScoredRow[]> {
  const out: ScoredRow[] = [];
  for (let at = 0; at < examples.length; at += SCORE_ROWS) {
    signal?.throwIfAborted();
    const batch = examples.slice(at, at + SCORE_ROWS);
    out.push(...(await scoreBatch(model, head, batch)));
    trimBufferPool(); // every batch has its own length
  }
  return out;
}

/** One forward pass over right-padded rows: each row's NLL over its targets and its predictions. */
async function scoreBatch(
  model: HeadScorer,
  head: ClassificationHead,
  rows: Example[],
): Promise<ScoredRow[]> {
  const T = Math.max(...rows.map((r) => r.inputIds.length));
  const pad = head.padTokenId ?? 0;
  const ids = rows.map((r) => [
    ...r.inputIds,
    ...new Array<number>(T - r.inputIds.length).fill(pad),
  ]);
  const L = head.numLabels;
  const logProbs = tf.tidy(() => tf.logSoftmax(model.logits(ids)));
  const lp = (await logProbs.data()) as Float32Array;
  logProbs.dispose();
  const at = (b: number, t: number) => (b * T + t) * L;
  const argmax = (o: number) => {
    let best = 0;
    for (let l = 1; l < L; l++) if (lp[o + l]! > lp[o + best]!) best = l;
    return best;
  };
  const pooled = pooledPositions(ids, head.padTokenId);
  return rows.map((row, b) => {
    let nll = 0;
    let tokens = 0;
    row.labels.forEach((label, t) => {
      if (label === IGNORE_INDEX) return;
      nll -= lp[at(b, t) + label]!;
      tokens++;
    });
    if (head.task === "seq-cls")
      return { nll, tokens, predicted: [argmax(at(b, pooled[b]!))] };
    if (!row.wordIds || !row.tags)
      throw new ShapeError(
        `line ${row.line}: a token-classification row needs its words' tags and word ids.`,
      );
    const perToken = row.inputIds.map((_, t) => argmax(at(b, t)));
    return {
      nll,
      tokens,
      predicted: wordPredictions(row.wordIds, perToken, row.tags.length),
    };
  });
}

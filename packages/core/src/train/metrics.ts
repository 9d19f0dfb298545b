/**
 * Evaluation metrics in plain TypeScript (no tensors): classification metrics with scikit-learn's definitions,
 * exact match for generated text, and perplexity.
 *
 * Classification follows sklearn with `average="macro"` and `zero_division=0`. For each label L:
 *   precision_L = tp / (tp + fp)   (0 when L is never predicted)
 *   recall_L    = tp / (tp + fn)   (0 when L never occurs in y_true)
 *   f1_L        = 2·tp / (2·tp + fp + fn)   (0 when that is 0/0)
 * and each macro value is the unweighted mean over the labels. Macro F1 is the mean of the per-label F1s, not the
 * harmonic mean of macro precision and macro recall. The labels are, as in sklearn, the sorted union of y_true and
 * y_pred unless given; given labels keep their order, and items with other labels still count as false
 * positives and negatives of the listed labels (but do not appear in the confusion matrix).
 */
import { ConfigError, ShapeError } from "../errors.js";

/** A class label: a class index or a class name. */
export type Label = string | number;

/** Per-label and macro-averaged classification metrics. */
export interface ClassificationMetrics {
  /** The labels, in the order of every per-label array. */
  labels: Label[];
  precision: number[];
  recall: number[];
  f1: number[];
  /** How many items of y_true have each label. */
  support: number[];
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  /** Fraction of items with y_pred equal to y_true (over all items, listed labels or not). */
  accuracy: number;
}

/**
 * Fraction of items predicted right (sklearn's `accuracy_score`).
 *
 * @example
 * ```ts
 * accuracy([0, 1, 2, 2], [0, 2, 2, 2]); // 0.75
 * ```
 */
export function accuracy(
  yTrue: readonly Label[],
  yPred: readonly Label[],
): number {
  checkPaired(yTrue, yPred, "y_true", "y_pred");
  let right = 0;
  for (let i = 0; i < yTrue.length; i++) if (yTrue[i] === yPred[i]) right++;
  return right / yTrue.length;
}

/**
 * Per-label precision, recall, F1 and support, their macro averages, and accuracy, as sklearn's
 * `precision_recall_fscore_support(..., average=None, zero_division=0)` and its `average="macro"` means.
 *
 * @example
 * ```ts
 * const m = classificationMetrics(['pos', 'neg', 'neg'], ['pos', 'pos', 'neg']);
 * m.macroF1; // (2/3 + 2/3) / 2
 * ```
 */
export function classificationMetrics(
  yTrue: readonly Label[],
  yPred: readonly Label[],
  options: { labels?: readonly Label[] } = {},
): ClassificationMetrics {
  checkPaired(yTrue, yPred, "y_true", "y_pred");
  const labels = resolveLabels(yTrue, yPred, options.labels);
  const precision: number[] = [];
  const recall: number[] = [];
  const f1: number[] = [];
  const support: number[] = [];
  for (const label of labels) {
    let tp = 0;
    let predicted = 0;
    let actual = 0;
    for (let i = 0; i < yTrue.length; i++) {
      const t = yTrue[i] === label;
      const p = yPred[i] === label;
      if (t && p) tp++;
      if (p) predicted++;
      if (t) actual++;
    }
    const fp = predicted - tp;
    const fn = actual - tp;
    precision.push(predicted === 0 ? 0 : tp / predicted);
    recall.push(actual === 0 ? 0 : tp / actual);
    f1.push(2 * tp + fp + fn === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn));
    support.push(actual);
  }
  return {
    labels,
    precision,
    recall,
    f1,
    support,
    macroPrecision: mean(precision),
    macroRecall: mean(recall),
    macroF1: mean(f1),
    accuracy: accuracy(yTrue, yPred),
  };
}

/**
 * The confusion matrix as sklearn's `confusion_matrix`: entry [i][j] counts items whose true label is
 * `labels[i]` and whose predicted label is `labels[j]`. Items with a label outside `labels` are left out.
 *
 * @example
 * ```ts
 * confusionMatrix(['a', 'b', 'b'], ['a', 'a', 'b']); // [[1, 0], [1, 1]]: rows true, columns predicted
 * ```
 */
export function confusionMatrix(
  yTrue: readonly Label[],
  yPred: readonly Label[],
  labels?: readonly Label[],
): number[][] {
  checkPaired(yTrue, yPred, "y_true", "y_pred");
  const order = resolveLabels(yTrue, yPred, labels);
  const index = new Map(order.map((label, i) => [label, i]));
  const matrix = order.map(() => order.map(() => 0));
  for (let i = 0; i < yTrue.length; i++) {
    const row = index.get(yTrue[i]!);
    const col = index.get(yPred[i]!);
    if (row !== undefined && col !== undefined) matrix[row]![col]!++;
  }
  return matrix;
}

/**
 * Fraction of generations equal to their reference after removing trailing whitespace from both (`trimEnd`:
 * spaces, tabs, newlines and other Unicode whitespace at the end). Leading whitespace and case still count, since
 * a generation that starts differently is a different answer.
 *
 * @example
 * ```ts
 * exactMatch(['Paris\n', ' Rome'], ['Paris', 'Rome']); // 0.5
 * ```
 */
export function exactMatch(
  predictions: readonly string[],
  references: readonly string[],
): number {
  checkPaired(predictions, references, "predictions", "references");
  let same = 0;
  for (let i = 0; i < predictions.length; i++)
    if (predictions[i]!.trimEnd() === references[i]!.trimEnd()) same++;
  return same / predictions.length;
}

/**
 * Perplexity, exp of the mean negative log-likelihood (natural log) per token.
 *
 * @example
 * ```ts
 * perplexity([Math.log(2), Math.log(8)]); // exp(ln 4) = 4
 * ```
 */
export function perplexity(tokenNll: ArrayLike<number>): number {
  if (tokenNll.length === 0)
    throw new ShapeError(
      "perplexity needs at least one token NLL, got none; evaluate on a non-empty set.",
    );
  let sum = 0;
  for (let i = 0; i < tokenNll.length; i++) sum += tokenNll[i]!;
  return perplexityFromTotals(sum, tokenNll.length);
}

/**
 * Perplexity from a summed token NLL and the token count, for evaluation that accumulates over batches.
 *
 * @example
 * ```ts
 * perplexityFromTotals(nllSum, tokens); // Math.exp(nllSum / tokens)
 * ```
 */
export function perplexityFromTotals(
  totalNll: number,
  tokenCount: number,
): number {
  if (!(Number.isInteger(tokenCount) && tokenCount > 0))
    throw new ShapeError(
      `perplexity needs a token count that is an integer > 0, got ${tokenCount}.`,
    );
  return Math.exp(totalNll / tokenCount);
}

function resolveLabels(
  yTrue: readonly Label[],
  yPred: readonly Label[],
  given: readonly Label[] | undefined,
): Label[] {
  if (given) {
    if (new Set(given).size !== given.length)
      throw new ConfigError(
        `labels must be distinct, got ${JSON.stringify(given)}.`,
      );
    if (given.length === 0)
      throw new ConfigError("labels must name at least one label, got [].");
    return [...given];
  }
  const all = [...new Set([...yTrue, ...yPred])];
  const numbers = all.filter((l): l is number => typeof l === "number");
  const strings = all.filter((l): l is string => typeof l === "string");
  if (numbers.length > 0 && strings.length > 0)
    throw new ConfigError(
      `labels mix numbers and strings (${JSON.stringify(numbers[0])} and ${JSON.stringify(strings[0])}); use one kind, or pass labels explicitly.`,
    );
  // sklearn's np.unique order: numeric for numbers, code-unit order for strings.
  return numbers.length > 0
    ? numbers.sort((a, b) => a - b)
    : strings.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkPaired(
  a: readonly unknown[],
  b: readonly unknown[],
  aName: string,
  bName: string,
): void {
  if (a.length !== b.length)
    throw new ShapeError(
      `${aName} has ${a.length} items but ${bName} has ${b.length}; pass one ${bName} entry per ${aName} entry.`,
    );
  if (a.length === 0)
    throw new ShapeError(
      `${aName} and ${bName} are empty; metrics need at least one item.`,
    );
}

function mean(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

/** A training batch as the Trainer takes it, and the count of its loss tokens. */

/** One batch: right-padded ids, and labels with -100 wherever no loss is taken (HF convention). */
export interface TrainBatch {
  inputIds: number[][];
  labels: number[][];
  /**
   * A mixed batch's parts (see `mixedSequence`): its rows by source, each run as its own micro-batch whose loss is
   * the mean over its own tokens, weighted by `share` (the shares add up to 1). `inputIds` and `labels` then hold
   * every part's rows together, padded to the longest.
   */
  parts?: TrainPart[];
}

/** One source's rows of a mixed batch. */
export interface TrainPart {
  /** The source's name, e.g. "replay" or a task's. */
  source: string;
  /** This part's weight in its batch's loss. */
  share: number;
  inputIds: number[][];
  labels: number[][];
}

/** The micro-batches a batch runs as: its parts, or itself. */
export function microBatches(batch: TrainBatch): TrainBatch[] {
  return batch.parts ?? [batch];
}

/**
 * The micro-batches of one optimizer step and each one's weight in the step's loss (the weights add up to 1). A
 * plain batch weighs its share of the step's loss tokens, so the step's loss is the mean over all of them, as HF's
 * Trainer takes it; a mixed batch's weight is split among its parts by their shares, and each part's loss is the
 * mean over its own tokens, so that a source's weight does not depend on how long its rows are.
 */
export function stepMicroBatches(
  group: readonly TrainBatch[],
  shifted = true,
): {
  batches: TrainBatch[];
  weights: number[];
} {
  const tokens = group.map((b) => lossTokens(b.labels, shifted));
  const total = Math.max(
    1,
    tokens.reduce((a, b) => a + b, 0),
  );
  const batches: TrainBatch[] = [];
  const weights: number[] = [];
  group.forEach((batch, i) => {
    const weight = tokens[i]! / total;
    if (!batch.parts) {
      batches.push(batch);
      weights.push(weight);
      return;
    }
    // A part without loss tokens (every row truncated away) carries none of the weight.
    const scored = batch.parts.filter((p) => lossTokens(p.labels, shifted) > 0);
    const shares = scored.reduce((a, p) => a + p.share, 0);
    for (const part of scored) {
      batches.push(part);
      weights.push((weight * part.share) / shares);
    }
  });
  return { batches, weights };
}

/**
 * The training batches of a run, read by index in order: an array, or a lazy sequence that makes each batch when it
 * is read (`epochSequence`), so that many epochs cost no memory.
 */
export interface BatchSequence {
  readonly length: number;
  at(index: number): TrainBatch | undefined;
  /**
   * How many leading batches hold every row shape of the sequence (one epoch of a reshuffled dataset holds every
   * example): what the Trainer scans to plan the largest step. Default: all of them.
   */
  readonly epochLength?: number;
}

/**
 * Tokens that carry a loss: labels[t] for t ≥ 1 that are not -100 (label t is predicted at t − 1); unshifted (a
 * classification head's targets, each position's own), every label that is not -100.
 */
export function lossTokens(labels: number[][], shifted = true): number {
  let n = 0;
  for (const row of labels)
    for (let t = shifted ? 1 : 0; t < row.length; t++) if (row[t] !== -100) n++;
  return n;
}

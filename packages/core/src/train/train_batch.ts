/** A training batch as the Trainer takes it, and the count of its loss tokens. */

/** One batch: right-padded ids, and labels with -100 wherever no loss is taken (HF convention). */
export interface TrainBatch {
  inputIds: number[][];
  labels: number[][];
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

/** Tokens that carry a loss: labels[t] for t ≥ 1 that are not -100 (label t is predicted at t − 1). */
export function lossTokens(labels: number[][]): number {
  let n = 0;
  for (const row of labels)
    for (let t = 1; t < row.length; t++) if (row[t] !== -100) n++;
  return n;
}

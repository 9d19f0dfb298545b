/** A training batch as the Trainer takes it, and the count of its loss tokens. */

/** One batch: right-padded ids, and labels with -100 wherever no loss is taken (HF convention). */
export interface TrainBatch {
  inputIds: number[][];
  labels: number[][];
}

/** Tokens that carry a loss: labels[t] for t ≥ 1 that are not -100 (label t is predicted at t − 1). */
export function lossTokens(labels: number[][]): number {
  let n = 0;
  for (const row of labels)
    for (let t = 1; t < row.length; t++) if (row[t] !== -100) n++;
  return n;
}

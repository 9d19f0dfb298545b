/**
 * Contamination between training and evaluation data: test rows whose record also appears in the training data,
 * compared as deduplication compares rows (the fields the format reads), through {@link Example.key}.
 */
import { keyDigest } from "../../hash.js";
import type { Example } from "./types.js";

/** Test rows that also appear in the training data. */
export interface Overlap {
  /** How many test examples have a record that some training example has too. */
  rows: number;
  /** Their lines in the test file (1-based, file order), at most `maxLines` of them. */
  lines: number[];
}

/**
 * The test examples whose record is also in `train`: a model scored on them has seen their answers. Both sides are
 * compared on {@link Example.key} (set by buildDataset); an example without one is compared on its token ids and
 * labels.
 *
 * @example
 * ```ts
 * const { rows, lines } = findOverlap(split.train, test.examples);
 * if (rows > 0) console.warn(`${rows} test rows are also in the training data (lines ${lines.join(", ")})`);
 * ```
 */
export function findOverlap(
  train: readonly Example[],
  test: readonly Example[],
  maxLines = 10,
): Overlap {
  const seen = new Set(train.map(exampleKey));
  const lines: number[] = [];
  let rows = 0;
  for (const e of test) {
    if (!seen.has(exampleKey(e))) continue;
    rows++;
    lines.push(e.line);
  }
  return { rows, lines: lines.sort((a, b) => a - b).slice(0, maxLines) };
}

function exampleKey(e: Example): string {
  return e.key ?? keyDigest(JSON.stringify([e.inputIds, e.labels]));
}

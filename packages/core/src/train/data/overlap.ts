/**
 * Contamination between training and evaluation data: test rows whose record also appears in the training data,
 * compared as deduplication compares rows (the fields the format reads), through {@link Example.key}.
 */
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

/**
 * A 64-bit digest of a record key as 16 hex digits (two multiply-xorshift lanes over the UTF-16 code units, as
 * cyrb53). Not cryptographic: two different records collide with probability about n² / 2⁶⁵ among n rows.
 */
export function keyDigest(key: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 =
    Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^
    Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 =
    Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^
    Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  const hex = (h: number) => (h >>> 0).toString(16).padStart(8, "0");
  return hex(h2) + hex(h1);
}

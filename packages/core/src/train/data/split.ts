/**
 * Seeded train/validation/test splits, stratified by label for classification.
 */
import { ConfigError } from "../../errors.js";
import { checkInteger, mulberry32, shuffled, streamSeed } from "./random.js";
import type { Example } from "./types.js";

export interface SplitOptions {
  /** Fraction for validation, in [0, 1). Default 0. */
  val?: number;
  /** Fraction for test, in [0, 1). Default 0; `val + test` must be below 1. */
  test?: number;
  /** Integer seed; the same seed and examples give the same split everywhere (see random.ts for the PRNG). */
  seed: number;
  /** Split each label's examples in the same proportions. Default: true when every example has a label. */
  stratify?: boolean;
}

export interface Splits<T> {
  train: T[];
  val: T[];
  test: T[];
}

const SPLIT_STREAM = 0x5311;

/**
 * Splits examples into train, validation and test sets. Each group (each label when stratified, else all) is
 * shuffled with the seed and cut into `round(n·val)` validation and `round(n·test)` test examples, the rest train;
 * a split whose fraction is above 0 gets at least one example of the group when the group is large enough to
 * leave one for training. Each split keeps the examples' original order.
 *
 * @example
 * ```ts
 * const { train, val, test } = splitDataset(examples, { val: 0.1, test: 0.1, seed: 42 });
 * ```
 */
export function splitDataset<T extends Pick<Example, "label">>(
  examples: readonly T[],
  options: SplitOptions,
): Splits<T> {
  const val = options.val ?? 0;
  const test = options.test ?? 0;
  checkFractions(val, test);
  checkInteger(options.seed, "seed");
  const stratify =
    options.stratify ??
    (examples.length > 0 && examples.every((e) => e.label !== undefined));
  const random = mulberry32(streamSeed(options.seed, SPLIT_STREAM));
  const which = new Array<keyof Splits<T>>(examples.length).fill("train");
  for (const group of groups(examples, stratify)) {
    const order = shuffled(group, random);
    const { nVal, nTest } = splitCounts(order.length, val, test);
    order.forEach((index, k) => {
      which[index] = k < nVal ? "val" : k < nVal + nTest ? "test" : "train";
    });
  }
  const out: Splits<T> = { train: [], val: [], test: [] };
  examples.forEach((e, i) => out[which[i]!].push(e));
  return out;
}

/** Indices grouped by label (labels in sorted order), or one group of all. */
function groups(
  examples: readonly Pick<Example, "label">[],
  stratify: boolean,
): number[][] {
  if (!stratify) return [examples.map((_, i) => i)];
  const byLabel = new Map<string, number[]>();
  examples.forEach((e, i) => {
    const key = e.label ?? "";
    const group = byLabel.get(key);
    if (group) group.push(i);
    else byLabel.set(key, [i]);
  });
  return [...byLabel.keys()].sort().map((k) => byLabel.get(k)!);
}

/** How many of `n` examples go to validation and test: rounded, at least one each when possible, one left to train. */
export function splitCounts(
  n: number,
  val: number,
  test: number,
): { nVal: number; nTest: number } {
  let nVal = Math.round(n * val);
  let nTest = Math.round(n * test);
  const room = Math.max(n - 1, 0);
  while (nVal + nTest > room) {
    if (nTest >= nVal)
      nTest--; // on a tie, validation keeps more
    else nVal--;
  }
  if (val > 0 && nVal === 0 && nVal + nTest < room) nVal = 1;
  if (test > 0 && nTest === 0 && nVal + nTest < room) nTest = 1;
  return { nVal, nTest };
}

function checkFractions(val: number, test: number): void {
  const ok = (f: number) => Number.isFinite(f) && f >= 0 && f < 1;
  if (ok(val) && ok(test) && val + test < 1) return;
  throw new ConfigError(
    `Split fractions val=${val}, test=${test} are not usable; expected each in [0, 1) with val + test < 1, ` +
      `e.g. { val: 0.1, test: 0.1 } (the rest is train).`,
  );
}

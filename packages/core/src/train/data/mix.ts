/**
 * Mixed batches: every batch draws its rows from several sources at once, in proportion to their weights. What
 * replay (general text mixed into a task's batches, against forgetting) and multitask training (several tasks in
 * one adapter) are made of.
 *
 * Each source is read in its own seeded order, reshuffled at each pass over it, so a small source repeats while a
 * large one is still on its first pass. A batch's rows are apportioned by error diffusion: every batch adds each
 * source's expected rows (batchSize × weight) to its credit and takes the whole rows, the leftover rows going to
 * the largest remainders, so that over any run of batches each source gets its share to within a row. Each source's
 * rows form one part of the batch (see TrainBatch.parts): the part's loss is the mean over its own tokens, weighted
 * by its share of the batch's rows, so that replayed text of long rows does not drown a task whose answer is a
 * token or two.
 */
import { ConfigError } from "../../errors.js";
import type { BatchSequence, TrainBatch } from "../train_batch.js";
import { padBatch, type Tokenized } from "./batch.js";
import { checkInteger, mulberry32, shuffled, streamSeed } from "./random.js";

/** One source of a mixture. */
export interface MixSource {
  /** Names the source in messages and in the batch's parts, e.g. "replay" or a task's name. */
  name: string;
  examples: readonly Tokenized[];
  /** Its share of every batch's rows, relative to the other sources' (they need not add up to 1). */
  weight: number;
  /**
   * Replayed data rides along: it does not count towards the epochs, which are passes over the other sources'
   * rows. Default false.
   */
  replay?: boolean;
}

export interface MixOptions {
  batchSize: number;
  /** The token id written on padding. */
  padId: number;
  seed: number;
  /**
   * Passes over the sources' rows (all but the replayed ones): the sequence is as long as it takes to draw that
   * many rows from them at their share of each batch.
   */
  epochs: number;
}

const MIX_STREAM = 0x313d;

/**
 * Temperature-scaled mixing weights from the sources' sizes (as T5 and multilingual models mix tasks): each
 * source's weight is its rows to the power 1/T, so T = 1 samples in proportion to size (as concatenating the
 * files would) and a larger T moves towards equal shares, so that a small task is not drowned.
 *
 * @example
 * ```ts
 * temperatureWeights([3000, 300], 1); // [0.909, 0.091]
 * temperatureWeights([3000, 300], 3); // [0.683, 0.317]
 * ```
 */
export function temperatureWeights(
  sizes: readonly number[],
  temperature: number,
): number[] {
  if (!(Number.isFinite(temperature) && temperature > 0))
    throw new ConfigError(
      `the mixing temperature must be above 0, got ${temperature}.`,
    );
  const raw = sizes.map((n) => n ** (1 / temperature));
  const total = raw.reduce((a, b) => a + b, 0);
  return raw.map((w) => w / total);
}

/**
 * The batches of a mixture, made as they are read. Batch `i` is the same whatever was read before it.
 *
 * @example
 * ```ts
 * // A quarter of every batch is general text, against forgetting.
 * const train = mixedSequence(
 *   [
 *     { name: "task", examples: splits.train, weight: 0.75 },
 *     { name: "replay", examples: general.examples, weight: 0.25, replay: true },
 *   ],
 *   { batchSize: 16, padId, seed: 0, epochs: 1 },
 * );
 * train.at(0)!.parts; // [{ source: "task", share: 0.75, ... 12 rows }, { source: "replay", share: 0.25, ... 4 rows }]
 * ```
 */
export function mixedSequence(
  sources: readonly MixSource[],
  options: MixOptions,
): BatchSequence & { at(index: number): TrainBatch | undefined } {
  checkMix(sources, options);
  const { batchSize, padId, seed } = options;
  const total = sources.reduce((a, s) => a + s.weight, 0);
  const shares = sources.map((s) => s.weight / total);
  const counted = sources.filter((s) => !s.replay);
  const countedShare = shares
    .filter((_, i) => !sources[i]!.replay)
    .reduce((a, b) => a + b, 0);
  const rows = counted.reduce((n, s) => n + s.examples.length, 0);
  const length = Math.ceil(
    (rows * options.epochs) / (batchSize * countedShare) - 1e-9,
  );
  const epochLength = Math.ceil(rows / (batchSize * countedShare) - 1e-9);
  const starts = apportion(shares, batchSize, length);
  const orders = sources.map(() => new Map<number, readonly Tokenized[]>());
  // Row k of source s: pass ⌊k / n⌋ of its own seeded order (one pass's order kept at a time).
  const row = (s: number, k: number): Tokenized => {
    const examples = sources[s]!.examples;
    const pass = Math.floor(k / examples.length);
    let order = orders[s]!.get(pass);
    if (!order) {
      orders[s]!.clear();
      order = shuffled(
        examples,
        mulberry32(streamSeed(seed, streamSeed(pass, MIX_STREAM + s))),
      );
      orders[s]!.set(pass, order);
    }
    return order[k % examples.length]!;
  };
  return {
    length,
    epochLength: Math.min(epochLength, length),
    at(index: number): TrainBatch | undefined {
      if (!Number.isInteger(index) || index < 0 || index >= length)
        return undefined;
      const parts = sources.flatMap((source, s) => {
        const from = starts[s]![index]!;
        const to = starts[s]![index + 1]!;
        if (to === from) return [];
        const picked = Array.from({ length: to - from }, (_, k) =>
          row(s, from + k),
        );
        const { inputIds, labels } = padBatch(picked, padId);
        return [
          {
            source: source.name,
            share: (to - from) / batchSize,
            rows: picked,
            inputIds,
            labels,
          },
        ];
      });
      const { inputIds, labels } = padBatch(
        parts.flatMap((p) => p.rows),
        padId,
      );
      return {
        inputIds,
        labels,
        parts: parts.map(({ rows: _, ...part }) => part),
      };
    },
  };
}

/**
 * Each source's first row in each batch ([source][batch], one past the last batch too), by error diffusion: a
 * batch credits every source its expected rows and gives each the whole rows of its credit, then the leftover rows
 * to the largest remaining credits (ties to the earlier source).
 */
function apportion(
  shares: readonly number[],
  batchSize: number,
  length: number,
): Float64Array[] {
  const starts = shares.map(() => new Float64Array(length + 1));
  const credit = shares.map(() => 0);
  for (let b = 0; b < length; b++) {
    const take = shares.map((share, s) => {
      credit[s] = credit[s]! + share * batchSize;
      return Math.floor(credit[s]! + 1e-9);
    });
    let left = batchSize - take.reduce((a, n) => a + n, 0);
    const order = shares
      .map((_, s) => s)
      .sort((a, c) => credit[c]! - take[c]! - (credit[a]! - take[a]!) || a - c);
    for (const s of order) {
      if (left === 0) break;
      take[s]!++;
      left--;
    }
    take.forEach((n, s) => {
      credit[s] = credit[s]! - n;
      starts[s]![b + 1] = starts[s]![b]! + n;
    });
  }
  return starts;
}

function checkMix(sources: readonly MixSource[], o: MixOptions): void {
  checkInteger(o.batchSize, "batchSize", 1);
  checkInteger(o.padId, "padId", 0);
  checkInteger(o.seed, "seed");
  checkInteger(o.epochs, "epochs", 1);
  if (sources.length === 0)
    throw new ConfigError("a mixture needs at least one source.");
  for (const s of sources) {
    if (!(Number.isFinite(s.weight) && s.weight > 0))
      throw new ConfigError(
        `the mixing weight of ${s.name} must be above 0, got ${s.weight}.`,
      );
    if (s.examples.length === 0)
      throw new ConfigError(`${s.name} has no rows to mix in.`);
  }
  if (sources.every((s) => s.replay))
    throw new ConfigError(
      "a mixture needs a source that is not replayed: the epochs are passes over it.",
    );
}

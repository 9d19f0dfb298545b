/**
 * Batches for training: a seeded shuffle per epoch, then either padding to the longest example of each batch or
 * packing into fixed-length rows (see packing.ts). Plain `number[][]` out; the trainer makes tensors.
 */
import { ConfigError } from "../../errors.js";
import { packExamples, type Sequence } from "./packing.js";
import { checkInteger, mulberry32, shuffled, streamSeed } from "./random.js";
import { IGNORE_INDEX, type Example } from "./types.js";
import type { BatchSequence } from "../train_batch.js";

/** What batching reads of an example. */
export type Tokenized = Pick<Example, "inputIds" | "labels">;

/** One batch: `[batch, length]` arrays. */
export interface Batch {
  inputIds: number[][];
  /** -100 where no loss applies (prompts, padding, packed examples' first token). */
  labels: number[][];
  /** 1 on tokens, 0 on padding. */
  attentionMask: number[][];
  /** Packing only: each token's position within its own example. */
  positionIds?: number[][];
}

export interface BatchOptions {
  /** Rows per batch. */
  batchSize: number;
  /** The token id written on padding (e.g. `tokenizer.padTokenId`); masked out, so any valid id works. */
  padId: number;
  /** Integer seed of the shuffle. */
  seed: number;
  /** Epoch number (0, 1, ...): each epoch gets its own order, reproducible from `seed` and `epoch`. */
  epoch: number;
  /** Shuffle the examples (or packed rows). Default true. */
  shuffle?: boolean;
  /** Leave out a last batch smaller than `batchSize`. Default false. */
  dropLast?: boolean;
  /** Padding only: round each batch's length up to a multiple of this, so fewer shapes reach the GPU. Default 1. */
  padToMultipleOf?: number;
  /** Pack examples into rows of `seqLen` tokens instead of padding each batch (see packing.ts). */
  packing?: { seqLen: number };
}

const EPOCH_STREAM = 0xe90c;

/**
 * The batches of one epoch. With padding (the default) each row is one example, padded on the right with `padId`
 * to the longest of its batch (labels -100 and attentionMask 0 there). With `packing`, rows of `seqLen` tokens.
 *
 * @example
 * ```ts
 * for (let epoch = 0; epoch < 3; epoch++) {
 *   for (const batch of batches(train, { batchSize: 8, padId: tok.padTokenId ?? 0, seed: 1, epoch })) {
 *     // batch.inputIds, batch.labels, batch.attentionMask: number[8][T]
 *   }
 * }
 * ```
 */
export function batches(
  examples: readonly Tokenized[],
  options: BatchOptions,
): Iterable<Batch> {
  checkOptions(options);
  const dropLast = options.dropLast ?? false;
  if (options.packing) {
    const rows = packExamples(examples, options.packing.seqLen, options.padId);
    const groups = chunk(
      epochOrder(rows, options),
      options.batchSize,
      dropLast,
    );
    return lazy(groups, stack);
  }
  const groups = chunk(
    epochOrder(examples, options),
    options.batchSize,
    dropLast,
  );
  const multiple = options.padToMultipleOf ?? 1;
  return lazy(groups, (g) => padBatch(g, options.padId, multiple));
}

/** How many batches {@link batches} gives per epoch with these options. */
export function countBatches(
  examples: readonly Tokenized[],
  options: BatchOptions,
): number {
  checkOptions(options);
  const rows = options.packing
    ? packExamples(examples, options.packing.seqLen, options.padId).length
    : examples.length;
  return options.dropLast
    ? Math.floor(rows / options.batchSize)
    : Math.ceil(rows / options.batchSize);
}

/** The epoch's order: a shuffle seeded by (seed, epoch), or the given order with `shuffle: false`. */
function epochOrder<T>(rows: readonly T[], options: BatchOptions): T[] {
  if (options.shuffle === false) return [...rows];
  return shuffled(
    rows,
    mulberry32(
      streamSeed(options.seed, streamSeed(options.epoch, EPOCH_STREAM)),
    ),
  );
}

/** Batches made as they are iterated (each iteration makes them again), so padded copies do not pile up. */
function lazy<T>(groups: T[][], make: (group: T[]) => Batch): Iterable<Batch> {
  return {
    *[Symbol.iterator]() {
      for (const group of groups) yield make(group);
    },
  };
}

function chunk<T>(items: T[], size: number, dropLast: boolean): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) {
    const group = items.slice(i, i + size);
    if (group.length === size || !dropLast) out.push(group);
  }
  return out;
}

/** Rows padded on the right to the longest (rounded up to `multiple`): ids with `padId`, labels with -100. */
export function padBatch(
  rows: readonly Tokenized[],
  padId: number,
  multiple = 1,
): Batch {
  const longest = Math.max(...rows.map((r) => r.inputIds.length));
  const length = Math.ceil(longest / multiple) * multiple;
  const pad = <V>(values: V[], fill: V) => [
    ...values,
    ...new Array<V>(length - values.length).fill(fill),
  ];
  return {
    inputIds: rows.map((r) => pad(r.inputIds, padId)),
    labels: rows.map((r) => pad(r.labels, IGNORE_INDEX)),
    attentionMask: rows.map((r) =>
      pad(
        r.inputIds.map(() => 1),
        0,
      ),
    ),
  };
}

function stack(rows: Sequence[]): Batch {
  return {
    inputIds: rows.map((r) => r.inputIds),
    labels: rows.map((r) => r.labels),
    attentionMask: rows.map((r) => r.attentionMask),
    positionIds: rows.map((r) => r.positionIds),
  };
}

function checkOptions(options: BatchOptions): void {
  checkInteger(options.batchSize, "batchSize", 1);
  checkInteger(options.padId, "padId", 0);
  checkInteger(options.seed, "seed");
  checkInteger(options.epoch, "epoch", 0);
  checkInteger(options.padToMultipleOf ?? 1, "padToMultipleOf", 1);
  if (options.packing)
    checkInteger(options.packing.seqLen, "packing.seqLen", 1);
  if (options.packing && options.padToMultipleOf !== undefined) {
    throw new ConfigError(
      "padToMultipleOf applies to padded batches; packed rows are already packing.seqLen long.",
    );
  }
}

/**
 * The batches of several epochs in training order, each epoch reshuffled from the seed: what the Trainer takes.
 *
 * @example
 * ```ts
 * const train = epochBatches(splits.train, { batchSize: 8, padId, seed: 0, epoch: 0 }, 3);
 * ```
 */
export function epochBatches(
  examples: readonly Tokenized[],
  options: BatchOptions,
  epochs: number,
): Batch[] {
  const out: Batch[] = [];
  for (let epoch = options.epoch; epoch < options.epoch + epochs; epoch++)
    out.push(...batches(examples, { ...options, epoch }));
  return out;
}

/**
 * The batches of several epochs in training order, like {@link epochBatches}, made only as they are read: one
 * epoch's batches are kept at a time, so `epochs` may be large. What the Trainer takes for long runs.
 *
 * @example
 * ```ts
 * const train = epochSequence(splits.train, { batchSize: 8, padId, seed: 0, epoch: 0 }, 100);
 * train.length; // 100 × batches per epoch
 * train.at(0); // the first batch of epoch 0, made now
 * ```
 */
export function epochSequence(
  examples: readonly Tokenized[],
  options: BatchOptions,
  epochs: number,
): BatchSequence & { at(index: number): Batch | undefined } {
  checkInteger(epochs, "epochs", 1);
  const epochLength = countBatches(examples, options);
  const length = epochLength * epochs;
  if (!Number.isSafeInteger(length))
    throw new ConfigError(
      `${epochs} epochs of ${epochLength} batches is past what can be counted; set fewer epochs or a step limit.`,
    );
  let cached: { epoch: number; batches: Batch[] } | undefined;
  return {
    length,
    epochLength,
    at(index: number): Batch | undefined {
      if (!Number.isInteger(index) || index < 0 || index >= length)
        return undefined;
      const epoch = options.epoch + Math.floor(index / epochLength);
      if (cached?.epoch !== epoch)
        cached = {
          epoch,
          batches: [...batches(examples, { ...options, epoch })],
        };
      return cached.batches[index % epochLength];
    },
  };
}

/** Batches: padding and masks, packing, seeded shuffles per epoch, counts and option checks. */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import {
  batches,
  countBatches,
  type Batch,
  type Example,
} from "../../../packages/core/src/train/data/index.js";

const I = -100;
const PAD = 0;

/** Example n: ids n*10+1 ... n*10+length, loss on all but the first `prompt` tokens. */
function example(n: number, length: number, prompt = 0): Example {
  const inputIds = Array.from({ length }, (_, t) => n * 10 + t + 1);
  return {
    inputIds,
    labels: inputIds.map((id, t) => (t < prompt ? I : id)),
    line: n,
  };
}

const options = { batchSize: 2, padId: PAD, seed: 0, epoch: 0 };
const firstIds = (bs: Iterable<Batch>) =>
  [...bs].flatMap((b) => b.inputIds.map((row) => row[0]));

describe("padded batches", () => {
  it("pads right to the longest of each batch, with -100 labels and a 0 mask on padding", () => {
    const examples = [example(1, 3, 1), example(2, 1), example(3, 2)];
    const out = [...batches(examples, { ...options, shuffle: false })];
    expect(out).toEqual([
      {
        inputIds: [
          [11, 12, 13],
          [21, PAD, PAD],
        ],
        labels: [
          [I, 12, 13],
          [21, I, I],
        ],
        attentionMask: [
          [1, 1, 1],
          [1, 0, 0],
        ],
      },
      { inputIds: [[31, 32]], labels: [[31, 32]], attentionMask: [[1, 1]] },
    ]);
  });

  it("drops the last short batch with dropLast, and pads to a multiple", () => {
    const examples = [example(1, 3), example(2, 1), example(3, 2)];
    const out = [
      ...batches(examples, {
        ...options,
        shuffle: false,
        dropLast: true,
        padToMultipleOf: 4,
      }),
    ];
    expect(out).toHaveLength(1);
    expect(out[0]!.inputIds).toEqual([
      [11, 12, 13, PAD],
      [21, PAD, PAD, PAD],
    ]);
    expect(countBatches(examples, { ...options, dropLast: true })).toBe(1);
    expect(countBatches(examples, options)).toBe(2);
  });

  it("can be iterated twice with the same result, and leaves the examples unchanged", () => {
    const examples = [example(1, 3), example(2, 1)];
    const copy = structuredClone(examples);
    const epoch = batches(examples, options);
    expect([...epoch]).toEqual([...epoch]);
    expect(examples).toEqual(copy);
  });
});

describe("shuffling", () => {
  const examples = Array.from({ length: 50 }, (_, n) => example(n, 2));

  it("is reproducible for a seed and epoch, and visits every example once", () => {
    const a = firstIds(batches(examples, { ...options, epoch: 3 }));
    expect(firstIds(batches(examples, { ...options, epoch: 3 }))).toEqual(a);
    expect([...a].sort((x, y) => x! - y!)).toEqual(
      examples.map((e) => e.inputIds[0]),
    );
  });

  it("differs across epochs and seeds, and is off with shuffle: false", () => {
    const order = (seed: number, epoch: number) =>
      firstIds(batches(examples, { ...options, seed, epoch }));
    expect(order(0, 1)).not.toEqual(order(0, 0));
    expect(order(1, 0)).not.toEqual(order(0, 0));
    expect(order(0, 0)).not.toEqual(examples.map((e) => e.inputIds[0]));
    expect(firstIds(batches(examples, { ...options, shuffle: false }))).toEqual(
      examples.map((e) => e.inputIds[0]),
    );
  });
});

describe("packing", () => {
  it("packs best-fit decreasing into rows of seqLen, with -100 on each example's first label", () => {
    // lengths 3, 2, 2, 1 into rows of 4: [3, 1] and [2, 2]
    const examples = [
      example(1, 2),
      example(2, 3, 1),
      example(3, 1),
      example(4, 2),
    ];
    const out = [
      ...batches(examples, {
        ...options,
        shuffle: false,
        packing: { seqLen: 4 },
      }),
    ];
    expect(out).toEqual([
      {
        inputIds: [
          [21, 22, 23, 31],
          [11, 12, 41, 42],
        ],
        labels: [
          [I, 22, 23, I],
          [I, 12, I, 42],
        ],
        attentionMask: [
          [1, 1, 1, 1],
          [1, 1, 1, 1],
        ],
        positionIds: [
          [0, 1, 2, 0],
          [0, 1, 0, 1],
        ],
      },
    ]);
  });

  it("pads a row that is not full, and cuts an example longer than seqLen into pieces", () => {
    const out = [
      ...batches([example(1, 7)], {
        ...options,
        shuffle: false,
        packing: { seqLen: 4 },
      }),
    ];
    expect(out[0]).toEqual({
      inputIds: [
        [11, 12, 13, 14],
        [15, 16, 17, PAD],
      ],
      labels: [
        [I, 12, 13, 14],
        [I, 16, 17, I],
      ],
      attentionMask: [
        [1, 1, 1, 1],
        [1, 1, 1, 0],
      ],
      positionIds: [
        [0, 1, 2, 3],
        [0, 1, 2, 0],
      ],
    });
  });

  it("keeps every token once, uses few rows, and shuffles rows per epoch", () => {
    const examples = Array.from({ length: 40 }, (_, n) =>
      example(n, 1 + ((n * 7) % 9)),
    );
    const packing = { seqLen: 16 };
    const tokens = examples.reduce((s, e) => s + e.inputIds.length, 0);
    const rows = countBatches(examples, { ...options, batchSize: 1, packing });
    expect(rows).toBe(Math.ceil(tokens / 16));
    const all = [...batches(examples, { ...options, packing })].flatMap((b) =>
      b.inputIds.flatMap((row, r) =>
        row.filter((_, t) => b.attentionMask[r]![t] === 1),
      ),
    );
    expect(all.sort((x, y) => x - y)).toEqual(
      examples.flatMap((e) => e.inputIds).sort((x, y) => x - y),
    );
    const order = (epoch: number) =>
      firstIds(batches(examples, { ...options, epoch, packing }));
    expect(order(1)).not.toEqual(order(0));
    expect(order(1)).toEqual(order(1));
  });
});

describe("option checks", () => {
  it("throws a ConfigError for unusable options, before iterating", () => {
    const examples = [example(1, 2)];
    expect(() => batches(examples, { ...options, batchSize: 0 })).toThrow(
      /batchSize is 0; expected an integer >= 1/,
    );
    expect(() => batches(examples, { ...options, padId: -1 })).toThrow(
      ConfigError,
    );
    expect(() => batches(examples, { ...options, epoch: 0.5 })).toThrow(
      ConfigError,
    );
    expect(() =>
      batches(examples, { ...options, packing: { seqLen: 0 } }),
    ).toThrow(ConfigError);
    expect(() =>
      batches(examples, {
        ...options,
        packing: { seqLen: 4 },
        padToMultipleOf: 8,
      }),
    ).toThrow(/padToMultipleOf applies to padded batches/);
  });
});

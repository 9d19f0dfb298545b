/**
 * Mixed batches (replay and multitask): each batch's rows apportioned by weight to within a row, every task row
 * once per epoch while replayed rows ride along, reproducible random access, temperature weights, bad mixtures
 * refused; and the step's loss: a mixed batch's parts each weigh their share, whatever their lengths, on the
 * compiled step as on a hand-weighted tape oracle.
 */
import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import {
  mixedSequence,
  temperatureWeights,
  type Example,
  type MixSource,
} from "../../../packages/core/src/train/data/index.js";
import {
  Trainer,
  type TrainBatch,
  type TrainEvent,
} from "../../../packages/core/src/train/trainer.js";
import { stepMicroBatches } from "../../../packages/core/src/train/train_batch.js";
import { needGpu } from "../../helpers/gpu.js";
import { useTinyModels } from "../../helpers/lora.js";

const I = -100;

/** Example n of a source: ids n*10+1 ..., loss on all but the first `prompt` tokens. */
function example(n: number, length: number, prompt = 0): Example {
  const inputIds = Array.from({ length }, (_, t) => (n * 10 + t + 1) % 70);
  return {
    inputIds,
    labels: inputIds.map((id, t) => (t < prompt ? I : id)),
    line: n,
  };
}
const rowsOf = (from: number, count: number, length = 3) =>
  Array.from({ length: count }, (_, i) => example(from + i, length));
const firstIds = (b: TrainBatch, source: string) =>
  b.parts!.find((p) => p.source === source)?.inputIds.map((r) => r[0]) ?? [];

describe("mixedSequence", () => {
  const task = rowsOf(0, 24);
  const replay = rowsOf(100, 7, 5);
  const sources: MixSource[] = [
    { name: "task", examples: task, weight: 3 },
    { name: "replay", examples: replay, weight: 1, replay: true },
  ];
  const options = { batchSize: 8, padId: 0, seed: 3, epochs: 2 };

  it("gives every batch its sources' shares and each task row once per epoch, replayed rows riding along", () => {
    const seq = mixedSequence(sources, options);
    expect(seq.length).toBe(8); // 24 task rows × 2 epochs at 6 a batch
    expect(seq.epochLength).toBe(4);
    for (let epoch = 0; epoch < 2; epoch++) {
      const seen: (number | undefined)[] = [];
      for (let i = epoch * 4; i < epoch * 4 + 4; i++) {
        const b = seq.at(i)!;
        expect(
          b.parts!.map((p) => [p.source, p.share, p.inputIds.length]),
        ).toEqual([
          ["task", 0.75, 6],
          ["replay", 0.25, 2],
        ]);
        seen.push(...firstIds(b, "task"));
      }
      const ascending = (a: number | undefined, b: number | undefined) =>
        a! - b!;
      expect([...seen].sort(ascending)).toEqual(
        task.map((e) => e.inputIds[0]).sort(ascending),
      );
    }
    // 16 replayed rows from 7: every one of them before any repeats, in each pass.
    const replayed = Array.from({ length: 8 }, (_, i) =>
      firstIds(seq.at(i)!, "replay"),
    ).flat();
    expect(new Set(replayed.slice(0, 7)).size).toBe(7);
    expect(new Set(replayed.slice(7, 14)).size).toBe(7);
  });

  it("holds every part's rows together in inputIds and labels, padded to the longest", () => {
    const b = mixedSequence(sources, options).at(0)!;
    expect(b.inputIds).toHaveLength(8);
    expect(b.inputIds.every((r) => r.length === 5)).toBe(true);
    expect(b.inputIds.slice(0, 6).map((r) => r.slice(3))).toEqual(
      Array.from({ length: 6 }, () => [0, 0]),
    );
    expect(b.labels.slice(0, 6).map((r) => r.slice(3))).toEqual(
      Array.from({ length: 6 }, () => [I, I]),
    );
    expect(b.parts![0]!.inputIds.every((r) => r.length === 3)).toBe(true);
    expect(b.inputIds.slice(6)).toEqual(b.parts![1]!.inputIds);
  });

  it("apportions uneven weights to within a row over any run of batches", () => {
    const three: MixSource[] = [
      { name: "a", examples: rowsOf(0, 50), weight: 1 },
      { name: "b", examples: rowsOf(100, 50), weight: 2 },
      { name: "c", examples: rowsOf(200, 50), weight: 0.5 },
    ];
    const seq = mixedSequence(three, { ...options, batchSize: 5, epochs: 1 });
    const taken = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (let i = 0; i < seq.length; i++) {
      const b = seq.at(i)!;
      expect(b.inputIds).toHaveLength(5);
      for (const p of b.parts!)
        taken[p.source] = taken[p.source]! + p.inputIds.length;
      const drawn = (i + 1) * 5;
      for (const [name, w] of [
        ["a", 1],
        ["b", 2],
        ["c", 0.5],
      ] as const)
        expect(Math.abs(taken[name]! - (drawn * w) / 3.5)).toBeLessThanOrEqual(
          1,
        );
    }
    expect(seq.length).toBe(30); // 150 rows at 5 a batch
  });

  it("gives batch i the same rows whatever was read before, and another seed other rows", () => {
    const seq = mixedSequence(sources, options);
    const forward = Array.from({ length: 8 }, (_, i) => seq.at(i));
    const again = mixedSequence(sources, options);
    const backward = Array.from({ length: 8 }, (_, i) =>
      again.at(7 - i),
    ).reverse();
    expect(backward).toEqual(forward);
    const other = mixedSequence(sources, { ...options, seed: 4 }).at(0);
    expect(other!.inputIds).not.toEqual(forward[0]!.inputIds);
    expect(seq.at(8)).toBeUndefined();
    expect(seq.at(-1)).toBeUndefined();
  });

  it("weights by temperature: T = 1 by size, larger T towards equal", () => {
    const [a, b] = temperatureWeights([3000, 300], 1);
    expect(a).toBeCloseTo(3000 / 3300, 12);
    expect(b).toBeCloseTo(300 / 3300, 12);
    const [hot] = temperatureWeights([3000, 300], 3);
    expect(hot).toBeCloseTo(
      3000 ** (1 / 3) / (3000 ** (1 / 3) + 300 ** (1 / 3)),
      12,
    );
    expect(() => temperatureWeights([1, 2], 0)).toThrow(
      /temperature must be above 0, got 0/,
    );
  });

  it("refuses a mixture it cannot draw from, naming the source", () => {
    const bad = (s: MixSource[]) => () => mixedSequence(s, options);
    expect(bad([])).toThrow(ConfigError);
    expect(bad([{ name: "task", examples: task, weight: 0 }])).toThrow(
      /mixing weight of task must be above 0, got 0/,
    );
    expect(bad([{ name: "general.jsonl", examples: [], weight: 1 }])).toThrow(
      /general.jsonl has no rows/,
    );
    expect(bad([{ ...sources[1]! }])).toThrow(/a source that is not replayed/);
    expect(() => mixedSequence(sources, { ...options, epochs: 0 })).toThrow(
      /epochs is 0/,
    );
  });
});

describe("a step's micro-batches", () => {
  it("weighs plain batches by loss tokens and a mixed batch's parts by their shares", () => {
    const plain = { inputIds: [[1, 2, 3]], labels: [[1, 2, 3]] }; // 2 loss tokens
    const mixed = mixedSequence(
      [
        { name: "task", examples: [example(1, 3, 2)], weight: 3 }, // 1 loss token a row
        { name: "replay", examples: [example(2, 7)], weight: 1, replay: true }, // 6 a row
      ],
      { batchSize: 4, padId: 0, seed: 0, epochs: 1 },
    ).at(0)!; // 3 task rows (3 tokens) and 1 replayed (6): 9 loss tokens
    const { batches, weights } = stepMicroBatches([plain, mixed]);
    expect(batches).toEqual([plain, mixed.parts![0], mixed.parts![1]]);
    const [w0, w1, w2] = weights;
    expect(w0).toBeCloseTo(2 / 11, 12);
    expect(w1).toBeCloseTo((9 / 11) * 0.75, 12);
    expect(w2).toBeCloseTo((9 / 11) * 0.25, 12);
  });
});

const { peftOf } = useTinyModels(["llama_untied"]);

describe("training on a mixed batch", () => {
  it("takes each part's mean loss at its share, on the compiled step and the tape alike (1e-5)", async (ctx) => {
    await needGpu(ctx);
    // The task's answer is one token a row; the replayed rows are all loss, and long.
    const task = Array.from({ length: 6 }, (_, i) => example(i + 1, 6, 5));
    const general = Array.from({ length: 4 }, (_, i) => example(i + 20, 11));
    const batch = mixedSequence(
      [
        { name: "task", examples: task, weight: 3 },
        { name: "replay", examples: general, weight: 1, replay: true },
      ],
      { batchSize: 8, padId: 0, seed: 1, epochs: 1 },
    ).at(0)!;
    expect(batch.parts!.map((p) => p.inputIds.length)).toEqual([6, 2]);
    const step = async (executor: "compiled" | "tape") => {
      const peft = peftOf("llama_untied");
      peft.addAdapter(
        "default",
        { r: 4, targetModules: ["q_proj", "v_proj"], initLoraWeights: false },
        { seed: 5 },
      );
      // The oracle: the parts' mean losses weighted by hand, before the update.
      const [taskLoss, replayLoss] = await Promise.all(
        batch.parts!.map(async (p) => {
          const l = peft.loss(p.inputIds, p.labels);
          const v = (await l.data())[0]!;
          l.dispose();
          return v;
        }),
      );
      const events: TrainEvent[] = [];
      await new Trainer(peft, {
        executor,
        learningRate: 1e-3,
        schedule: "constant",
        maxSteps: 1,
        onEvent: (e) => events.push(e),
      }).train({ train: [batch] });
      peft.dispose();
      return {
        loss: (events[0] as Extract<TrainEvent, { type: "step" }>).loss,
        oracle: 0.75 * taskLoss! + 0.25 * replayLoss!,
        // What one batch of all the rows would take: the mean over every token, the long rows weighing most.
        pooled: (6 * taskLoss! + 20 * replayLoss!) / 26,
      };
    };
    const tensors = tf.memory().numTensors;
    for (const executor of ["compiled", "tape"] as const) {
      const { loss, oracle, pooled } = await step(executor);
      expect(Math.abs(pooled - oracle) / oracle).toBeGreaterThan(1e-3);
      expect(Math.abs(loss - oracle) / oracle).toBeLessThan(1e-5);
    }
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

/**
 * No flag makes unbounded work before the first step. `--epochs 1e9` used to build every batch up front, and
 * `--grad-accum 1e9` made a billion-element array that aborted V8. Batches of many epochs are now made as they are
 * read (the same batches, in the same order), and a gradAccum larger than the data is refused at once.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import {
  epochBatches,
  epochSequence,
  type Example,
} from "../../../packages/core/src/train/data/index.js";
import {
  Trainer,
  type TrainEvent,
} from "../../../packages/core/src/train/trainer.js";
import { needGpu } from "../../helpers/gpu.js";
import { useTinyModels } from "../../helpers/lora.js";

const { peftOf } = useTinyModels(["llama_untied"]);

const examples: Example[] = Array.from({ length: 7 }, (_, n) => {
  const inputIds = Array.from(
    { length: 3 + (n % 4) },
    (_, t) => (n * 5 + t) % 72,
  );
  return { inputIds, labels: inputIds, line: n + 1 };
});
const options = { batchSize: 2, padId: 0, seed: 3, epoch: 0 };

describe("lazy epochs", () => {
  it("gives the same batches, in the same order, as the eager list", () => {
    const eager = epochBatches(examples, options, 5);
    const lazy = epochSequence(examples, options, 5);
    expect(lazy.length).toBe(eager.length);
    expect(lazy.epochLength).toBe(4);
    for (let i = 0; i < eager.length; i++) expect(lazy.at(i)).toEqual(eager[i]);
    // Reading out of order (a resume) gives the same batches too.
    expect(lazy.at(13)).toEqual(eager[13]);
    expect(lazy.at(2)).toEqual(eager[2]);
    expect(lazy.at(eager.length)).toBeUndefined();
    expect(lazy.at(-1)).toBeUndefined();
  });

  it("counts a billion epochs without making them, and reads the last batch", () => {
    const started = performance.now();
    const lazy = epochSequence(examples, options, 1e9);
    expect(lazy.length).toBe(4e9);
    const last = lazy.at(lazy.length - 1)!;
    expect(last.inputIds.length).toBeGreaterThan(0);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it("refuses epochs that are not a positive integer, or too many to count", () => {
    for (const epochs of [0, -1, 1.5, NaN])
      expect(() => epochSequence(examples, options, epochs)).toThrow(
        ConfigError,
      );
    expect(() => epochSequence(examples, options, 2 ** 52)).toThrow(
      /past what can be counted/,
    );
  });
});

describe("Trainer bounds", () => {
  it("refuses a gradAccum larger than the training data before it allocates anything", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter("default", { r: 2, targetModules: ["q_proj"] });
    const train = epochSequence(examples, options, 1);
    for (const gradAccum of [1e9, train.length + 1]) {
      const run = new Trainer(peft, { gradAccum }).train({ train });
      await expect(run).rejects.toThrow(ConfigError);
      await expect(
        new Trainer(peft, { gradAccum }).train({ train }),
      ).rejects.toThrow(`at most ${train.length}`);
    }
    for (const maxSteps of [0, 1.5, -3, Infinity])
      await expect(
        new Trainer(peft, { maxSteps }).train({ train }),
      ).rejects.toThrow(/maxSteps must be a positive integer/);
  });

  it("trains on a billion lazy epochs up to maxSteps", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter("default", { r: 2, targetModules: ["q_proj"] });
    const events: TrainEvent[] = [];
    const result = await new Trainer(peft, {
      maxSteps: 3,
      batchesPerEpoch: 4,
      onEvent: (e) => events.push(e),
    }).train({ train: epochSequence(examples, options, 1e9) });
    expect(result.steps).toBe(3);
    expect(events.map((e) => e.step)).toEqual([1, 2, 3]);
  });
});

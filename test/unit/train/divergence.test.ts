/**
 * Divergence is never silent. With a learning rate far too high the loss or the gradient norm goes non-finite
 * within a few steps; the run must stop with a DivergenceError naming the step and a learning rate to try, whatever
 * `logEvery` is; no non-finite update may reach the weights (the step is skipped on the GPU); nothing leaks. A
 * planted overflow (a LoRA weight of 3e38) makes the first step's loss NaN on the compiled step and the tape alike.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { DivergenceError, type LoraModel } from "@webtune/core";
import { directoryStore } from "../../../packages/core/src/io/checkpoint_store.js";
import {
  Trainer,
  type TrainBatch,
  type TrainerOptions,
} from "../../../packages/core/src/train/trainer.js";
import { needGpu } from "../../helpers/gpu.js";
import { useTinyModels } from "../../helpers/lora.js";

const { peftOf } = useTinyModels(["llama_untied"]);

const batches: TrainBatch[] = Array.from({ length: 40 }, (_, s) => {
  const inputIds = [0, 1].map((r) =>
    Array.from({ length: 10 }, (_, t) => (s * 11 + r * 7 + t) % 72),
  );
  return { inputIds, labels: inputIds };
});

async function allFinite(peft: LoraModel): Promise<boolean> {
  for (const v of peft.trainableVariables())
    if (!(await v.data()).every((x) => Number.isFinite(x))) return false;
  return true;
}

async function diverge(
  options: TrainerOptions,
  plant?: (peft: LoraModel) => void,
): Promise<{ error: DivergenceError; peft: LoraModel; steps: number[] }> {
  const peft = peftOf("llama_untied");
  peft.addAdapter("default", { r: 4, targetModules: "all-linear" });
  plant?.(peft);
  const steps: number[] = [];
  const tensors = tf.memory().numTensors;
  const error = await new Trainer(peft, {
    learningRate: 1e8,
    schedule: "constant",
    maxGradNorm: 0,
    onEvent: (e) => {
      if (e.type === "step") steps.push(e.step);
    },
    ...options,
  })
    .train({ train: batches })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(error).toBeInstanceOf(DivergenceError);
  expect(tf.memory().numTensors).toBe(tensors);
  return { error: error as DivergenceError, peft, steps };
}

describe("divergence", () => {
  it("stops at the first non-finite step with a named error, the weights still finite", async (ctx) => {
    await needGpu(ctx);
    const { error, peft, steps } = await diverge({});
    expect(error.step).toBeGreaterThanOrEqual(2);
    expect(error.step).toBeLessThan(batches.length);
    expect(Number.isFinite(error.loss) && Number.isFinite(error.gradNorm)).toBe(
      false,
    );
    // Every step before the diverged one was reported, and it was not.
    expect(steps).toEqual(
      Array.from({ length: error.step - 1 }, (_, i) => i + 1),
    );
    expect(error.suggestedLearningRate).toBe(1e7);
    expect(error.message).toMatch(/diverged at step \d+/);
    expect(error.message).toContain("learningRate 10000000 (a tenth of");
    expect(error.message).toContain("clipping back on");
    expect(await allFinite(peft)).toBe(true);
  });

  for (const executor of ["compiled", "tape"] as const) {
    it(`skips a step whose loss is NaN, leaving every weight as it was (${executor})`, async (ctx) => {
      await needGpu(ctx);
      let before: ReturnType<tf.Variable["dataSync"]>[] = [];
      const { error, peft } = await diverge({ executor }, (peft) => {
        const a = peft.trainableVariables()[0]!;
        const planted = a.dataSync().slice();
        planted[0] = 3e38;
        a.assign(tf.tensor(planted, a.shape));
        before = peft.trainableVariables().map((v) => v.dataSync().slice());
      });
      expect(error.step).toBe(1);
      expect(error.loss).toBeNaN();
      const after = await Promise.all(
        peft.trainableVariables().map((v) => v.data()),
      );
      after.forEach((v, i) => expect(v).toEqual(before[i]));
    });
  }

  it("is caught on a step that is not logged, and names the last checkpoint", async (ctx) => {
    await needGpu(ctx);
    const first = await diverge({});
    const dir = mkdtempSync(join(tmpdir(), "webtune-diverge-"));
    const store = directoryStore(dir);
    const { error, steps } = await diverge({
      logEvery: 1000,
      checkpoint: { store, every: 1 },
    });
    expect(steps).toEqual([]);
    expect(error.step).toBe(first.error.step);
    const kept = await store.list();
    expect(kept.at(-1)).toBe(`step-${String(error.step - 1).padStart(6, "0")}`);
    expect(error.message).toContain(`${kept.at(-1)} in ${dir}`);
  });

  it("names the caller's own options in its advice", async (ctx) => {
    await needGpu(ctx);
    const { error } = await diverge({
      optionNames: { learningRate: "--lr", warmupSteps: "--warmup" },
    });
    expect(error.message).toContain(
      "run again with --lr 10000000 (a tenth of 100000000)",
    );
    expect(error.message).toContain(
      "a warmup (--warmup about 5% of the steps)",
    );
    expect(error.message).not.toMatch(/learningRate|warmupSteps/);
  });
});

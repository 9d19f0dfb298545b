/**
 * The Trainer's memory reporting and its check before the first step: peak bytes per step, the model's estimate
 * and the compiled step's buffer plan against the measured peak, and clear refusals (binding limit, budget) that
 * leave nothing behind. The tape stores each block's attention scores [B, H, T, T]; the compiled step never does,
 * so only the tape is refused for them.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  disposeRuntime,
  gpuInfo,
  gpuMemory,
  LoraModel,
  PretrainedModel,
  ShapeError,
  Trainer,
  type StepEvent,
  type TrainBatch,
} from "@webtune/core";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { compileLora } from "../../helpers/session.js";
import { randomWeightSource } from "../../helpers/random_weights.js";

const CONFIG = {
  model_type: "llama",
  vocab_size: 211,
  hidden_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 4,
  intermediate_size: 128,
  tie_word_embeddings: true,
  eos_token_id: 2,
  max_position_embeddings: 8192,
};

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function lora(): Promise<LoraModel> {
  const lm = await resolveConfig(CONFIG, "llama/config.json").load(
    randomWeightSource(CONFIG, "llama (random)"),
    1 << 30,
  );
  const peft = new LoraModel(
    new PretrainedModel(lm, undefined, CONFIG, {}, "test"),
  );
  peft.addAdapter("default", { r: 4, targetModules: ["q_proj", "v_proj"] });
  return peft;
}

function batch(rows: number, tokens: number): TrainBatch {
  const inputIds = Array.from({ length: rows }, (_, b) =>
    Array.from({ length: tokens }, (_, t) => (7 * b + 13 * t + 3) % 211),
  );
  return { inputIds, labels: inputIds.map((r) => [...r]) };
}

describe("memory during training", () => {
  it("reports each step's peak GPU bytes, and the preflight estimate is within 2× of it", async (ctx) => {
    await needGpu(ctx);
    const peft = await lora();
    try {
      const events: StepEvent[] = [];
      const data = { train: [batch(2, 64)] };
      const trainer = new Trainer(peft, {
        maxSteps: 2,
        onEvent: (e) => {
          if (e.type === "step") events.push(e);
        },
      });
      await trainer.train(data);
      expect(events).toHaveLength(2);
      const base = peft.base.lm.weightBytes();
      for (const e of events) {
        // The peak holds at least the weights, and more than what is left after the step.
        expect(e.peakGpuBytes).toBeGreaterThan(base);
        expect(e.peakGpuBytes).toBeGreaterThanOrEqual(e.gpuBytes);
      }
      const estimate = peft.memoryPlan({
        batch: 2,
        tokens: 64,
        gradientCheckpointing: false,
      }).footprint.peak;
      const measured = events[1]!.peakGpuBytes;
      console.log(
        `preflight estimate ${(estimate / 2 ** 20).toFixed(2)} MiB, measured peak ${(measured / 2 ** 20).toFixed(2)} MiB`,
      );
      expect(estimate / measured).toBeGreaterThan(0.5);
      expect(estimate / measured).toBeLessThan(2);
      // The plan counts the engine's buffers exactly; the measured peak also holds tfjs's copies of the adapter
      // and what tfjs keeps alive around the step, so it is a little above the plan, never below.
      const session = compileLora(peft);
      const planned = session.memoryPlan(data.train[0]!);
      session.dispose();
      const total = base + planned.state + planned.activations;
      console.log(
        `planned ${(total / 2 ** 20).toFixed(2)} MiB (state ${planned.state} B, activations ${planned.activations} B)`,
      );
      expect(total / measured).toBeGreaterThan(0.8);
      expect(total / measured).toBeLessThanOrEqual(1);
      expect(gpuMemory().activations).toBeGreaterThan(0);
    } finally {
      peft.dispose();
      peft.base.dispose();
    }
  });

  it("refuses a step over the memory budget before it starts, naming the numbers and what to change", async (ctx) => {
    await needGpu(ctx);
    const peft = await lora();
    try {
      const start = tf.memory().numTensors;
      const trainer = new Trainer(peft, { maxSteps: 1, memoryBudget: 1 << 20 });
      const run = trainer.train({ train: [batch(2, 64)] });
      await expect(run).rejects.toThrow(ConfigError);
      // (The first call uploaded the adapter's values to the GPU, where tfjs keeps them from then on.)
      const bytes = gpuMemory().total;
      await expect(trainer.train({ train: [batch(2, 64)] })).rejects.toThrow(
        /one step is planned to need/,
      );
      // The compiled step's session (its training state) is released with the refusal.
      expect(gpuMemory().total).toBe(bytes);
      await expect(trainer.train({ train: [batch(2, 64)] })).rejects.toThrow(
        /over the budget of 1 MiB: base weights .* activations .*dtype: "float16".*gradientCheckpointing: true.*smaller batch \(now 2\)/,
      );
      expect(tf.memory().numTensors).toBe(start);
      // With checkpointing on, the advice no longer offers it.
      const checkpointed = new Trainer(peft, {
        maxSteps: 1,
        memoryBudget: 1 << 20,
        gradientCheckpointing: true,
      });
      await expect(
        checkpointed.train({ train: [batch(2, 64)] }),
      ).rejects.toThrow(/^(?!.*turn on gradientCheckpointing).*$/s);
      expect(peft.gradientCheckpointing).toBe(false);
    } finally {
      peft.dispose();
      peft.base.dispose();
    }
  });

  it("on the tape, refuses a batch whose attention scores outgrow one storage binding, before any GPU work; the compiled step plans it", async (ctx) => {
    await needGpu(ctx);
    const peft = await lora();
    try {
      const limit = gpuInfo().limits["maxStorageBufferBindingSize"]!;
      // Scores are [B, 4 heads, T, T] f32: pick T so that one batch row is over the limit.
      const tokens = Math.ceil(Math.sqrt(limit / 16)) + 8;
      const start = tf.memory().numTensors;
      const tape = () => new Trainer(peft, { maxSteps: 1, executor: "tape" });
      await expect(tape().train({ train: [batch(1, tokens)] })).rejects.toThrow(
        ShapeError,
      );
      const session = compileLora(peft, { batchSize: 1 });
      const planned = session.memoryPlan(batch(1, tokens));
      session.dispose();
      expect(planned.largestTensor.bytes).toBeLessThan(limit);
      expect(planned.largestTensor.name).not.toMatch(/score/);
      await expect(tape().train({ train: [batch(1, tokens)] })).rejects.toThrow(
        /attention scores \[1, 4, \d+, \d+\] .* maxStorageBufferBindingSize/,
      );
      expect(tf.memory().numTensors).toBe(start);
    } finally {
      peft.dispose();
      peft.base.dispose();
    }
  });
});

/** The naive baseline's training step: tfjs's own Adam on `tf.variableGrads`, the loss read back every step. */
import * as tf from "@tensorflow/tfjs";
import type { TrainBatch } from "@webtune/core";
import type { NaiveLoraModel } from "./naive_lora.js";
import type { StepTimes } from "./train_step.js";

export async function naiveSteps(
  model: NaiveLoraModel,
  batches: TrainBatch[],
  warmup: number,
  steps: number,
): Promise<StepTimes> {
  // weight decay 0 makes torch's AdamW and Adam the same update; tfjs has Adam.
  const optimizer = tf.train.adam(1e-4);
  const stepMs: number[] = [];
  const losses: number[] = [];
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const batch = batches[i % batches.length]!;
      const start = performance.now();
      const loss = model.step(batch.inputIds, batch.labels, optimizer);
      const value = (await loss.data())[0]!;
      loss.dispose();
      if (i >= warmup) {
        stepMs.push(performance.now() - start);
        losses.push(value);
      }
    }
  } finally {
    optimizer.dispose();
  }
  return { stepMs, losses };
}

/**
 * One LoRA training step (forward, backward, clipping, AdamW, the loss read back) of webtune's Trainer, timed
 * per step after warm-up steps that compile every pipeline.
 */
import * as tf from "@tensorflow/tfjs";
import {
  AdamW,
  clipGradNorm,
  Trainer,
  type StepEvent,
  type TrainableModel,
  type TrainBatch,
} from "@webtune/core";
import { median } from "./stats.js";

export interface StepTimes {
  /** Wall ms of each timed step. */
  stepMs: number[];
  /** Loss of each timed step. */
  losses: number[];
}

/**
 * Runs `warmup + steps` optimizer steps of the Trainer in one run (one AdamW), reading the loss back every step
 * so that each step's time is real, and returns the timed steps.
 */
export async function webtuneSteps(
  model: TrainableModel,
  batches: TrainBatch[],
  warmup: number,
  steps: number,
): Promise<StepTimes> {
  const events: StepEvent[] = [];
  const trainer = new Trainer(model, {
    learningRate: 1e-4,
    schedule: "constant",
    maxSteps: warmup + steps,
    maxGradNorm: 1,
    logEvery: 1,
    onEvent: (e) => {
      if (e.type === "step") events.push(e);
    },
  });
  await trainer.train({ train: batches });
  const ms = events.map(
    (e, i) => e.elapsedMs - (i > 0 ? events[i - 1]!.elapsedMs : 0),
  );
  return {
    stepMs: ms.slice(warmup),
    losses: events.slice(warmup).map((e) => e.loss),
  };
}

/** What a step scenario reports for one contender. */
export function stepSummary(
  times: StepTimes,
  tokensPerStep: number,
  flopsPerStep: number,
  roofGflops: number,
) {
  const ms = median(times.stepMs);
  const gflops = flopsPerStep / (ms / 1000) / 1e9;
  return {
    ms_per_step: ms,
    tokens_per_s: tokensPerStep / (ms / 1000),
    model_gflops: gflops,
    mfu: gflops / roofGflops,
    first_loss: times.losses[0] ?? null,
    last_loss: times.losses.at(-1) ?? null,
    gpu_bytes: (tf.memory() as { numBytesInGPU?: number }).numBytesInGPU ?? 0,
  };
}

/**
 * One synchronous step as the Trainer takes it (gradients, clipping at 1, AdamW), with nothing read back: for
 * tf.profile, which needs the whole step inside one call.
 */
export function syncStep(
  model: TrainableModel,
  optimizer: AdamW,
  batch: TrainBatch,
): void {
  const vars = model.namedTrainableVariables().map((v) => v.variable);
  const { value, grads } = tf.variableGrads(
    () => model.loss(batch.inputIds, batch.labels),
    vars,
  );
  const clipped = clipGradNorm(grads, 1);
  optimizer.step(clipped.grads, 1e-4);
  tf.dispose([value, clipped.totalNorm, ...Object.values(grads)]);
  tf.dispose(Object.values(clipped.grads));
}

/** An AdamW over the model's trainable variables, as the Trainer makes it. */
export function optimizerFor(model: TrainableModel): AdamW {
  return new AdamW(
    model.namedTrainableVariables().map((v) => v.variable),
    { weightDecay: 0 },
  );
}

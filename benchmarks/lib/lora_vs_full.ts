/**
 * LoRA against full fine-tuning of the same model: the peak bytes of live tensors during one step (weights,
 * optimizer moments, activations, gradients), from tf.profile. Step times come from `webtuneSteps`.
 */
import * as tf from "@tensorflow/tfjs";
import type { TrainableModel, TrainBatch } from "@webtune/core";
import { optimizerFor, syncStep } from "./train_step.js";

/** Peak tensor bytes over one forward, backward, clip and AdamW step, the optimizer's moments included. */
export async function peakStepBytes(
  model: TrainableModel,
  batch: TrainBatch,
): Promise<number> {
  const optimizer = optimizerFor(model);
  try {
    const info = await tf.profile(() => syncStep(model, optimizer, batch));
    return info.peakBytes;
  } finally {
    optimizer.dispose();
  }
}

/** A LoRA model's compiled training session as the engine tests take it: one group, AdamW's defaults, clipping at 1. */
import type { LoraModel } from "@webtune/core";
import type { TrainingSession } from "../../packages/core/src/engine/session.js";

export function compileLora(
  peft: LoraModel,
  options: { batchSize?: number; logitBudget?: number } = {},
): TrainingSession {
  const session = peft.compileTraining({
    logitBudget: options.logitBudget,
    groups: [
      { variables: peft.trainableVariables(), lrScale: 1, weightDecay: 0 },
    ],
    batchSize: options.batchSize ?? 2,
    betas: [0.9, 0.999],
    eps: 1e-8,
    maxGradNorm: 1,
  });
  if (!session) throw new Error("no compiled step for this model");
  return session;
}

/**
 * Training checkpoints: the adapter (as PEFT files), the optimizer's moments, and the step. Data order and
 * dropout masks are functions of the step and seed, so restoring these resumes the run exactly.
 */
import * as tf from "@tensorflow/tfjs";
import { FormatError } from "../errors.js";
import type { CheckpointFiles } from "../io/checkpoint_store.js";
import { adapterKey } from "../io/peft.js";
import { openSafetensors, writeSafetensors } from "../io/safetensors.js";
import type { LoraModel } from "../lora/model.js";
import type { AdamW } from "./optimizer.js";

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Best validation loss so far and evaluations without improvement, for early stopping. */
  bestLoss: number | null;
  stale: number;
}

const OPTIMIZER = "optimizer.safetensors";
const STATE = "trainer_state.json";

export async function captureCheckpoint(
  model: LoraModel,
  optimizer: AdamW,
  state: TrainerState,
): Promise<CheckpointFiles> {
  const adapter = await model.saveAdapter();
  const moments = await optimizer.exportState();
  const tensors: Record<
    string,
    { dtype: "F32"; shape: number[]; data: Float32Array }
  > = {};
  moments.moments.forEach((m, i) => {
    tensors[`${i}.exp_avg`] = { dtype: "F32", shape: m.shape, data: m.m };
    tensors[`${i}.exp_avg_sq`] = { dtype: "F32", shape: m.shape, data: m.v };
  });
  return {
    ...adapter,
    [OPTIMIZER]: writeSafetensors(tensors, { step: String(moments.step) }),
    [STATE]: JSON.stringify(state),
  };
}

/** Puts a checkpoint's adapter values and optimizer moments back; returns the trainer state. */
export async function restoreCheckpoint(
  model: LoraModel,
  optimizer: AdamW,
  files: Record<string, Uint8Array>,
  source: string,
): Promise<TrainerState> {
  for (const name of ["adapter_model.safetensors", OPTIMIZER, STATE]) {
    if (!files[name])
      throw new FormatError(`${source}: the checkpoint has no ${name}.`);
  }
  const adapter = await openSafetensors(files["adapter_model.safetensors"]!);
  for (const { key, part, variable } of model.namedTrainableVariables()) {
    const file = adapterKey(key.slice(0, -part.length - 1), part);
    if (!adapter.has(file))
      throw new FormatError(
        `${source}: the checkpoint's adapter lacks ${file}; was it saved from another adapter?`,
      );
    const t = await adapter.read(file);
    variable.assign(tf.tensor(t.data as Float32Array, variable.shape));
  }
  const opt = await openSafetensors(files[OPTIMIZER]!);
  const count = opt.names.length / 2;
  const moments = [];
  for (let i = 0; i < count; i++) {
    const [m, v] = [
      await opt.read(`${i}.exp_avg`),
      await opt.read(`${i}.exp_avg_sq`),
    ];
    moments.push({
      name: String(i),
      shape: m.shape,
      m: m.data as Float32Array,
      v: v.data as Float32Array,
    });
  }
  optimizer.importState({ step: Number(opt.metadata["step"]), moments });
  return JSON.parse(new TextDecoder().decode(files[STATE]!)) as TrainerState;
}

/**
 * Training checkpoints: the trainable values, the optimizer's moments, and the step. Data order and
 * dropout masks are functions of the step and seed, so restoring these resumes the run exactly.
 */
import * as tf from "@tensorflow/tfjs";
import { FormatError } from "../errors.js";
import type { CheckpointFiles } from "../io/checkpoint_store.js";
import { openSafetensors, writeSafetensors } from "../io/safetensors.js";
import type { TrainableModel } from "./trainable.js";
import type { OptimizerState } from "./steppers.js";

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Best validation loss so far and evaluations without improvement, for early stopping. */
  bestLoss: number | null;
  stale: number;
}

const OPTIMIZER = "optimizer.safetensors";
const STATE = "trainer_state.json";

const WEIGHTS = "weights.safetensors";

/** The trainable values (by stable key), the optimizer's moments, and the trainer state. */
export async function captureCheckpoint(
  model: TrainableModel,
  optimizer: OptimizerState,
  state: TrainerState,
): Promise<CheckpointFiles> {
  const weights: Record<
    string,
    { dtype: "F32"; shape: number[]; data: Float32Array }
  > = {};
  for (const { key, variable } of model.namedTrainableVariables()) {
    weights[key] = {
      dtype: "F32",
      shape: variable.shape,
      data: (await variable.data()) as Float32Array,
    };
  }
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
    [WEIGHTS]: writeSafetensors(weights),
    [OPTIMIZER]: writeSafetensors(tensors, { step: String(moments.step) }),
    [STATE]: JSON.stringify(state),
  };
}

/** Puts a checkpoint's trainable values and optimizer moments back; returns the trainer state. */
export async function restoreCheckpoint(
  model: TrainableModel,
  optimizer: OptimizerState,
  files: Record<string, Uint8Array>,
  source: string,
): Promise<TrainerState> {
  for (const name of [WEIGHTS, OPTIMIZER, STATE]) {
    if (!files[name])
      throw new FormatError(`${source}: the checkpoint has no ${name}.`);
  }
  const weights = await openSafetensors(files[WEIGHTS]!);
  for (const { key, variable } of model.namedTrainableVariables()) {
    if (!weights.has(key)) {
      throw new FormatError(
        `${source}: the checkpoint has no value for "${key}"; was it saved from another model or adapter?`,
      );
    }
    const t = await weights.read(key);
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

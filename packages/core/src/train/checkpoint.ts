/**
 * Training checkpoints: the trainable values, the optimizer's moments, the step, and the identity of the run that
 * made them. Data order and dropout masks are functions of the step and seed, so restoring these resumes the run
 * exactly. A restore checks everything (the run's identity, every tensor's shape) before it assigns anything.
 */
import * as tf from "@tensorflow/tfjs";
import { FormatError } from "../errors.js";
import type { CheckpointFiles } from "../io/checkpoint_store.js";
import {
  checkFinite,
  openSafetensors,
  writeSafetensors,
  type CpuTensor,
} from "../io/safetensors.js";
import {
  checkRunIdentity,
  parseRunIdentity,
  type RunIdentity,
} from "./run_identity.js";
import type { TrainableModel } from "./trainable.js";
import type { OptimizerState } from "./steppers.js";

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Best validation loss so far and evaluations without improvement, for early stopping. */
  bestLoss: number | null;
  stale: number;
  /** The run that wrote the checkpoint (absent in checkpoints of older versions). */
  run?: RunIdentity;
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

/**
 * Puts a checkpoint's trainable values and optimizer moments back; returns the trainer state. Refuses, changing
 * nothing, a checkpoint of another run (`run`, see run_identity.ts) or one whose tensors do not fit the model.
 */
export async function restoreCheckpoint(
  model: TrainableModel,
  optimizer: OptimizerState,
  files: Record<string, Uint8Array>,
  source: string,
  run?: RunIdentity,
): Promise<TrainerState> {
  for (const name of [WEIGHTS, OPTIMIZER, STATE]) {
    if (!Object.hasOwn(files, name) || !(files[name] instanceof Uint8Array))
      throw new FormatError(`${source}: the checkpoint has no ${name}.`);
  }
  const state = readTrainerState(files[STATE]!, source);
  if (run) checkRunIdentity(state.run, run, source);
  const weights = await openSafetensors(files[WEIGHTS]!);
  const values: [tf.Variable, Float32Array][] = [];
  for (const { key, variable } of model.namedTrainableVariables()) {
    if (!weights.has(key)) {
      throw new FormatError(
        `${source}: the checkpoint has no value for "${key}"; was it saved from another model or adapter?`,
      );
    }
    const t = floats(await weights.read(key), source);
    if (t.shape.join() !== variable.shape.join())
      throw new FormatError(
        `${source}: "${key}" is [${t.shape.join(", ")}] in the checkpoint but [${variable.shape.join(", ")}] in ` +
          `this model; was it saved with another rank or model?`,
      );
    values.push([variable, t.data as Float32Array]);
  }
  const opt = await openSafetensors(files[OPTIMIZER]!);
  const count = opt.names.length / 2;
  const moments = [];
  for (let i = 0; i < count; i++) {
    const [m, v] = [
      floats(await opt.read(`${i}.exp_avg`), source),
      floats(await opt.read(`${i}.exp_avg_sq`), source),
    ];
    moments.push({
      name: String(i),
      shape: m.shape,
      m: m.data as Float32Array,
      v: v.data as Float32Array,
    });
  }
  // Checked before any value is assigned, so a bad step changes nothing.
  const written = opt.metadata["step"];
  const step = wholeNumber(
    // Digits only: Number("") is 0 and Number("0x10") 16.
    written !== undefined && /^\d{1,16}$/.test(written)
      ? Number(written)
      : written,
    `${OPTIMIZER}'s metadata "step"`,
    source,
  );
  for (const [variable, data] of values)
    variable.assign(tf.tensor(data, variable.shape));
  optimizer.importState({ step, moments });
  return state;
}

function readTrainerState(bytes: Uint8Array, source: string): TrainerState {
  let state: unknown;
  try {
    state = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(`${source}: ${STATE} is not JSON (${String(e)}).`);
  }
  if (typeof state !== "object" || state === null || Array.isArray(state))
    throw new FormatError(`${source}: ${STATE} is not a JSON object.`);
  const s = state as Record<string, unknown>;
  const bestLoss = s["bestLoss"];
  if (
    bestLoss !== null &&
    !(
      typeof bestLoss === "number" &&
      Number.isFinite(bestLoss) &&
      bestLoss >= 0
    )
  )
    throw new FormatError(
      `${source}: ${STATE} has "bestLoss" ${shown(bestLoss)}; it must be null or a loss (a finite number >= 0).`,
    );
  return {
    ...(s as unknown as TrainerState),
    step: wholeNumber(s["step"], `${STATE}'s "step"`, source),
    bestLoss,
    stale: wholeNumber(s["stale"], `${STATE}'s "stale"`, source),
    run: parseRunIdentity(s["run"], source),
  };
}

/** A count read from a checkpoint (steps, evaluations): an integer from 0 to 2^53 - 1. */
function wholeNumber(value: unknown, field: string, source: string): number {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0)
    return value;
  throw new FormatError(
    `${source}: ${field} is ${shown(value)}; it must be a whole number from 0 to 2^53 - 1. The checkpoint ` +
      `is damaged or was edited: resume from an earlier one.`,
  );
}

/** A checkpoint tensor's values: floating point and finite (a NaN would come back as the run's weights). */
function floats(
  tensor: CpuTensor,
  source: string,
): CpuTensor & { data: Float32Array } {
  if (!(tensor.data instanceof Float32Array))
    throw new FormatError(
      `${source}: "${tensor.name}" is ${tensor.dtype}; checkpoint tensors are floating point.`,
    );
  checkFinite(tensor, source);
  return tensor as CpuTensor & { data: Float32Array };
}

function shown(value: unknown): string {
  if (typeof value === "number") return String(value);
  let text: string;
  try {
    text = String(JSON.stringify(value));
  } catch {
    text = typeof value;
  }
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

/**
 * The check before the first training step: will the largest tensor fit one storage binding, and will the step
 * fit the memory budget the caller set? A configuration that cannot fit fails here, with the numbers and what
 * to change, instead of losing the device part-way through a run.
 */
import { ConfigError, ShapeError } from "../errors.js";
import type { MemoryFootprint } from "../models/footprint.js";

/**
 * How the preflight's advice names the options it suggests: the API's by default; a CLI passes its flags, so that
 * its users are told what they can type.
 */
export interface MemoryOptionNames {
  float16: string;
  nf4: string;
  nf4DoubleQuant: string;
  gradientCheckpointing: string;
}

export const API_MEMORY_OPTION_NAMES: MemoryOptionNames = {
  float16: '{ dtype: "float16" }',
  nf4: '{ quantize: "nf4" }',
  nf4DoubleQuant: '{ quantize: "nf4", doubleQuant: true }',
  gradientCheckpointing: "gradientCheckpointing: true",
};

export interface PreflightContext {
  footprint: MemoryFootprint;
  /** The footprint is the compiled step's buffer plan (exact), not the model's estimate. */
  planned?: boolean;
  batch: number;
  tokens: number;
  /** The device's maxStorageBufferBindingSize (Infinity on the CPU backend). */
  bindingLimit: number;
  /** The caller's budget in bytes, if any. */
  budget?: number;
  /** What the run already uses, so suggestions name only what is left to try. */
  using: {
    gradientCheckpointing: boolean;
    /** "float32", "float16", "int8" or "nf4": the storage of the base's projections. */
    baseFormat: string;
  };
  names?: MemoryOptionNames;
}

const MiB = 2 ** 20;

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}

/** What would shrink the step, most effective first, leaving out what is already on. */
function suggestions(c: PreflightContext): string[] {
  const out: string[] = [];
  const n = c.names ?? API_MEMORY_OPTION_NAMES;
  if (c.using.baseFormat === "float32")
    out.push(
      `load the base with ${n.float16} (half the weights) or ${n.nf4} (about an eighth)`,
    );
  else if (c.using.baseFormat !== "nf4")
    out.push(`load the base with ${n.nf4DoubleQuant}`);
  if (!c.using.gradientCheckpointing)
    out.push(
      `turn on ${n.gradientCheckpointing} (keeps only each block's input)`,
    );
  out.push(
    `use a smaller batch (now ${c.batch}) or shorter sequences (now ${c.tokens} tokens)`,
  );
  return out;
}

/** Throws ShapeError or ConfigError, naming the numbers, when the step cannot fit. */
export function preflight(c: PreflightContext): void {
  const f = c.footprint;
  if (f.largestTensor.bytes > c.bindingLimit) {
    throw new ShapeError(
      `Trainer: at batch ${c.batch} × ${c.tokens} tokens, ${f.largestTensor.name} takes ${mib(f.largestTensor.bytes)}, ` +
        `over this device's maxStorageBufferBindingSize (${mib(c.bindingLimit)}). Use a smaller batch or shorter ` +
        `sequences (gradient accumulation keeps the effective batch).`,
    );
  }
  if (c.budget !== undefined && f.peak > c.budget) {
    throw new ConfigError(
      `Trainer: one step ${c.planned ? "is planned to need" : "is expected to need about"} ${mib(f.peak)} of GPU ` +
        `memory, over the budget of ${mib(c.budget)}: ` +
        `base weights ${mib(f.baseWeights)}, trained tensors ${mib(f.trained)}, their gradients and optimizer ` +
        `state ${mib(f.gradientsAndOptimizer)}, activations ${mib(f.activations)}. To fit: ${suggestions(c).join("; or ")}.`,
    );
  }
}

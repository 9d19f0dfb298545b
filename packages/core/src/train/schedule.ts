/**
 * Learning-rate schedules identical to Hugging Face transformers' `optimization.py`. Each is a multiplier
 * lambda(step) of the base learning rate, as torch's LambdaLR applies it: the lr of optimizer step k (0-based:
 * the first `optimizer.step()` is k = 0) is baseLr · lambda(k).
 *
 *   constant_with_warmup: k < W ? k / max(1, W) : 1
 *   linear:               k < W ? k / max(1, W) : max(0, (N − k) / max(1, N − W))
 *   cosine:               k < W ? k / max(1, W) : max(0, ½ (1 + cos(π · cycles · 2 · (k − W) / max(1, N − W))))
 *   constant:             1 (HF's `get_constant_schedule`; it ignores warmup)
 * with W = warmupSteps, N = totalSteps, cycles = numCycles (default 0.5: a half cosine from 1 down to 0).
 */
import { ConfigError } from "../errors.js";

/** HF's `SchedulerType` names for the schedules webtune has. */
export type LrSchedulerType =
  "constant" | "constant_with_warmup" | "linear" | "cosine";

/** What a schedule needs; HF's `lr_scheduler_type`, `learning_rate`, `warmup_steps` and `max_steps`. */
export interface ScheduleConfig {
  type: LrSchedulerType;
  /** The peak learning rate (HF `learning_rate`). */
  baseLr: number;
  /** Steps of linear warmup from 0 (HF `warmup_steps`; see `warmupStepsFromRatio` for `warmup_ratio`). Default 0. */
  warmupSteps?: number;
  /** Optimizer steps in the whole run (HF `num_training_steps`). Needed by "linear" and "cosine". */
  totalSteps?: number;
  /** Cosine waves over the decay (HF `num_cycles`). Default 0.5. */
  numCycles?: number;
}

/** A learning-rate schedule: plain arithmetic, no tensors. */
export interface LrSchedule {
  readonly config: Readonly<Required<ScheduleConfig>>;
  /** The multiplier of the base lr at 0-based optimizer step `step` (HF's lr_lambda). */
  lambda(step: number): number;
  /** The learning rate of 0-based optimizer step `step`: baseLr · lambda(step). */
  lrAt(step: number): number;
}

/**
 * Builds the schedule HF's `get_scheduler(type, ...)` would build.
 *
 * @example
 * ```ts
 * const schedule = createSchedule({ type: 'cosine', baseLr: 2e-4, warmupSteps: 10, totalSteps: 500 });
 * for (let step = 0; step < 500; step++) optimizer.step(grads, schedule.lrAt(step));
 * ```
 */
export function createSchedule(config: ScheduleConfig): LrSchedule {
  const c = validateSchedule(config);
  const warmup = (k: number) => k / Math.max(1, c.warmupSteps);
  const progress = (k: number) =>
    (k - c.warmupSteps) / Math.max(1, c.totalSteps - c.warmupSteps);
  const decay: Record<LrSchedulerType, (k: number) => number> = {
    constant: () => 1,
    constant_with_warmup: () => 1,
    linear: (k) =>
      Math.max(
        0,
        (c.totalSteps - k) / Math.max(1, c.totalSteps - c.warmupSteps),
      ),
    cosine: (k) =>
      Math.max(
        0,
        0.5 * (1 + Math.cos(Math.PI * c.numCycles * 2 * progress(k))),
      ),
  };
  const lambda = (step: number): number => {
    if (!(Number.isInteger(step) && step >= 0))
      throw new ConfigError(
        `schedule step must be an integer ≥ 0, got ${step}.`,
      );
    if (c.type !== "constant" && step < c.warmupSteps) return warmup(step);
    return decay[c.type](step);
  };
  return { config: c, lambda, lrAt: (step) => c.baseLr * lambda(step) };
}

/**
 * HF's `TrainingArguments.get_warmup_steps`: `warmup_ratio` of the total steps, rounded up.
 *
 * @example
 * ```ts
 * warmupStepsFromRatio(0.03, 1000); // 30
 * ```
 */
export function warmupStepsFromRatio(
  ratio: number,
  totalSteps: number,
): number {
  if (!(Number.isFinite(ratio) && ratio >= 0 && ratio <= 1))
    throw new ConfigError(`warmup_ratio must be in [0, 1], got ${ratio}.`);
  if (!(Number.isInteger(totalSteps) && totalSteps >= 0))
    throw new ConfigError(
      `totalSteps must be an integer ≥ 0, got ${totalSteps}.`,
    );
  return Math.ceil(totalSteps * ratio);
}

function validateSchedule(config: ScheduleConfig): Required<ScheduleConfig> {
  const c: Required<ScheduleConfig> = {
    type: config.type,
    baseLr: config.baseLr,
    warmupSteps: config.warmupSteps ?? 0,
    totalSteps: config.totalSteps ?? 0,
    numCycles: config.numCycles ?? 0.5,
  };
  const types: LrSchedulerType[] = [
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
  ];
  if (!types.includes(c.type))
    throw new ConfigError(
      `lr_scheduler_type must be one of ${types.join(", ")}, got "${String(c.type)}".`,
    );
  if (!(Number.isFinite(c.baseLr) && c.baseLr >= 0))
    throw new ConfigError(
      `learning rate must be a finite number ≥ 0, got ${c.baseLr}.`,
    );
  if (!(Number.isInteger(c.warmupSteps) && c.warmupSteps >= 0))
    throw new ConfigError(
      `warmupSteps must be an integer ≥ 0, got ${c.warmupSteps}.`,
    );
  const decays = c.type === "linear" || c.type === "cosine";
  if (decays && !(Number.isInteger(c.totalSteps) && c.totalSteps >= 1))
    throw new ConfigError(
      `the "${c.type}" schedule needs totalSteps, an integer ≥ 1; got ${config.totalSteps}.`,
    );
  if (!Number.isFinite(c.numCycles))
    throw new ConfigError(`numCycles must be finite, got ${c.numCycles}.`);
  return c;
}

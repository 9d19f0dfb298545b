/**
 * AdamW exactly as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments, eps added to √v̂), over
 * parameter groups that each scale the learning rate and set their own weight decay. LoRA+ is two such groups:
 * the B matrices train at `lr · loraplus_lr_ratio` (Hayou et al. 2024; PEFT's `create_loraplus_optimizer`).
 *
 * Per variable p with gradient g, at step t (1-based), with lr = scheduleLr · group.lrScale:
 *   p ← p · (1 − lr · wd)
 *   m ← β1 · m + (1 − β1) · g
 *   v ← β2 · v + (1 − β2) · g²
 *   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
 * The scalars are computed in float64 in JavaScript, as torch computes them in Python; the tensors are float32.
 */
import * as tf from "@tensorflow/tfjs";
import {
  ConfigError,
  FormatError,
  ShapeError,
  WebtuneError,
} from "../errors.js";
import { tagMemory } from "../runtime/memory.js";
import { adamwUpdate, checkAdamwInputs } from "../kernels/adamw/op.js";

/** AdamW hyperparameters, with torch's names in the comments and torch's defaults. */
export interface AdamWConfig {
  /** torch `betas`: decay rates of the first and second moment estimates. Default [0.9, 0.999]. */
  betas: [number, number];
  /** torch `eps`: added to √v̂ in the denominator. Default 1e-8. */
  eps: number;
  /**
   * torch `weight_decay`, decoupled (p ← p · (1 − lr · wd)). Default 0.01, torch's AdamW default; note that
   * Hugging Face's `TrainingArguments.weight_decay` defaults to 0.0, so pass 0 to match a default HF Trainer run.
   */
  weightDecay: number;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: Readonly<AdamWConfig> = Object.freeze({
  betas: [0.9, 0.999] as [number, number],
  eps: 1e-8,
  weightDecay: 0.01,
});

/** Variables that share a learning-rate multiplier and a weight decay (torch's param_groups). */
export interface ParamGroup {
  /** The variables this group updates; each variable belongs to exactly one group. */
  variables: tf.Variable[];
  /** The group's learning rate is the per-step lr times this. Default 1. */
  lrScale?: number;
  /** The group's decoupled weight decay. Default: the optimizer's `weightDecay`. */
  weightDecay?: number;
}

/** Moment estimates of one variable, as plain arrays. */
export interface AdamWMoments {
  /** The variable's `tf.Variable.name` when exported, for messages only: names differ between sessions. */
  name: string;
  shape: number[];
  /** First moment (torch `exp_avg`). */
  m: Float32Array;
  /** Second moment (torch `exp_avg_sq`). */
  v: Float32Array;
}

/** Everything AdamW needs to resume: restoring it gives a bit-identical continuation. */
export interface AdamWState {
  /** Optimizer steps taken so far (torch's `state["step"]`, the same for every variable here). */
  step: number;
  /**
   * Moments of each variable, in the order the optimizer was given them (group by group), so that a fresh
   * optimizer built the same way in a new session restores them: tfjs variable names differ between sessions.
   */
  moments: AdamWMoments[];
}

interface Slot {
  variable: tf.Variable;
  lrScale: number;
  weightDecay: number;
  m: tf.Variable;
  v: tf.Variable;
}

/**
 * AdamW over parameter groups; the learning rate is passed to each `step()` (from the schedule).
 *
 * @example
 * ```ts
 * const opt = new AdamW(model.trainableVariables(), { weightDecay: 0 });
 * const { value: loss, grads } = tf.variableGrads(() => lossFn(), model.trainableVariables());
 * opt.step(grads, schedule.lrAt(step));
 * tf.dispose([loss, grads]);
 * ```
 */
export class AdamW {
  readonly config: Readonly<AdamWConfig>;
  private readonly slots: Slot[] = [];
  private steps = 0;
  private disposed = false;

  constructor(
    params: ParamGroup[] | tf.Variable[],
    config: Partial<AdamWConfig> = {},
  ) {
    this.config = validateAdamW({ ...ADAMW_DEFAULTS, ...config });
    const groups: ParamGroup[] = params.every(
      (p): p is tf.Variable => p instanceof tf.Variable,
    )
      ? [{ variables: params }]
      : (params as ParamGroup[]);
    const seen = new Set<string>();
    groups.forEach((group, i) => {
      const lrScale = group.lrScale ?? 1;
      const weightDecay = group.weightDecay ?? this.config.weightDecay;
      if (!(Number.isFinite(lrScale) && lrScale >= 0))
        throw new ConfigError(
          `param group ${i}: lrScale must be a finite number ≥ 0, got ${lrScale}.`,
        );
      if (!(Number.isFinite(weightDecay) && weightDecay >= 0))
        throw new ConfigError(
          `param group ${i}: weightDecay must be a finite number ≥ 0, got ${weightDecay}.`,
        );
      for (const variable of group.variables) {
        if (seen.has(variable.name))
          throw new ConfigError(
            `variable "${variable.name}" appears in more than one param group; give each variable to one group.`,
          );
        seen.add(variable.name);
        const [m, v] = tf.tidy(() => [
          tf.variable(tf.zeros(variable.shape), false),
          tf.variable(tf.zeros(variable.shape), false),
        ]);
        tagMemory("optimizer", [m!, v!]);
        this.slots.push({ variable, lrScale, weightDecay, m: m!, v: v! });
      }
    });
  }

  /** Optimizer steps taken so far (torch's `state["step"]`). */
  get stepCount(): number {
    return this.steps;
  }

  /**
   * One AdamW update of every variable, in place. `grads` maps `tf.Variable.name` to its gradient (what
   * `tf.variableGrads` returns); it must hold every variable of the optimizer, and other entries are ignored.
   * The caller keeps ownership of `grads`. No GPU→CPU sync.
   */
  step(grads: tf.NamedTensorMap, lr: number): void {
    this.checkLive();
    if (!(Number.isFinite(lr) && lr >= 0))
      throw new ConfigError(
        `learning rate must be a finite number ≥ 0, got ${lr}.`,
      );
    for (const { variable } of this.slots) {
      const g = grads[variable.name];
      if (!g)
        throw new ShapeError(
          `no gradient for variable "${variable.name}" ${JSON.stringify(variable.shape)}; pass a gradient for every variable the optimizer updates.`,
        );
      if (!tf.util.arraysEqual(g.shape, variable.shape))
        throw new ShapeError(
          `gradient of "${variable.name}" has shape ${JSON.stringify(g.shape)}, expected ${JSON.stringify(variable.shape)}.`,
        );
    }
    // Every variable is checked before any is updated: a refused step leaves the model and the count as they were.
    for (const { variable, m, v } of this.slots)
      checkAdamwInputs(variable, grads[variable.name]!, m, v);
    const t = ++this.steps;
    const [beta1, beta2] = this.config.betas;
    const bias1 = 1 - beta1 ** t;
    const bias2Sqrt = Math.sqrt(1 - beta2 ** t);
    // One fused kernel per variable (kernels/adamw): a single GPU dispatch computes p, m and v together.
    tf.tidy(() => {
      for (const slot of this.slots) {
        const groupLr = lr * slot.lrScale;
        const [p, m, v] = adamwUpdate(
          slot.variable,
          grads[slot.variable.name]!,
          slot.m,
          slot.v,
          {
            beta1,
            beta2,
            eps: this.config.eps,
            stepSize: groupLr / bias1,
            bias2Sqrt,
            decay: 1 - groupLr * slot.weightDecay,
          },
        );
        slot.variable.assign(p);
        slot.m.assign(m);
        slot.v.assign(v);
      }
    });
  }

  /** Copies the step count and the moments to CPU arrays (one GPU→CPU read per moment tensor). */
  async exportState(): Promise<AdamWState> {
    this.checkLive();
    const moments: AdamWMoments[] = [];
    for (const { variable, m, v } of this.slots) {
      // .slice(): the backend may keep the array it returns, and a checkpoint must not alias it.
      moments.push({
        name: variable.name,
        shape: [...variable.shape],
        m: ((await m.data()) as Float32Array).slice(),
        v: ((await v.data()) as Float32Array).slice(),
      });
    }
    return { step: this.steps, moments };
  }

  /**
   * Restores what `exportState` returned into an optimizer over the same variables in the same order (matched
   * by position and shape). The arrays are copied.
   */
  importState(state: AdamWState): void {
    this.checkLive();
    if (!(Number.isInteger(state.step) && state.step >= 0))
      throw new FormatError(
        `optimizer state: step must be an integer ≥ 0, got ${state.step}.`,
      );
    if (state.moments.length !== this.slots.length)
      throw new FormatError(
        `optimizer state has moments for ${state.moments.length} variables, but this optimizer updates ${this.slots.length}; restore it into an optimizer built over the same variables.`,
      );
    this.slots.forEach(({ variable }, i) => {
      const saved = state.moments[i]!;
      const size = variable.size;
      if (
        !tf.util.arraysEqual(saved.shape, variable.shape) ||
        saved.m.length !== size ||
        saved.v.length !== size
      )
        throw new FormatError(
          `optimizer state, variable ${i} (saved as "${saved.name}"): expected shape ${JSON.stringify(variable.shape)} with ${size} values, found shape ${JSON.stringify(saved.shape)} with ${saved.m.length} (m) and ${saved.v.length} (v) values; build the optimizer over the same variables in the same order.`,
        );
    });
    this.slots.forEach(({ variable, m, v }, i) => {
      const saved = state.moments[i]!;
      tf.tidy(() => {
        m.assign(tf.tensor(saved.m, variable.shape, "float32"));
        v.assign(tf.tensor(saved.v, variable.shape, "float32"));
      });
    });
    this.steps = state.step;
  }

  /** Frees the moment tensors; the optimizer cannot step afterwards. The variables themselves are untouched. */
  dispose(): void {
    for (const { m, v } of this.slots) tf.dispose([m, v]);
    this.slots.length = 0;
    this.disposed = true;
  }

  private checkLive(): void {
    if (this.disposed)
      throw new WebtuneError(
        "this AdamW optimizer was disposed; create a new one (and importState to resume).",
      );
  }
}

/**
 * LoRA+ parameter groups (PEFT's `create_loraplus_optimizer`): the B matrices, and 1-D adapter tensors such as
 * DoRA magnitudes (PEFT puts every 1-D trainable tensor in B's group), train at `lr · loraplusLrRatio`; the rest
 * at `lr`. The caller says which variables are B, since tfjs variables carry no PEFT names. (PEFT's separate
 * no-decay group only ever holds biases and norm weights, which webtune's adapters never train.)
 *
 * @example
 * ```ts
 * const bs = new Set(adapterWeights.map((w) => w.B));
 * const opt = new AdamW(
 *   loraPlusGroups({ variables: model.trainableVariables(), isB: (v) => bs.has(v), loraplusLrRatio: 16 }),
 *   { weightDecay: 0 },
 * );
 * ```
 */
export function loraPlusGroups(options: {
  variables: tf.Variable[];
  isB: (variable: tf.Variable) => boolean;
  /** PEFT's `loraplus_lr_ratio`: lr of B over lr of A (the paper suggests 2^4 = 16). */
  loraplusLrRatio: number;
  /** Weight decay of both groups. Default: the optimizer's. */
  weightDecay?: number;
}): ParamGroup[] {
  const { variables, isB, loraplusLrRatio: ratio, weightDecay } = options;
  if (!(Number.isFinite(ratio) && ratio > 0))
    throw new ConfigError(
      `loraplus_lr_ratio must be a finite number > 0, got ${ratio}.`,
    );
  const a = variables.filter((v) => !(isB(v) || v.rank === 1));
  const b = variables.filter((v) => isB(v) || v.rank === 1);
  const decay = weightDecay === undefined ? {} : { weightDecay };
  return [
    { variables: a, lrScale: 1, ...decay },
    { variables: b, lrScale: ratio, ...decay },
  ].filter((g) => g.variables.length > 0);
}

function validateAdamW(config: AdamWConfig): AdamWConfig {
  const [beta1, beta2] = config.betas;
  for (const [name, beta] of [
    ["betas[0]", beta1],
    ["betas[1]", beta2],
  ] as const)
    if (!(Number.isFinite(beta) && beta >= 0 && beta < 1))
      throw new ConfigError(`AdamW ${name} must be in [0, 1), got ${beta}.`);
  if (!(Number.isFinite(config.eps) && config.eps >= 0))
    throw new ConfigError(
      `AdamW eps must be a finite number ≥ 0, got ${config.eps}.`,
    );
  if (!(Number.isFinite(config.weightDecay) && config.weightDecay >= 0))
    throw new ConfigError(
      `AdamW weightDecay must be a finite number ≥ 0, got ${config.weightDecay}.`,
    );
  return {
    betas: [beta1, beta2],
    eps: config.eps,
    weightDecay: config.weightDecay,
  };
}

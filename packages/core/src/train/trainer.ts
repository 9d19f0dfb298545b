/**
 * The training loop: schedule, forward, backward, accumulate, clip, step, log. It sees a model that maps token
 * ids to a loss and exposes trainable variables (a LoraModel), and batches of ids and labels.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import { lowbias32 } from "../kernels/lora_linear/dropout.js";
import { trimBufferPool } from "../backend/buffers.js";
import { variableGradsFreeingAsTheyGo } from "../backend/tape.js";
import { gpuMemory, resetPeakMemory } from "../runtime/memory.js";
import { gpuInfo } from "../runtime/runtime.js";
import { preflight } from "./preflight.js";
import type { TrainableModel } from "./trainable.js";
import type { CheckpointStore } from "../io/checkpoint_store.js";
import { captureCheckpoint, restoreCheckpoint } from "./checkpoint.js";
import { BestWeights } from "./best.js";
import { clipGradNorm } from "./clip.js";
import { AdamW, loraPlusGroups } from "./optimizer.js";
import { createSchedule, type LrSchedulerType } from "./schedule.js";

/** One batch: right-padded ids, and labels with -100 wherever no loss is taken (HF convention). */
export interface TrainBatch {
  inputIds: number[][];
  labels: number[][];
}

export interface TrainerOptions {
  /** Peak learning rate. Default 2e-4. */
  learningRate?: number;
  /** Default "linear", as HF's Trainer. */
  schedule?: LrSchedulerType;
  warmupSteps?: number;
  /** Micro-batches accumulated into one optimizer step. Default 1. */
  gradAccum?: number;
  /** Optimizer steps to run. Default: every batch once (one epoch of `train`). */
  maxSteps?: number;
  /** Global-norm clipping; 0 turns it off. Default 1.0, as HF. */
  maxGradNorm?: number;
  /** Decoupled AdamW weight decay. Default 0, as HF's Trainer. */
  weightDecay?: number;
  /** LoRA+: B's learning rate over A's (PEFT's loraplus_lr_ratio). Default off. */
  loraplusLrRatio?: number;
  /** Micro-batches in one epoch, so step events can report the epoch. */
  batchesPerEpoch?: number;
  /** Seeds the dropout masks. Default 0. */
  seed?: number;
  /**
   * Activation checkpointing, as HF's `gradient_checkpointing`: each decoder block keeps only its input and
   * runs again in the backward pass, for the same gradients with less peak memory (about a third more compute).
   * On for the training steps only; the model's own setting is restored after. Default false.
   */
  gradientCheckpointing?: boolean;
  /**
   * GPU bytes one step may use. Before the first step the Trainer estimates the step's peak from the model's
   * shapes and the largest batch, and refuses to start over budget, saying what to change. Browsers do not
   * report GPU memory, so this is the caller's number. Default: no budget (the device's per-buffer limit is
   * always checked).
   */
  memoryBudget?: number;
  /** Read the loss back (a GPU→CPU sync) every N steps. Default 1. */
  logEvery?: number;
  /** Evaluate on `val` every N optimizer steps (and at the end). Default: only at the end. */
  evalEvery?: number;
  /** Stop when the validation loss has not improved by `minDelta` for `patience` evaluations; restore the best. */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Save a checkpoint (adapter, optimizer, step) every `every` optimizer steps, named "step-000042". */
  checkpoint?: { store: CheckpointStore; every: number };
  onEvent?: (event: TrainEvent) => void;
}

export interface StepEvent {
  type: "step";
  step: number;
  /** Fractional epochs done, as HF reports them (from `batchesPerEpoch`; 0 when it is not given). */
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  elapsedMs: number;
  etaMs: number;
  /** GPU buffer bytes in use after the step. */
  gpuBytes: number;
  /** The most GPU buffer bytes in use at once during the steps since the previous step event. */
  peakGpuBytes: number;
}

export interface EvalEvent {
  type: "eval";
  step: number;
  loss: number;
  perplexity: number;
  tokens: number;
}

export type TrainEvent = StepEvent | EvalEvent;

export interface TrainResult {
  steps: number;
  stoppedEarly: boolean;
  aborted: boolean;
  bestEval?: EvalEvent;
  history: TrainEvent[];
}

/** Tokens that carry a loss: labels[t] for t ≥ 1 that are not -100 (label t is predicted at t − 1). */
export function lossTokens(labels: number[][]): number {
  let n = 0;
  for (const row of labels)
    for (let t = 1; t < row.length; t++) if (row[t] !== -100) n++;
  return n;
}

export class Trainer {
  private readonly o: Required<
    Omit<
      TrainerOptions,
      | "earlyStopping"
      | "evalEvery"
      | "maxSteps"
      | "onEvent"
      | "loraplusLrRatio"
      | "checkpoint"
      | "batchesPerEpoch"
      | "memoryBudget"
    >
  > &
    TrainerOptions;
  private paused: Promise<void> | undefined;
  private release: (() => void) | undefined;
  private aborted = false;

  constructor(
    readonly model: TrainableModel,
    options: TrainerOptions = {},
  ) {
    this.o = {
      learningRate: 2e-4,
      schedule: "linear",
      warmupSteps: 0,
      gradAccum: 1,
      maxGradNorm: 1.0,
      weightDecay: 0,
      seed: 0,
      logEvery: 1,
      gradientCheckpointing: false,
      ...options,
    };
    for (const key of ["gradAccum", "logEvery"] as const) {
      const v = this.o[key];
      if (!Number.isInteger(v) || v < 1)
        throw new ConfigError(
          `Trainer: ${key} must be a positive integer, got ${v}.`,
        );
    }
    if (
      this.o.gradientCheckpointing &&
      model.gradientCheckpointing === undefined
    )
      throw new ConfigError(
        "Trainer: gradientCheckpointing needs a model with a gradientCheckpointing switch (a LoraModel or " +
          "FullFineTune); this one has none. Leave the option off for it.",
      );
  }

  /** The preflight: the largest batch's step against the binding limit and the memory budget. */
  private checkMemory(batches: TrainBatch[]): void {
    const plan = this.model.memoryPlan;
    if (!plan) return;
    const batch = Math.max(...batches.map((b) => b.inputIds.length));
    const tokens = Math.max(...batches.map((b) => b.inputIds[0]?.length ?? 0));
    const gradientCheckpointing = this.o.gradientCheckpointing ?? false;
    const { footprint, baseFormat } = plan.call(this.model, {
      batch,
      tokens,
      gradientCheckpointing,
    });
    preflight({
      footprint,
      batch,
      tokens,
      bindingLimit:
        tf.getBackend() === "webgpu"
          ? (gpuInfo().limits["maxStorageBufferBindingSize"] ?? Infinity)
          : Infinity,
      budget: this.o.memoryBudget,
      using: { gradientCheckpointing, baseFormat },
    });
  }

  pause(): void {
    this.paused ??= new Promise((resolve) => (this.release = resolve));
  }

  resume(): void {
    this.release?.();
    this.paused = this.release = undefined;
  }

  /** Ends training after the current step; `train` resolves with `aborted: true`. */
  abort(): void {
    this.aborted = true;
    this.resume();
  }

  /**
   * Trains the active adapter on `train` (batches in order), evaluating on `val`.
   *
   * @example
   * ```ts
   * const trainer = new Trainer(peft, { learningRate: 2e-4, evalEvery: 50, onEvent: console.log });
   * const result = await trainer.train({ train: batches, val: valBatches });
   * ```
   */
  async train(
    data: { train: TrainBatch[]; val?: TrainBatch[] },
    /** A checkpoint's files (from `store.load(name)`): the run continues after its step, as if never stopped. */
    resume?: Record<string, Uint8Array>,
  ): Promise<TrainResult> {
    const o = this.o;
    const total = o.maxSteps ?? Math.ceil(data.train.length / o.gradAccum);
    const schedule = createSchedule({
      type: o.schedule,
      baseLr: o.learningRate,
      warmupSteps: o.warmupSteps,
      totalSteps: total,
    });
    const vars = this.model.namedTrainableVariables().map((t) => t.variable);
    if (vars.length === 0)
      throw new ConfigError(
        "Trainer: the model has no trainable variables; add an adapter first.",
      );
    this.checkMemory(data.train);
    const optimizer = new AdamW(this.paramGroups(vars), {
      weightDecay: o.weightDecay,
    });
    const history: TrainEvent[] = [];
    const emit = (e: TrainEvent) => {
      history.push(e);
      o.onEvent?.(e);
    };
    const best = new BestWeights(vars, o.earlyStopping?.minDelta ?? 0);
    let stale = 0;
    let stoppedEarly = false;
    let first = 0;
    if (resume) {
      const state = await restoreCheckpoint(
        this.model,
        optimizer,
        resume,
        "resume checkpoint",
      );
      first = state.step;
      stale = state.stale;
      if (state.bestLoss !== null)
        best.offer({
          type: "eval",
          step: state.step,
          loss: state.bestLoss,
          perplexity: Math.exp(state.bestLoss),
          tokens: 0,
        });
    }
    const started = performance.now();
    resetPeakMemory();
    let tokensSeen = 0;
    this.model.state.training = true;
    const checkpointing = this.model.gradientCheckpointing;
    if (o.gradientCheckpointing) this.model.gradientCheckpointing = true;
    try {
      let step = first;
      for (; step < total && !this.aborted; step++) {
        if (this.paused) await this.paused;
        if (this.aborted) break;
        const group = Array.from(
          { length: o.gradAccum },
          (_, i) => data.train[(step * o.gradAccum + i) % data.train.length]!,
        );
        const lr = schedule.lrAt(step);
        const { loss, gradNorm } = this.optimizerStep(
          group,
          vars,
          optimizer,
          lr,
          step,
        );
        tokensSeen += group.reduce(
          (n, b) => n + b.inputIds.length * (b.inputIds[0]?.length ?? 0),
          0,
        );
        if ((step + 1) % o.logEvery === 0 || step + 1 === total) {
          // A CPU-GPU sync point: the loss and norm are read back only every logEvery steps.
          const [l, g] = await Promise.all([loss.data(), gradNorm.data()]);
          const elapsedMs = performance.now() - started;
          const memory = gpuMemory();
          emit({
            type: "step",
            step: step + 1,
            epoch: o.batchesPerEpoch
              ? ((step + 1) * o.gradAccum) / o.batchesPerEpoch
              : 0,
            loss: l[0]!,
            lr,
            gradNorm: g[0]!,
            tokensPerSec: (tokensSeen / elapsedMs) * 1000,
            elapsedMs,
            etaMs: (elapsedMs / (step + 1)) * (total - step - 1),
            gpuBytes: memory.total,
            peakGpuBytes: memory.peak,
          });
          resetPeakMemory();
        }
        tf.dispose([loss, gradNorm]);
        // Padded batches differ in length, and tfjs pools buffers by exact size: keep the pool bounded.
        trimBufferPool();
        if (o.checkpoint && (step + 1) % o.checkpoint.every === 0) {
          const state = {
            step: step + 1,
            bestLoss: best.event?.loss ?? null,
            stale,
          };
          const files = await captureCheckpoint(this.model, optimizer, state);
          await o.checkpoint.store.save(
            `step-${String(step + 1).padStart(6, "0")}`,
            files,
          );
        }
        const evalNow =
          data.val &&
          o.evalEvery !== undefined &&
          (step + 1) % o.evalEvery === 0;
        if (evalNow) {
          const e = await this.evaluate(data.val!, step + 1);
          emit(e);
          if (best.offer(e)) stale = 0;
          else if (o.earlyStopping && ++stale >= o.earlyStopping.patience) {
            stoppedEarly = true;
            step++;
            break;
          }
        }
      }
      if (
        data.val &&
        !stoppedEarly &&
        !(o.evalEvery !== undefined && step % o.evalEvery === 0)
      ) {
        const e = await this.evaluate(data.val, step);
        emit(e);
        best.offer(e);
      }
      if (o.earlyStopping && best.event) best.restore();
      return {
        steps: step,
        stoppedEarly,
        aborted: this.aborted,
        bestEval: best.event,
        history,
      };
    } finally {
      this.model.state.training = false;
      if (o.gradientCheckpointing)
        this.model.gradientCheckpointing = checkpointing;
      optimizer.dispose();
      best.dispose();
    }
  }

  private paramGroups(vars: tf.Variable[]) {
    if (this.o.loraplusLrRatio === undefined) return [{ variables: vars }];
    const bs = new Set(
      this.model
        .namedTrainableVariables()
        .filter((t) => t.part === "lora_B")
        .map((t) => t.variable),
    );
    return loraPlusGroups({
      variables: vars,
      isB: (v) => bs.has(v),
      loraplusLrRatio: this.o.loraplusLrRatio,
    });
  }

  /**
   * One optimizer step over accumulated micro-batches. Each micro-batch's mean loss is weighted by its share of
   * the group's loss tokens, so accumulating 4×2 equals one batch of 8 (HF's num_items_in_batch).
   */
  private optimizerStep(
    group: TrainBatch[],
    vars: tf.Variable[],
    optimizer: AdamW,
    lr: number,
    step: number,
  ) {
    const tokens = group.map((b) => lossTokens(b.labels));
    const totalTokens = Math.max(
      1,
      tokens.reduce((a, b) => a + b, 0),
    );
    let sum: tf.NamedTensorMap | undefined;
    let loss: tf.Scalar = tf.scalar(0);
    group.forEach((batch, i) => {
      this.model.state.dropoutSeed = lowbias32(
        (Math.imul(this.o.seed + 1, 0x9e3779b9) ^ (step * 64 + i)) >>> 0,
      );
      const weight = tokens[i]! / totalTokens;
      const { value, grads } = variableGradsFreeingAsTheyGo(
        () =>
          this.model
            .loss(batch.inputIds, batch.labels)
            .mul(weight) as tf.Scalar,
        vars,
      );
      const next = loss.add(value) as tf.Scalar;
      tf.dispose([loss, value]);
      loss = next;
      if (!sum) sum = grads;
      else {
        const added: tf.NamedTensorMap = {};
        for (const k of Object.keys(grads)) added[k] = sum[k]!.add(grads[k]!);
        tf.dispose([...Object.values(sum), ...Object.values(grads)]);
        sum = added;
      }
    });
    const clipped =
      this.o.maxGradNorm > 0
        ? clipGradNorm(sum!, this.o.maxGradNorm)
        : undefined;
    const gradNorm = clipped
      ? clipped.totalNorm
      : tf.tidy(
          () =>
            tf.norm(
              tf.stack(Object.values(sum!).map((g) => tf.norm(g))),
            ) as tf.Scalar,
        );
    optimizer.step(clipped ? clipped.grads : sum!, lr);
    tf.dispose([
      ...Object.values(sum!),
      ...(clipped ? Object.values(clipped.grads) : []),
    ]);
    return { loss, gradNorm };
  }

  /** Mean next-token loss over every loss token of `batches`, and its perplexity, with dropout off. */
  async evaluate(batches: TrainBatch[], step = 0): Promise<EvalEvent> {
    const wasTraining = this.model.state.training;
    this.model.state.training = false;
    try {
      let nll = 0;
      let tokens = 0;
      for (const b of batches) {
        const n = lossTokens(b.labels);
        if (n === 0) continue;
        const loss = this.model.loss(b.inputIds, b.labels);
        nll += (await loss.data())[0]! * n;
        loss.dispose();
        tokens += n;
      }
      const loss = tokens > 0 ? nll / tokens : NaN;
      return { type: "eval", step, loss, perplexity: Math.exp(loss), tokens };
    } finally {
      this.model.state.training = wasTraining;
    }
  }
}

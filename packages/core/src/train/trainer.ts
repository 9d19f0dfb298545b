/**
 * The training loop: schedule, forward, backward, accumulate, clip, step, log. It sees a model that maps token
 * ids to a loss and exposes trainable variables (a LoraModel), and batches of ids and labels. A step runs on the
 * model's compiled step when it has one (the engine), else on tfjs's autograd; see `steppers.ts`.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, DivergenceError } from "../errors.js";
import { lowbias32 } from "../hash.js";
import { gpuMemory, resetPeakMemory } from "../runtime/memory.js";
import { gpuInfo } from "../runtime/runtime.js";
import {
  API_MEMORY_OPTION_NAMES,
  preflight,
  type MemoryOptionNames,
} from "./preflight.js";
import type { MemoryFootprint } from "../models/footprint.js";
import type { AutotuneOption } from "../engine/autotune.js";
import type { StepMemory } from "../engine/session.js";
import type { TrainableModel } from "./trainable.js";
import type { CheckpointStore } from "../io/checkpoint_store.js";
import { captureCheckpoint, restoreCheckpoint } from "./checkpoint.js";
import {
  dataIdentity,
  trainableIdentity,
  type RunIdentity,
} from "./run_identity.js";
import { BestWeights } from "./best.js";
import {
  ADAMW_DEFAULTS,
  loraPlusGroups,
  type ParamGroup,
} from "./optimizer.js";
import { createSchedule, type LrSchedulerType } from "./schedule.js";
import {
  CompiledStepper,
  TapeStepper,
  type PendingStep,
  type Stepper,
} from "./steppers.js";
import {
  lossTokens,
  microBatches,
  stepMicroBatches,
  type BatchSequence,
  type TrainBatch,
  type TrainPart,
} from "./train_batch.js";

export { lossTokens, type BatchSequence, type TrainBatch, type TrainPart };

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
   * On for the training steps only; the model's own setting is restored after. A feature of the compiled step:
   * on the tape (`executor: "tape"`, or the CPU backend) the Trainer refuses it with a ConfigError. Default false.
   */
  gradientCheckpointing?: boolean;
  /**
   * GPU bytes one step may use. Before the first step the Trainer works out the step's peak for the largest
   * batch (on the compiled step from its buffer plan, exactly; on the tape, estimated from the model's shapes)
   * and refuses to start over budget, saying what to change. Browsers do not report GPU memory, so this is the
   * caller's number. Default: no budget (the device's per-buffer limit is always checked).
   */
  memoryBudget?: number;
  /**
   * How advice names the options it suggests: a CLI passes its flags, an app its controls' labels. Default: the
   * API's own names (`learningRate`, `{ dtype: "float16" }`, ...).
   */
  optionNames?: Partial<TrainerOptionNames>;
  /**
   * Where steps run: "compiled" uses the model's compiled step (webtune's engine: every buffer planned once, a
   * micro-batch replayed as one submit) when it has one, and tfjs's autograd otherwise; "tape" always uses tfjs's
   * autograd, the compiled step's oracle. Default "compiled".
   */
  executor?: "compiled" | "tape";
  /**
   * Time the tiled-matmul variants once on this run's shapes and use the fastest, cached per GPU (a file in Node,
   * OPFS in browsers); "cached" only reads the cache; an object gives `autotune`'s options (cache folder, variants).
   * Compiled step only. Default: on for GPUs, off on software adapters (lavapipe, SwiftShader), which keep the
   * fixed choice.
   */
  autotune?: AutotuneOption;
  /** Report the loss every N steps. Default 1. */
  logEvery?: number;
  /** Evaluate on `val` every N optimizer steps (and at the end). Default: only at the end. */
  evalEvery?: number;
  /** Stop when the validation loss has not improved by `minDelta` for `patience` evaluations; restore the best. */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Save a checkpoint (adapter, optimizer, step) every `every` optimizer steps, named "step-000042". */
  checkpoint?: { store: CheckpointStore; every: number };
  /**
   * What only the caller knows of the run (the storage format, say), stored in every checkpoint beside what the
   * model says of itself (its source, the adapter's config) and what the Trainer knows (the trainable tensors, a
   * digest of the data, the hyperparameters).
   * A resume refuses a checkpoint whose run differs in any field, naming it.
   */
  run?: RunIdentity;
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
  /** Over every validation token (of every task, when `val` names several). */
  loss: number;
  perplexity: number;
  tokens: number;
  /** Each task's own validation loss, when `val` names several sets. */
  tasks?: Record<string, { loss: number; tokens: number }>;
}

/** Validation batches: one set, or several by task name (scored alone, and together for early stopping). */
export type ValidationBatches = TrainBatch[] | Record<string, TrainBatch[]>;

export type TrainEvent = StepEvent | EvalEvent;

export interface TrainResult {
  steps: number;
  stoppedEarly: boolean;
  aborted: boolean;
  bestEval?: EvalEvent;
  history: TrainEvent[];
}

/** What advice calls the options it suggests (see TrainerOptions.optionNames). */
export interface TrainerOptionNames extends MemoryOptionNames {
  /** Followed by a value: "learningRate 1e-4", "--lr 1e-4". */
  learningRate: string;
  /** Followed by a value. */
  warmupSteps: string;
  /** Followed by a value. */
  maxGradNorm: string;
}

const API_OPTION_NAMES: TrainerOptionNames = {
  ...API_MEMORY_OPTION_NAMES,
  learningRate: "learningRate",
  warmupSteps: "warmupSteps",
  maxGradNorm: "maxGradNorm",
};

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
      | "optionNames"
      | "executor"
      | "run"
      | "autotune"
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

  /**
   * The preflight: the largest batch's step against the binding limit and the memory budget. On the compiled step
   * the activations and the training state are its buffer plan's (exact); on the tape, the model's estimate.
   */
  private checkMemory(shapes: BatchShapes, stepper: Stepper): void {
    const plan = this.model.memoryPlan;
    if (!plan) return;
    const { rows: batch, tokens, longest } = shapes;
    const gradientCheckpointing = this.model.gradientCheckpointing ?? false;
    const { footprint: estimate, baseFormat } = plan.call(this.model, {
      batch,
      tokens,
      gradientCheckpointing,
    });
    const footprint =
      stepper instanceof CompiledStepper
        ? plannedFootprint(estimate.baseWeights, stepper.memory(longest))
        : estimate;
    preflight({
      footprint,
      planned: stepper instanceof CompiledStepper,
      batch,
      tokens,
      bindingLimit:
        tf.getBackend() === "webgpu"
          ? (gpuInfo().limits["maxStorageBufferBindingSize"] ?? Infinity)
          : Infinity,
      budget: this.o.memoryBudget,
      using: { gradientCheckpointing, baseFormat },
      names: this.names,
    });
  }

  pause(): void {
    this.paused ??= new Promise((resolve) => (this.release = resolve));
  }

  resume(): void {
    this.release?.();
    this.paused = this.release = undefined;
  }

  /**
   * Ends training after the step in flight; `train` resolves with `aborted: true`. On the compiled step the next
   * step is already enqueued when a step's event fires (its readback overlaps the next step's work), so an abort
   * from step N's event ends the run after step N + 1, which is reported too.
   */
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
    data: { train: BatchSequence; val?: ValidationBatches },
    /** A checkpoint's files (from `store.load(name)`): the run continues after its step, as if never stopped. */
    resume?: Record<string, Uint8Array>,
  ): Promise<TrainResult> {
    const o = this.o;
    const shapes = batchShapes(data);
    if (o.gradAccum > data.train.length)
      throw new ConfigError(
        `Trainer: gradAccum ${o.gradAccum} is more micro-batches than the ${data.train.length} training batches; ` +
          `one optimizer step would read batches twice. Use a gradAccum of at most ${data.train.length}.`,
      );
    if (
      o.maxSteps !== undefined &&
      !(Number.isSafeInteger(o.maxSteps) && o.maxSteps >= 1)
    )
      throw new ConfigError(
        `Trainer: maxSteps must be a positive integer, got ${o.maxSteps}.`,
      );
    const total = o.maxSteps ?? Math.ceil(data.train.length / o.gradAccum);
    const run: RunIdentity | undefined =
      resume || o.checkpoint ? this.runIdentity(data.train, total) : undefined;
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
    const history: TrainEvent[] = [];
    const emit = (e: TrainEvent) => {
      history.push(e);
      o.onEvent?.(e);
    };
    const best = new BestWeights(vars, o.earlyStopping?.minDelta ?? 0);
    let stale = 0;
    let stoppedEarly = false;
    let first = 0;
    const checkpointing = this.model.gradientCheckpointing;
    if (o.gradientCheckpointing) this.model.gradientCheckpointing = true;
    this.model.state.training = true;
    let stepper: Stepper | undefined;
    // Enqueued steps whose loss is still on its way back: at most two, so that reading one overlaps the next.
    const unread: { step: number; pending: PendingStep }[] = [];
    try {
      stepper = this.stepper(this.paramGroups(vars), shapes.planRows);
      // Tuned first: a split-K choice adds scratch to the plan the memory check reads.
      if (stepper instanceof CompiledStepper)
        await stepper.autotune(shapes.longest, o.autotune);
      this.checkMemory(shapes, stepper);
      if (resume) {
        const state = await restoreCheckpoint(
          this.model,
          stepper.optimizer,
          resume,
          "the resume checkpoint",
          run,
        );
        stepper.reload();
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
      let lastCheckpoint: string | undefined;
      // Every step's result is read (the compiled step reads its loss back anyway), so a non-finite one stops the
      // run at once; only every logEvery-th is reported.
      const report = async () => {
        const entry = unread.shift();
        if (!entry) return;
        const { step, pending } = entry;
        try {
          const { loss, gradNorm } = await pending.result();
          if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
            stepper!.sync(); // the weights of the last finite update
            throw this.divergence(step + 1, loss, gradNorm, lastCheckpoint);
          }
          if ((step + 1) % o.logEvery !== 0 && step + 1 !== total) return;
          const elapsedMs = performance.now() - started;
          const memory = gpuMemory();
          emit({
            type: "step",
            step: step + 1,
            epoch: o.batchesPerEpoch
              ? ((step + 1) * o.gradAccum) / o.batchesPerEpoch
              : 0,
            loss,
            lr: schedule.lrAt(step),
            gradNorm,
            tokensPerSec: (tokensSeen / elapsedMs) * 1000,
            elapsedMs,
            etaMs: (elapsedMs / (step + 1 - first)) * (total - step - 1),
            gpuBytes: memory.total,
            peakGpuBytes: memory.peak,
          });
          resetPeakMemory();
        } finally {
          pending.dispose();
        }
      };
      const drain = async () => {
        while (unread.length > 0) await report();
      };
      let step = first;
      for (; step < total && !this.aborted; step++) {
        if (this.paused) {
          await drain();
          stepper.sync(); // a paused run shows its current adapter
          await this.paused;
        }
        if (this.aborted) break;
        const group = Array.from({ length: o.gradAccum }, (_, i) =>
          data.train.at((step * o.gradAccum + i) % data.train.length)!,
        );
        const { batches: micro, weights } = stepMicroBatches(
          group,
          this.model.labelsShifted ?? true,
        );
        const pending = await stepper.step(micro, {
          lr: schedule.lrAt(step),
          weights,
          dropoutSeeds: micro.map((_, i) => dropoutSeed(o.seed, step, i)),
        });
        unread.push({ step, pending });
        if (unread.length > 1) await report(); // step N is read while step N + 1 runs
        tokensSeen += micro.reduce(
          (n, b) => n + b.inputIds.length * (b.inputIds[0]?.length ?? 0),
          0,
        );
        const checkpointNow =
          o.checkpoint && (step + 1) % o.checkpoint.every === 0;
        const evalNow =
          data.val &&
          o.evalEvery !== undefined &&
          (step + 1) % o.evalEvery === 0;
        if (!checkpointNow && !evalNow) continue;
        await drain();
        stepper.sync();
        if (checkpointNow) {
          const state = {
            step: step + 1,
            bestLoss: best.event?.loss ?? null,
            stale,
            run,
          };
          const files = await captureCheckpoint(
            this.model,
            stepper.optimizer,
            state,
          );
          lastCheckpoint = `step-${String(step + 1).padStart(6, "0")}`;
          await o.checkpoint!.store.save(lastCheckpoint, files);
        }
        if (evalNow) {
          const e = await this.evaluateWith(stepper, data.val!, step + 1);
          emit(e);
          if (best.offer(e)) stale = 0;
          else if (o.earlyStopping && ++stale >= o.earlyStopping.patience) {
            stoppedEarly = true;
            step++;
            break;
          }
        }
      }
      await drain();
      // Before the last evaluation: early stopping's snapshot of the best weights reads the variables.
      stepper.sync();
      if (
        data.val &&
        !stoppedEarly &&
        !(o.evalEvery !== undefined && step % o.evalEvery === 0)
      ) {
        const e = await this.evaluateWith(stepper, data.val, step);
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
      // A step still in flight when the run stops on an error (the one after a diverged step, say) finishes before
      // its buffers go, and its result is settled here rather than left to reject unhandled.
      await Promise.allSettled(unread.map(({ pending }) => pending.result()));
      for (const { pending } of unread.splice(0)) pending.dispose();
      this.model.state.training = false;
      if (o.gradientCheckpointing)
        this.model.gradientCheckpointing = checkpointing;
      stepper?.dispose();
      best.dispose();
    }
  }

  /**
   * The compiled step when the model has one (and `executor` allows it), else tfjs's autograd. The compiled
   * step is planned for the largest batch of `data`; batches are padded to its buckets.
   */
  private stepper(groups: ParamGroup[], batchSize: number): Stepper {
    const o = this.o;
    const options = {
      groups,
      weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm,
    };
    const session =
      o.executor === "tape"
        ? undefined
        : this.model.compileTraining?.({
            groups: groups.map((g) => ({
              variables: g.variables,
              lrScale: g.lrScale ?? 1,
              weightDecay: g.weightDecay ?? o.weightDecay,
            })),
            batchSize,
            betas: ADAMW_DEFAULTS.betas,
            eps: ADAMW_DEFAULTS.eps,
            maxGradNorm: o.maxGradNorm,
          });
    if (session) return new CompiledStepper(session);
    if (this.model.gradientCheckpointing)
      throw new ConfigError(
        `Trainer: gradientCheckpointing runs in the compiled step, and this run is on tfjs's tape (${
          o.executor === "tape"
            ? 'executor: "tape"'
            : `no compiled step on the ${tf.getBackend()} backend`
        }); turn gradientCheckpointing off, or train on WebGPU with executor: "compiled".`,
      );
    return new TapeStepper(this.model, options);
  }

  /** The run a checkpoint belongs to: the caller's fields, then the Trainer's own. */
  private runIdentity(train: BatchSequence, steps: number): RunIdentity {
    const o = this.o;
    return {
      ...this.model.runIdentity?.(),
      ...o.run,
      trainable: trainableIdentity(this.model.namedTrainableVariables()),
      data: dataIdentity(train),
      steps,
      learningRate: o.learningRate,
      schedule: o.schedule,
      warmupSteps: o.warmupSteps,
      gradAccum: o.gradAccum,
      maxGradNorm: o.maxGradNorm,
      weightDecay: o.weightDecay,
      loraplusLrRatio: o.loraplusLrRatio ?? null,
      seed: o.seed,
    };
  }

  /** The error of a step whose loss or gradient norm is not finite: what happened, what was kept, what to try. */
  private divergence(
    step: number,
    loss: number,
    gradNorm: number,
    checkpoint: string | undefined,
  ): DivergenceError {
    const o = this.o;
    const suggested = Number((o.learningRate / 10).toPrecision(2));
    const n = this.names;
    const hints = [
      `${n.learningRate} ${suggested} (a tenth of ${o.learningRate})`,
      ...(o.maxGradNorm === 0
        ? [`gradient clipping back on (${n.maxGradNorm} 1)`]
        : []),
      ...(o.warmupSteps === 0
        ? [`a warmup (${n.warmupSteps} about 5% of the steps)`]
        : []),
    ];
    const show = (v: number) => (Number.isFinite(v) ? v.toPrecision(4) : v);
    return new DivergenceError(
      `Training diverged at step ${step}: the loss is ${show(loss)} and the gradient norm ${show(gradNorm)}. The ` +
        `learning rate is probably too high for this model and data: run again with ${hints.join(", and ")}. No ` +
        `update with non-finite values was applied, so the weights hold their last finite values` +
        (checkpoint
          ? `, and the last checkpoint, ${checkpoint} in ${o.checkpoint!.store.description}, is kept.`
          : "."),
      {
        step,
        loss,
        gradNorm,
        learningRate: o.learningRate,
        suggestedLearningRate: suggested,
      },
    );
  }

  private get names(): TrainerOptionNames {
    return { ...API_OPTION_NAMES, ...this.o.optionNames };
  }

  private paramGroups(vars: tf.Variable[]): ParamGroup[] {
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

  /** Mean next-token loss over every loss token of `batches`, and its perplexity, with dropout off. */
  async evaluate(batches: TrainBatch[], step = 0): Promise<EvalEvent> {
    const tape = new TapeStepper(this.model, {
      groups: [],
      weightDecay: 0,
      maxGradNorm: 0,
    });
    try {
      return await this.evaluateWith(tape, batches, step);
    } finally {
      tape.dispose();
    }
  }

  private async evaluateWith(
    stepper: Stepper,
    batches: ValidationBatches,
    step: number,
  ): Promise<EvalEvent> {
    const wasTraining = this.model.state.training;
    this.model.state.training = false;
    const mean = (nll: number, tokens: number) =>
      tokens > 0 ? nll / tokens : NaN;
    try {
      if (Array.isArray(batches)) {
        const { nll, tokens } = await stepper.evaluate(batches);
        const loss = mean(nll, tokens);
        return { type: "eval", step, loss, perplexity: Math.exp(loss), tokens };
      }
      const tasks: Record<string, { loss: number; tokens: number }> = {};
      let nll = 0;
      let tokens = 0;
      for (const [name, set] of Object.entries(batches)) {
        const r = await stepper.evaluate(set);
        tasks[name] = { loss: mean(r.nll, r.tokens), tokens: r.tokens };
        nll += r.nll;
        tokens += r.tokens;
      }
      const loss = mean(nll, tokens);
      return {
        type: "eval",
        step,
        loss,
        perplexity: Math.exp(loss),
        tokens,
        tasks,
      };
    } finally {
      this.model.state.training = wasTraining;
    }
  }
}

/**
 * The largest batch of a run: its most training rows, its longest row and a training batch holding that row (what
 * a step's memory is checked for), and the most rows of any batch, validation included (what a step is planned for).
 */
interface BatchShapes {
  rows: number;
  planRows: number;
  tokens: number;
  longest: TrainBatch;
}

/**
 * Scans the training batches (one epoch of a lazy sequence: every example is in it) and the validation batches
 * for the largest shapes, holding no batch but the longest.
 */
function batchShapes(data: {
  train: BatchSequence;
  val?: ValidationBatches;
}): BatchShapes {
  const scan = Math.min(
    data.train.epochLength ?? data.train.length,
    data.train.length,
  );
  if (scan === 0)
    throw new ConfigError("Trainer: there are no training batches.");
  let rows = 0;
  let tokens = 0;
  let longest: TrainBatch | undefined;
  for (let i = 0; i < scan; i++)
    for (const b of microBatches(data.train.at(i)!)) {
      rows = Math.max(rows, b.inputIds.length);
      for (const r of b.inputIds)
        if (r.length > tokens || !longest) {
          tokens = Math.max(tokens, r.length);
          longest = b;
        }
    }
  const planRows = Math.max(
    rows,
    ...valBatches(data.val).map((b) => b.inputIds.length),
  );
  return { rows, planRows, tokens, longest: longest! };
}

/** Every validation batch, of every set. */
function valBatches(val: ValidationBatches | undefined): TrainBatch[] {
  if (!val) return [];
  return Array.isArray(val) ? val : Object.values(val).flat();
}

/** A step's bytes from the compiled step's plan: the state holds its own copy of the trained values. */
function plannedFootprint(baseWeights: number, m: StepMemory): MemoryFootprint {
  return {
    baseWeights,
    trained: m.state / 4,
    gradientsAndOptimizer: (3 * m.state) / 4,
    activations: m.activations,
    peak: baseWeights + m.state + m.activations,
    largestTensor: m.largestTensor,
  };
}

/** The dropout seed of micro-batch i of an optimizer step: new masks every micro-batch, reproducible from `seed`. */
function dropoutSeed(seed: number, step: number, i: number): number {
  return lowbias32((Math.imul(seed + 1, 0x9e3779b9) ^ (step * 64 + i)) >>> 0);
}

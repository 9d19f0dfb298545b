/**
 * How the Trainer takes an optimizer step: on the compiled step (the engine: planned once, replayed as one
 * submit per micro-batch, results read back without waiting), or on tfjs's autograd (the tape: the engine's
 * oracle, and the path for what has no compiled step). Both give the same losses and gradients; the Trainer's
 * loop reads the same either way.
 */
import * as tf from "@tensorflow/tfjs";
import type { AutotuneOption } from "../engine/autotune.js";
import type { StepMemory, TrainingSession } from "../engine/session.js";
import type { AdamWMoments, AdamWState } from "./optimizer.js";
import { AdamW, type ParamGroup } from "./optimizer.js";
import { tapeStep } from "./tape_step.js";
import type { TrainableModel } from "./trainable.js";
import { lossTokens, type TrainBatch } from "./train_batch.js";

export interface StepResult {
  loss: number;
  gradNorm: number;
}

/** One enqueued optimizer step: its loss and gradient norm, once the GPU has them. */
export interface PendingStep {
  result(): Promise<StepResult>;
  dispose(): void;
}

/** What checkpoints save and restore of an optimizer. */
export interface OptimizerState {
  exportState(): Promise<AdamWState>;
  importState(state: AdamWState): void;
}

export interface Stepper {
  readonly optimizer: OptimizerState;
  /**
   * Enqueues one optimizer step over micro-batches (weights: each one's share of the step's loss tokens). A step
   * whose gradient norm is not finite changes no weight; its result reports the norm.
   */
  step(
    group: TrainBatch[],
    scalars: { lr: number; weights: number[]; dropoutSeeds: number[] },
  ): Promise<PendingStep>;
  /** Mean next-token loss over every loss token of `batches`, dropout off. */
  evaluate(batches: TrainBatch[]): Promise<{ nll: number; tokens: number }>;
  /** Makes the model's variables hold the trained values, before anything outside the stepper reads them. */
  sync(): void;
  /** Takes the variables' values back in, after something outside changed them (a checkpoint, early stopping). */
  reload(): void;
  dispose(): void;
}

export interface StepperOptions {
  groups: ParamGroup[];
  weightDecay: number;
  maxGradNorm: number;
}

/** tfjs autograd, clipping and the fused per-tensor AdamW. */
export class TapeStepper implements Stepper {
  readonly optimizer: AdamW;
  private readonly vars: tf.Variable[];

  constructor(
    private readonly model: TrainableModel,
    private readonly options: StepperOptions,
  ) {
    this.vars = options.groups.flatMap((g) => g.variables);
    this.optimizer = new AdamW(options.groups, {
      weightDecay: options.weightDecay,
    });
  }

  async step(
    group: TrainBatch[],
    scalars: { lr: number; weights: number[]; dropoutSeeds: number[] },
  ): Promise<PendingStep> {
    const { loss, gradNorm } = await tapeStep(this.model, group, {
      vars: this.vars,
      optimizer: this.optimizer,
      maxGradNorm: this.options.maxGradNorm,
      ...scalars,
    });
    return {
      // A CPU-GPU sync point.
      result: async () => {
        const [l, g] = await Promise.all([loss.data(), gradNorm.data()]);
        return { loss: l[0]!, gradNorm: g[0]! };
      },
      dispose: () => tf.dispose([loss, gradNorm]),
    };
  }

  async evaluate(
    batches: TrainBatch[],
  ): Promise<{ nll: number; tokens: number }> {
    let nll = 0;
    let tokens = 0;
    for (const b of batches) {
      const n = lossTokens(b.labels, this.model.labelsShifted ?? true);
      if (n === 0) continue;
      const loss = this.model.loss(b.inputIds, b.labels);
      nll += (await loss.data())[0]! * n;
      loss.dispose();
      tokens += n;
    }
    return { nll, tokens };
  }

  sync(): void {}

  reload(): void {}

  dispose(): void {
    this.optimizer.dispose();
  }
}

/** The engine's training session: AdamW's moments live there, and the variables are synced at the edges. */
export class CompiledStepper implements Stepper {
  readonly optimizer: OptimizerState;

  /** The planned GPU bytes of a step of this batch's shape, beyond the model's weights (nothing allocated). */
  memory(batch: TrainBatch): StepMemory {
    return this.session.memoryPlan(batch);
  }

  /** Picks the fastest matmul variants for steps of this batch's shape (TrainerOptions.autotune). */
  autotune(batch: TrainBatch, option?: AutotuneOption): Promise<void> {
    return this.session.autotune(batch, option);
  }

  /** Next-token labels, or a classification head's (see TrainableModel.labelsShifted). */
  private readonly shifted: boolean;

  constructor(private readonly session: TrainingSession) {
    this.shifted = session.options.labels?.shift ?? true;
    const entries = session.state.entries;
    this.optimizer = {
      exportState: async (): Promise<AdamWState> => {
        const moments = await session.state.exportMoments();
        return {
          step: session.steps,
          moments: moments.map((m, i): AdamWMoments => ({
            name: entries[i]!.variable.name,
            shape: [...entries[i]!.variable.shape],
            ...m,
          })),
        };
      },
      importState: (state: AdamWState) => {
        session.state.importMoments(state.moments);
        session.steps = state.step;
      },
    };
  }

  step(
    group: TrainBatch[],
    scalars: { lr: number; weights: number[]; dropoutSeeds: number[] },
  ): Promise<PendingStep> {
    // A micro-batch's weight spread over its own loss tokens: weights of token shares give every token 1 / all.
    const result = this.session.step(group, {
      lr: scalars.lr,
      lossScales: group.map(
        (b, i) =>
          scalars.weights[i]! / Math.max(1, lossTokens(b.labels, this.shifted)),
      ),
      dropoutSeeds: scalars.dropoutSeeds,
    });
    return Promise.resolve({ result: () => result, dispose: () => undefined });
  }

  async evaluate(
    batches: TrainBatch[],
  ): Promise<{ nll: number; tokens: number }> {
    const scored = batches.filter(
      (b) => lossTokens(b.labels, this.shifted) > 0,
    );
    const sums = await Promise.all(scored.map((b) => this.session.lossSum(b)));
    return {
      nll: sums.reduce((a, b) => a + b, 0),
      tokens: scored.reduce(
        (n, b) => n + lossTokens(b.labels, this.shifted),
        0,
      ),
    };
  }

  sync(): void {
    this.session.state.push();
  }

  reload(): void {
    this.session.state.pull();
  }

  dispose(): void {
    this.session.dispose();
  }
}

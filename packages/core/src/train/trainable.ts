/**
 * What the Trainer trains: a model that maps token ids to a loss, with named trainable variables. A LoraModel
 * is one (the adapter trains); FullFineTune is the other (every weight trains).
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import {
  estimateTrainingMemory,
  type MemoryPlan,
} from "../models/footprint.js";
import type { PretrainedModel } from "../models/pretrained.js";
import { compileTrainingSession } from "../models/step.js";
import type {
  CompileTrainingOptions,
  TrainingSession,
} from "../engine/session.js";

export interface NamedVariable {
  /** Stable across runs and processes: checkpoints are keyed by it. */
  key: string;
  /** "lora_A", "lora_B", "lora_magnitude_vector", or "weight" in full fine-tuning. */
  part: string;
  variable: tf.Variable;
}

export interface TrainableModel {
  /** Shared with the layers: dropout applies while training, with masks drawn from dropoutSeed. */
  readonly state: { training: boolean; dropoutSeed: number };
  /** The model's activation checkpointing switch (`CausalLM.gradientCheckpointing`); absent where it has none. */
  gradientCheckpointing?: boolean;
  loss(ids: number[][], labels?: number[][]): tf.Scalar;
  /**
   * Whether labels are next tokens (shifted: label t is predicted at t − 1; the default) or a classification
   * head's targets (false: each position's own), which decides which labels count as loss tokens.
   */
  readonly labelsShifted?: boolean;
  namedTrainableVariables(): NamedVariable[];
  /** What is being trained (the base model, the adapter's config), stored in checkpoints to recognise the run. */
  runIdentity?(): Record<string, string | number | boolean | null>;
  /** Expected GPU memory of one step at [batch, tokens], checked before the first step when present. */
  memoryPlan?(shape: StepShapeOf): MemoryPlan;
  /**
   * A compiled training session over these tensors (the engine), when the model has a compiled step on this
   * device; undefined otherwise, and the Trainer then uses tfjs's autograd.
   */
  compileTraining?(
    options: CompileTrainingOptions,
  ): TrainingSession | undefined;
}

/** The step shape a memory plan is asked for. */
export interface StepShapeOf {
  batch: number;
  tokens: number;
  gradientCheckpointing: boolean;
}

/**
 * Full fine-tuning: every weight of a model loaded with `loadModel(src, { trainable: true })` trains. For the
 * small models where that is sensible; the optimizer keeps two moments per weight.
 */
export class FullFineTune implements TrainableModel {
  readonly state = { training: false, dropoutSeed: 0 };

  constructor(readonly model: PretrainedModel) {
    const frozen = model.lm
      .parameters()
      .flatMap((p) => p.get())
      .filter((t) => !(t instanceof tf.Variable));
    if (frozen.length > 0) {
      throw new ConfigError(
        "FullFineTune: load the model with loadModel(source, { trainable: true }) so its weights can train.",
      );
    }
  }

  runIdentity(): Record<string, string> {
    return { model: this.model.source, mode: "full fine-tuning" };
  }

  get gradientCheckpointing(): boolean {
    return this.model.lm.gradientCheckpointing;
  }

  set gradientCheckpointing(on: boolean) {
    this.model.lm.gradientCheckpointing = on;
  }

  loss(ids: number[][], labels?: number[][]): tf.Scalar {
    return this.model.loss(ids, labels);
  }

  memoryPlan(shape: StepShapeOf): MemoryPlan {
    const lm = this.model.lm;
    return {
      footprint: estimateTrainingMemory(lm, {
        ...shape,
        trainedParameters: lm.parameterCount(),
        fullFineTune: true,
      }),
      baseFormat: "float32",
    };
  }

  /** The compiled step over every weight: each gets its gradient in the training state. */
  compileTraining(
    options: CompileTrainingOptions,
  ): TrainingSession | undefined {
    return compileTrainingSession(this.model.lm, {
      ...options,
      checkpointing: this.gradientCheckpointing,
    });
  }

  namedTrainableVariables(): NamedVariable[] {
    return this.model.lm.parameters().flatMap((p) =>
      p.get().map((t, i, all) => ({
        key: all.length > 1 ? `${p.name}#${i}` : p.name,
        part: "weight",
        variable: t as tf.Variable,
      })),
    );
  }
}

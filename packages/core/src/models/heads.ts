/**
 * Task heads, as Hugging Face's `*ForSequenceClassification` and `*ForTokenClassification` put them on a decoder:
 * one Linear from the final hidden states to the labels, in place of the LM head.
 *
 * - Sequence classification: logits for every token, then the logits of the rightmost token that is not
 *   `pad_token_id` (the last token when there is none), and cross-entropy over the labels of those pooled logits.
 *   The head is `score`, without a bias, in every architecture here.
 * - Token classification: logits for every token and cross-entropy over the tokens whose label is not -100. The
 *   head is GPT-2's `classifier` or the others' `score`, with a bias. (HF's dropout before it is not applied: the
 *   base model here runs without dropout.)
 *
 * The loss of either is a token loss with the head's labels as targets and no shift, so a sequence label becomes a
 * per-token target at the pooled position (`sequenceTargets`): the Trainer, the compiled step and evaluation read
 * it like any other batch.
 *
 * Letters: B batch, T tokens, C hidden size, L labels.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, ShapeError } from "../errors.js";
import { IGNORE_INDEX } from "./cross_entropy.js";
import { headHasBias, headModuleName, type HeadTask } from "./head_names.js";

export {
  HEAD_MODULES_TO_SAVE,
  headHasBias,
  headModuleName,
  PEFT_TASK_TYPE,
  type HeadTask,
} from "./head_names.js";

/** Which position HF pools for each row: the rightmost token that is not `padId`, or the last when padId is absent. */
export function pooledPositions(
  ids: number[][],
  padId: number | undefined,
): number[] {
  return ids.map((row) => {
    if (padId === undefined) return row.length - 1;
    // HF's (token_indices * non_pad_mask).argmax(-1): a row of padding alone pools position 0.
    for (let t = row.length - 1; t >= 0; t--) if (row[t] !== padId) return t;
    return 0;
  });
}

/**
 * A sequence label as per-token targets: `label` at the pooled position of each row, -100 elsewhere. The loss of
 * these targets is HF's sequence-classification loss.
 */
export function sequenceTargets(
  ids: number[][],
  labels: number[],
  padId: number | undefined,
): number[][] {
  if (labels.length !== ids.length)
    throw new ShapeError(
      `sequence classification: ${labels.length} labels for ${ids.length} rows.`,
    );
  const at = pooledPositions(ids, padId);
  return ids.map((row, b) =>
    row.map((_, t) => (t === at[b] ? labels[b]! : IGNORE_INDEX)),
  );
}

export interface HeadInit {
  task: HeadTask;
  /** Label names in id order: id2label. */
  labels: string[];
  /** HF's config.pad_token_id, which sequence pooling skips; undefined pools the last token. */
  padTokenId: number | undefined;
  /** Seed of the weight's random values. Default 0. */
  seed?: number;
}

/**
 * A classification head over a decoder's final hidden states: weight [L, C] (`nn.Linear`'s layout) and, for token
 * classification, bias [L]. Both train fully (PEFT's modules_to_save).
 *
 * @example
 * ```ts
 * const head = ClassificationHead.create("gpt2", 768, { task: "seq-cls", labels: ["neg", "pos"], padTokenId: 50256 });
 * model.lm.taskHead = head; // model.logits and model.loss now use the head
 * ```
 */
export class ClassificationHead {
  private constructor(
    readonly task: HeadTask,
    /** The HF module name: "score" or "classifier". */
    readonly name: string,
    readonly labels: string[],
    readonly padTokenId: number | undefined,
    readonly weight: tf.Variable<tf.Rank.R2>,
    readonly bias: tf.Variable | undefined,
  ) {}

  /**
   * A new head, initialised as HF's `_init_weights` does a Linear: normal(0, 0.02) weights (initializer_range)
   * and a zero bias.
   */
  static create(
    modelType: string,
    hiddenSize: number,
    init: HeadInit,
  ): ClassificationHead {
    checkLabels(init.labels);
    const L = init.labels.length;
    return ClassificationHead.of(
      modelType,
      init,
      () =>
        tf.randomNormal([L, hiddenSize], 0, 0.02, "float32", init.seed ?? 0),
      headHasBias(init.task) ? () => tf.zeros([L]) : undefined,
    );
  }

  /** A head from saved values (a PEFT adapter's modules_to_save), shapes checked against the model. */
  static fromValues(
    modelType: string,
    hiddenSize: number,
    init: HeadInit,
    values: {
      weight: Float32Array;
      weightShape: number[];
      bias?: Float32Array;
    },
    source: string,
  ): ClassificationHead {
    checkLabels(init.labels);
    const name = headModuleName(modelType, init.task);
    const L = init.labels.length;
    const [rows, cols] = values.weightShape;
    if (values.weightShape.length !== 2 || rows !== L || cols !== hiddenSize)
      throw new ShapeError(
        `${source}: ${name}.weight is [${values.weightShape.join(", ")}], but the model has hidden size ${hiddenSize} ` +
          `and the config names ${L} labels, so it must be [${L}, ${hiddenSize}].`,
      );
    const wantsBias = headHasBias(init.task);
    if (wantsBias !== (values.bias !== undefined))
      throw new ShapeError(
        `${source}: a ${init.task} head ${wantsBias ? "needs" : "has no"} ${name}.bias, ` +
          `but the file ${values.bias ? "has one" : "has none"}.`,
      );
    if (values.bias && values.bias.length !== L)
      throw new ShapeError(
        `${source}: ${name}.bias has ${values.bias.length} values for ${L} labels.`,
      );
    const bias = values.bias;
    return ClassificationHead.of(
      modelType,
      init,
      () => tf.tensor2d(values.weight, [L, hiddenSize]),
      bias ? () => tf.tensor1d(bias) : undefined,
    );
  }

  /**
   * The head's variables from their first values, each made in a tidy: the tensors a variable is made from are
   * released (a variable outlives its tidy). Unnamed: tfjs names are global, and two adapters may each have a head.
   */
  private static of(
    modelType: string,
    init: HeadInit,
    weight: () => tf.Tensor2D,
    bias: (() => tf.Tensor1D) | undefined,
  ): ClassificationHead {
    return new ClassificationHead(
      init.task,
      headModuleName(modelType, init.task),
      [...init.labels],
      init.padTokenId,
      tf.tidy(() => tf.variable(weight(), true)),
      bias && tf.tidy(() => tf.variable(bias(), true)),
    );
  }

  get numLabels(): number {
    return this.labels.length;
  }

  /** HF's label2id. */
  get label2id(): Record<string, number> {
    return Object.fromEntries(this.labels.map((l, i) => [l, i]));
  }

  /** HF's id2label, with string keys as config.json writes them. */
  get id2label(): Record<string, string> {
    return Object.fromEntries(this.labels.map((l, i) => [String(i), l]));
  }

  /** Trained tensors with their HF names: `<name>.weight` (and `<name>.bias`). */
  namedVariables(): { key: string; variable: tf.Variable }[] {
    return [
      { key: `${this.name}.weight`, variable: this.weight },
      ...(this.bias ? [{ key: `${this.name}.bias`, variable: this.bias }] : []),
    ];
  }

  /** h [N, C] -> logits [N, L]. */
  project(h: tf.Tensor2D): tf.Tensor2D {
    const z = tf.matMul(h, this.weight, false, true) as tf.Tensor2D;
    return this.bias ? z.add(this.bias) : z;
  }

  /**
   * Mean cross-entropy over the rows whose target is not -100: h [N, C], targets [N] label ids. Differentiable
   * with respect to h, the weight and the bias.
   */
  loss(h: tf.Tensor2D, targets: number[]): tf.Scalar {
    const kept: number[] = [];
    const labels: number[] = [];
    targets.forEach((label, row) => {
      if (label === IGNORE_INDEX) return;
      if (!Number.isInteger(label) || label < 0 || label >= this.numLabels)
        throw new ShapeError(
          `${this.task} loss: label ${label} at row ${row} is neither ${IGNORE_INDEX} (ignored) nor a label id in ` +
            `[0, ${this.numLabels}) (${this.labels.join(", ")}).`,
        );
      kept.push(row);
      labels.push(label);
    });
    if (kept.length === 0)
      throw new ShapeError(
        `${this.task} loss: every target is ${IGNORE_INDEX}; nothing to score.`,
      );
    return tf.tidy(() => {
      const logits = this.project(tf.gather(h, kept) as tf.Tensor2D);
      const logp = tf.logSoftmax(logits);
      const picked = tf.sum(
        logp.mul(tf.oneHot(labels, this.numLabels).cast("float32")),
        1,
      );
      return tf.neg(tf.mean(picked)) as tf.Scalar;
    });
  }

  /** Frees the head's tensors; a second call does nothing (a model and its LoraModel may both let go of it). */
  dispose(): void {
    for (const v of [this.weight, this.bias])
      if (v && !v.isDisposed) v.dispose();
  }
}

function checkLabels(labels: string[]): void {
  if (labels.length < 2)
    throw new ConfigError(
      `a classification head needs at least 2 labels, got ${labels.length} (${labels.join(", ") || "none"}).`,
    );
  const seen = new Set<string>();
  for (const l of labels) {
    if (seen.has(l))
      throw new ConfigError(`classification head: label "${l}" is repeated.`);
    seen.add(l);
  }
}

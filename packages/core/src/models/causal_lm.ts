/**
 * What every architecture is to the rest of webtune: token ids in, logits (or a loss) out, a KV cache for
 * generation, and its projections as named Linear layers for adapters.
 *
 * Letters: B batch, T tokens, C hidden size, V vocabulary, N = B·T.
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../errors.js";
import { chunkedCrossEntropy, IGNORE_INDEX } from "./cross_entropy.js";
import {
  isPacked,
  matrixBytes,
  type PackedMatrix,
} from "../kernels/quant/packed.js";
import type { Embedding } from "./embedding.js";
import type { ClassificationHead } from "./heads.js";
import type { Linear } from "./layers.js";
import type { ParameterEntry } from "./weights.js";
import type { StepArchitecture } from "./step.js";

/** Sizes every architecture shares, from its config.json. */
export interface ModelDims {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  bosTokenId?: number;
  eosTokenIds: number[];
}

/** Keys and values of every layer so far: [B, kv heads, S, head dim] each. */
export class KVCache {
  readonly layers: ({ k: tf.Tensor4D; v: tf.Tensor4D } | undefined)[];

  constructor(numLayers: number) {
    this.layers = new Array(numLayers).fill(undefined);
  }

  /** Tokens already in the cache. */
  get length(): number {
    return this.layers[0]?.k.shape[2] ?? 0;
  }

  /** Appends this step's k, v [B, G, T, D] to layer i and returns the whole history; the cache owns it. */
  append(
    i: number,
    k: tf.Tensor4D,
    v: tf.Tensor4D,
  ): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const old = this.layers[i];
    const next = old
      ? {
          k: tf.keep(tf.concat([old.k, k], 2)),
          v: tf.keep(tf.concat([old.v, v], 2)),
        }
      : { k: tf.keep(k.clone()), v: tf.keep(v.clone()) };
    if (old) tf.dispose([old.k, old.v]);
    this.layers[i] = next;
    return next;
  }

  dispose(): void {
    for (const l of this.layers) if (l) tf.dispose([l.k, l.v]);
    this.layers.fill(undefined);
  }
}

export { IGNORE_INDEX };

export abstract class CausalLM {
  abstract readonly dims: ModelDims;
  /** The LM head's vocabulary chunks: the tied embedding or lm_head. */
  protected abstract readonly head: Embedding;
  /** Gemma-style final logit softcapping: cap·tanh(logit / cap). */
  protected readonly logitSoftcap: number | undefined = undefined;
  /**
   * Activation checkpointing (HF's gradient checkpointing) in the compiled training step (models/step.ts): each
   * decoder block keeps only its input and runs again before its backward pass. Same gradients, less peak
   * memory, about one more forward pass of compute. The tfjs forward ignores it; the Trainer refuses it on the
   * tape.
   *
   * @example
   * ```ts
   * model.lm.gradientCheckpointing = true; // or: new Trainer(peft, { gradientCheckpointing: true })
   * const session = peft.compileTraining({ ... });
   * ```
   */
  gradientCheckpointing = false;
  /**
   * A classification head in place of the LM head for `logits` and `loss` (see models/heads.ts): logits [B, T, L],
   * and a loss whose labels are label ids at the positions they score, not shifted. Generation keeps the LM head.
   */
  taskHead: ClassificationHead | undefined = undefined;

  /** Every projection, by its Hugging Face module name. */
  abstract linears(): Linear[];

  /** The architecture's compiled training step (its blocks' forward and backward), if it has one. */
  stepArchitecture(): StepArchitecture | undefined {
    return undefined;
  }

  /** ids [B, T] -> final hidden states [B, T, C]; appends to `cache` when given. */
  abstract hiddenStates(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D;

  /** Every weight, each once (a tied head is the embedding), as the loader recorded them: f32 or packed. */
  weights(): (tf.Tensor | PackedMatrix)[] {
    return [...new Set(this.params.flatMap((p) => p.get()))];
  }

  /** Parameters of the base model, counting a tied embedding once (logical elements, whatever the storage). */
  parameterCount(): number {
    return this.weights().reduce((n, m) => n + m.size, 0);
  }

  /** Bytes the weights take on the GPU in their storage (f32, f16, int8 or NF4 with its scales). */
  weightBytes(): number {
    return this.weights().reduce((n, m) => n + matrixBytes(m), 0);
  }

  /** The storage of the projections: "float32", or the packed format the model was loaded with. */
  projectionFormat(): string {
    const w = this.linears()[0]?.weight;
    return w && isPacked(w) ? w.format : "float32";
  }

  /** Vocabulary rows of the widest LM-head chunk: the loss holds at most this many logits per token at once. */
  get headChunkRows(): number {
    return Math.max(...this.head.chunks.map((c) => c.shape[0]));
  }

  /** Frees every weight, and the task head the model holds (one it was loaded or merged with). */
  dispose(): void {
    for (const m of this.weights()) m.dispose();
    this.taskHead?.dispose();
    this.taskHead = undefined;
  }

  private modules: string[] = [];
  private params: ParameterEntry[] = [];

  /** Called by the loader: every checkpoint tensor and where its live value is. */
  recordParameters(entries: ParameterEntry[]): void {
    this.params = entries;
  }

  /** The checkpoint tensors of this model, by HF name, with their current values (merged adapters included). */
  parameters(): ParameterEntry[] {
    return this.params;
  }

  /** Called by the loader with every checkpoint tensor it read. */
  recordModules(tensorNames: string[]): void {
    this.modules = [
      ...new Set(tensorNames.map((n) => n.replace(/\.(weight|bias)$/, ""))),
    ];
  }

  /** Modules of the checkpoint that are not Linear layers (norms, embeddings): not LoRA targets. */
  otherModules(): string[] {
    const linear = new Set(this.linears().map((l) => l.name));
    return this.modules.filter((m) => !linear.has(m));
  }

  newCache(): KVCache {
    return new KVCache(this.dims.numLayers);
  }

  /** ids [B, T] -> logits [B, T, V] (or [B, T, L] with a task head). */
  logits(ids: number[][], cache?: KVCache): tf.Tensor3D {
    return tf.tidy(() => {
      const idsT = this.idsTensor(ids);
      const [B, T] = idsT.shape;
      const h = this.hiddenStates(idsT, cache).reshape([
        B * T,
        this.dims.hiddenSize,
      ]) as tf.Tensor2D;
      const task = this.taskHead;
      if (task)
        return task.project(h).reshape([B, T, task.numLabels]) as tf.Tensor3D;
      const chunks = this.head.projectChunks(h).map((c) => this.softcap(c));
      const logits = chunks.length === 1 ? chunks[0]! : tf.concat(chunks, 1);
      return logits.reshape([B, T, this.dims.vocabSize]) as tf.Tensor3D;
    });
  }

  /** Logits of the last position only, for generation: ids [B, T] -> [B, V]. Appends to `cache`. */
  nextTokenLogits(ids: number[][], cache: KVCache): tf.Tensor2D {
    return tf.tidy(() => {
      const idsT = this.idsTensor(ids);
      const [B, T] = idsT.shape;
      const end = cache.length + T;
      if (end > this.dims.maxPositions) {
        throw new ShapeError(
          `${this.dims.modelType}: ${end} positions exceed max_position_embeddings (${this.dims.maxPositions}).`,
        );
      }
      const h = this.hiddenStates(idsT, cache).slice(
        [0, T - 1, 0],
        [B, 1, this.dims.hiddenSize],
      );
      const chunks = this.head
        .projectChunks(h.reshape([B, this.dims.hiddenSize]))
        .map((c) => this.softcap(c));
      return (
        chunks.length === 1 ? chunks[0]! : tf.concat(chunks, 1)
      ) as tf.Tensor2D;
    });
  }

  /**
   * Mean next-token cross-entropy, as HF computes it from `labels` (default: the ids themselves): position t
   * predicts label t + 1, and labels equal to -100 are ignored. Neither it nor its gradient materialises more than
   * one block of one vocabulary chunk of logits at a time (see {@link chunkedCrossEntropy}).
   */
  loss(ids: number[][], labels?: number[][]): tf.Scalar {
    if (this.taskHead) return this.headLoss(ids, labels);
    return tf.tidy(() => {
      const idsT = this.idsTensor(ids);
      const [B, T] = idsT.shape;
      const targets = this.shiftedTargets(labels ?? ids, B, T);
      const h = this.hiddenStates(idsT).slice(
        [0, 0, 0],
        [B, T - 1, this.dims.hiddenSize],
      );
      const h2d = h.reshape([B * (T - 1), this.dims.hiddenSize]) as tf.Tensor2D;
      return chunkedCrossEntropy(h2d, this.head, targets, this.logitSoftcap);
    });
  }

  /** The task head's loss: labels [B, T] are label ids (or -100) at the positions they score, not shifted. */
  private headLoss(ids: number[][], labels: number[][] | undefined): tf.Scalar {
    const head = this.taskHead!;
    if (!labels)
      throw new ShapeError(
        `loss: a ${head.task} head needs labels (label ids at the positions they score, -100 elsewhere).`,
      );
    return tf.tidy(() => {
      const idsT = this.idsTensor(ids);
      const [B, T] = idsT.shape;
      if (labels.length !== B || labels.some((row) => row.length !== T))
        throw new ShapeError(`loss: labels must be [${B}, ${T}] like the ids.`);
      const h = this.hiddenStates(idsT).reshape([
        B * T,
        this.dims.hiddenSize,
      ]) as tf.Tensor2D;
      return head.loss(h, labels.flat());
    });
  }

  private softcap<T extends tf.Tensor>(x: T): T {
    const cap = this.logitSoftcap;
    return cap === undefined ? x : (x.div(cap).tanh().mul(cap) as T);
  }

  private shiftedTargets(labels: number[][], B: number, T: number): number[] {
    if (T < 2)
      throw new ShapeError(
        `loss: need at least 2 tokens per row to predict a next token, got ${T}.`,
      );
    if (labels.length !== B || labels.some((row) => row.length !== T)) {
      throw new ShapeError(`loss: labels must be [${B}, ${T}] like the ids.`);
    }
    // An out-of-range label would gather a wrong row (or zeros) on the GPU and give a silently wrong loss.
    const V = this.dims.vocabSize;
    labels.forEach((row, b) =>
      row.forEach((label, t) => {
        const valid =
          label === IGNORE_INDEX ||
          (Number.isInteger(label) && label >= 0 && label < V);
        if (!valid)
          throw new ShapeError(
            `loss: label ${label} at [${b}, ${t}] is neither ${IGNORE_INDEX} (ignored) nor a token id in [0, ${V}).`,
          );
      }),
    );
    return labels.flatMap((row) => row.slice(1));
  }

  /** Checks ids on the CPU (where they come from) before anything reaches the GPU. */
  protected idsTensor(ids: number[][]): tf.Tensor2D {
    const B = ids.length;
    const T = ids[0]?.length ?? 0;
    if (B === 0 || T === 0 || ids.some((row) => row.length !== T)) {
      throw new ShapeError(
        `token ids must be a non-empty [batch, tokens] array with rows of equal length (pad them), got rows of ` +
          `${ids.map((r) => r.length).join(", ") || "nothing"}.`,
      );
    }
    const V = this.dims.vocabSize;
    ids.forEach((row, b) =>
      row.forEach((id, t) => {
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new ShapeError(
            `token id ${id} at [${b}, ${t}] is outside the vocabulary [0, ${V}).`,
          );
        }
      }),
    );
    return tf.tensor2d(ids, [B, T], "int32");
  }
}

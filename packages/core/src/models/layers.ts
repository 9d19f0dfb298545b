/**
 * Building blocks shared by the architectures where the maths is truly identical: Linear, the norms, RoPE,
 * causal (optionally sliding-window) attention with GQA, and a vocabulary-chunked embedding.
 *
 * Letters: B batch, T new tokens, S attended tokens (past + new), C hidden size, H query heads, G kv heads,
 * D head dim, V vocabulary.
 */
import * as tf from "@tensorflow/tfjs";
import type { BoundVector, StepBuilder } from "../engine/builder.js";
import { rmsNorm } from "../engine/ops/norm.js";
import type { GraphTensor } from "../engine/graph.js";
import {
  doraBackward,
  doraForward,
  type DoraBinding,
  type DoraSaved,
} from "../engine/ops/dora.js";
import {
  linearBackward,
  linearForward,
  loraBackward,
  loraForward,
  type LoraBinding,
  type LoraSaved,
} from "../engine/ops/linear.js";
import { linear } from "../kernels/linear/op.js";
import type { Matrix } from "../kernels/quant/packed.js";

/** What wraps a Linear's forward (LoRA): given the layer and its input, returns the output. */
export interface LinearAdapter {
  forward(layer: Linear, x: tf.Tensor): tf.Tensor;
  /** Trainable variables `forward` reads now (none when it runs the base layer alone): checkpointing's params. */
  trainableVariables(): tf.Variable[];
  /** The adapter `forward` applies now, as a compiled step binds it; undefined when it applies none. */
  stepBinding(s: StepBuilder): LoraBinding | undefined;
}

/** What a Linear's forward keeps for its backward in a compiled step. */
export interface LinearSaved {
  /** The input, when the layer itself trains (full fine-tuning). */
  x?: GraphTensor;
  lora?: { binding: LoraBinding; saved: LoraSaved };
  dora?: { binding: LoraBinding & { dora: DoraBinding }; saved: DoraSaved };
}

/** Whether a projection's backward reads its input (for its adapter's or its own weight's gradient). */
export function readsInput(saved: LinearSaved): boolean {
  return (
    saved.x !== undefined ||
    saved.lora !== undefined ||
    saved.dora !== undefined
  );
}

/**
 * The same saved state with `x` as the projection's input: a norm's output recomputed just before the backward
 * pass reads it, so that the forward's copy need not stay alive through the whole step.
 */
export function withInput(saved: LinearSaved, x: GraphTensor): LinearSaved {
  const { lora, dora } = saved;
  return {
    ...(saved.x ? { x } : {}),
    ...(lora ? { lora: { ...lora, saved: { ...lora.saved, x } } } : {}),
    ...(dora
      ? {
          dora: {
            ...dora,
            saved: { ...dora.saved, lora: { ...dora.saved.lora, x } },
          },
        }
      : {}),
  };
}

/**
 * The projections' saved state reading an RMSNorm's output recomputed from its input `x`, when any of them reads
 * it: one norm dispatch, so that the forward's [N, C] output need not stay alive through the step.
 */
export function withRecomputedRmsNorm(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  weight: BoundVector,
  eps: number,
  saved: LinearSaved[],
): LinearSaved[] {
  if (!saved.some(readsInput)) return saved;
  const n = rmsNorm(s, `${label} (again)`, x, weight, eps);
  return saved.map((kept) => withInput(kept, n.y));
}

/**
 * One projection with its Hugging Face module name. The frozen weight keeps its stored layout:
 * 'in_out' is GPT-2's Conv1D ([in, out]), 'out_in' is nn.Linear ([out, in]). No transposed copy is made.
 */
export class Linear {
  /** Set by adapter injection; when present it computes the whole layer. */
  adapter: LinearAdapter | undefined;

  constructor(
    readonly name: string,
    /**
     * Frozen; f32, or f16/int8/NF4 when the model was loaded with `dtype` or `quantize`. Replaced only by merging
     * an adapter into it (and restored by unmerging).
     */
    public weight: Matrix,
    readonly bias: tf.Tensor1D | null,
    readonly layout: "in_out" | "out_in",
  ) {}

  get inFeatures(): number {
    return this.layout === "in_out"
      ? this.weight.shape[0]
      : this.weight.shape[1];
  }

  get outFeatures(): number {
    return this.layout === "in_out"
      ? this.weight.shape[1]
      : this.weight.shape[0];
  }

  /** x: [..., in] -> [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    return this.adapter ? this.adapter.forward(this, x) : this.forwardBase(x);
  }

  /** The compiled step's forward: x [N, in] -> y [N, out], with the adapter that applies now, if any. */
  stepForward(
    s: StepBuilder,
    x: GraphTensor,
    options: { residual?: GraphTensor } = {},
  ): { y: GraphTensor; saved: LinearSaved } {
    const w = s.matrix(this.weight, this.name);
    const bias = this.bias
      ? s.vector(this.bias, `${this.name}.bias`)
      : undefined;
    const binding = this.adapter?.stepBinding(s);
    if (!binding)
      return {
        y: linearForward(s, this.name, x, w, this.layout, { bias, ...options }),
        saved: w.grad || bias?.grad ? { x } : {},
      };
    const { dora } = binding;
    if (dora) {
      const out = doraForward(s, this.name, x, w, this.layout, binding, dora, {
        bias,
        ...options,
      });
      return {
        y: out.y,
        saved: { dora: { binding: { ...binding, dora }, saved: out.saved } },
      };
    }
    const { y, saved } = loraForward(s, this.name, x, w, this.layout, binding, {
      bias,
      ...options,
    });
    return { y, saved: { lora: { binding, saved } } };
  }

  /**
   * The compiled step's backward: the adapter's gradients (if one applied), and dx [N, in] as a new tensor, added
   * into `into`, or none when `inputGrad` is false (nothing before this layer trains).
   */
  stepBackward(
    s: StepBuilder,
    saved: LinearSaved,
    dy: GraphTensor,
    options: { into?: GraphTensor; inputGrad?: boolean } = {},
  ): GraphTensor | undefined {
    const w = s.matrix(this.weight, this.name);
    if (saved.dora) {
      const { binding, saved: kept } = saved.dora;
      return doraBackward(
        s,
        this.name,
        dy,
        kept,
        w,
        this.layout,
        binding,
        binding.dora,
        options,
      );
    }
    if (saved.lora)
      return loraBackward(
        s,
        this.name,
        dy,
        saved.lora.saved,
        w,
        this.layout,
        saved.lora.binding,
        options,
      );
    const bias = this.bias
      ? s.vector(this.bias, `${this.name}.bias`)
      : undefined;
    return linearBackward(s, this.name, dy, w, this.layout, {
      ...options,
      x: saved.x,
      bias,
    });
  }

  /** The frozen projection alone, x·W (+ b), whatever adapter is attached. */
  forwardBase(x: tf.Tensor): tf.Tensor {
    // Only a trainable weight (full fine-tuning) needs x kept for its gradient.
    const trained = this.weight instanceof tf.Variable && this.weight.trainable;
    return linear(x, this.weight, this.bias, this.layout, { frozen: !trained });
  }
}

export { layerNorm, rmsNorm } from "../kernels/norm/op.js";

export { activation } from "../kernels/activation/activation.js";

export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    };

/** inv_freq[i] = base^(-2i/D) for i < D/2, adjusted by the rope scaling (HF modeling_rope_utils). */
export function ropeInverseFrequencies(
  headDim: number,
  base: number,
  scaling: RopeScaling,
): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(base, (2 * i) / headDim);
  if (scaling.type === "linear") return inv.map((f) => f / scaling.factor);
  if (scaling.type === "llama3") {
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } =
      scaling;
    const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
    const highFreqWavelen = originalMaxPositions / highFreqFactor;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highFreqWavelen) return f; // high frequencies are kept
      if (wavelen > lowFreqWavelen) return f / factor; // low frequencies are scaled
      const smooth =
        (originalMaxPositions / wavelen - lowFreqFactor) /
        (highFreqFactor - lowFreqFactor);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  return inv;
}

/** cos and sin tables [T, D] for positions start..start+T-1, the half-frequencies repeated (rotate_half style). */
export function ropeTableValues(
  invFreq: Float64Array,
  start: number,
  T: number,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const D = 2 * half;
  const cos = new Float32Array(T * D);
  const sin = new Float32Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      // Angles in float64, as the float32 position × inv_freq product of HF differs only in the last bits.
      const angle = (start + t) * invFreq[i]!;
      cos[t * D + i] = cos[t * D + i + half] = Math.cos(angle);
      sin[t * D + i] = sin[t * D + i + half] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** `ropeTableValues` as tensors [T, D]. */
export function ropeTables(
  invFreq: Float64Array,
  start: number,
  T: number,
): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const { cos, sin } = ropeTableValues(invFreq, start, T);
  const D = 2 * invFreq.length;
  return { cos: tf.tensor2d(cos, [T, D]), sin: tf.tensor2d(sin, [T, D]) };
}

export { applyRope } from "../kernels/rope/rope.js";

/** A finite stand-in for -inf: GPU compilers may assume no infinities, and exp(MASKED - max) is exactly 0. */
const MASKED = -1e30;

/**
 * Additive attention mask [T, S] for T new queries at positions past..past+T-1 over S = past + T keys:
 * 0 where key j is visible (j ≤ i, and i - j < window when a sliding window is set), MASKED elsewhere.
 * null when every key is visible (one new token with no window cutting into the past, as in decoding): adding
 * zeros would cost a dispatch per layer and an upload per token.
 */
export function causalMask(
  T: number,
  past: number,
  window?: number,
): tf.Tensor2D | null {
  const S = past + T;
  if (T === 1 && (window === undefined || S <= window)) return null;
  const mask = new Float32Array(T * S);
  for (let t = 0; t < T; t++) {
    const i = past + t;
    for (let j = 0; j < S; j++) {
      const visible = j <= i && (window === undefined || i - j < window);
      mask[t * S + j] = visible ? 0 : MASKED;
    }
  }
  return tf.tensor2d(mask, [T, S]);
}

/** [B, T, heads·D] -> [B, heads, T, D] */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [B, T, C] = x.shape as [number, number, number];
  // One new token (decoding): the transpose moves nothing, and a reshape costs no GPU dispatch.
  if (T === 1) return x.reshape([B, heads, 1, C / heads]) as tf.Tensor4D;
  return x
    .reshape([B, T, heads, C / heads])
    .transpose([0, 2, 1, 3]) as tf.Tensor4D;
}

/** [B, heads, T, D] -> [B, T, heads·D] */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [B, H, T, D] = x.shape;
  if (T === 1) return x.reshape([B, 1, H * D]) as tf.Tensor3D;
  return x.transpose([0, 2, 1, 3]).reshape([B, T, H * D]) as tf.Tensor3D;
}

/**
 * softmax(q·kᵀ·scale + mask)·v with grouped-query attention: each of the G kv heads serves H/G query heads.
 * q: [B, H, T, D], k and v: [B, G, S, D], mask: [T, S] -> [B, H, T, D]
 */
export function attention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor2D | null,
  scale: number,
  /** Gemma 2-style attention softcapping: cap·tanh(score / cap), before the mask. */
  softcap?: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, H, T, D] = q.shape;
    const G = k.shape[1];
    // Group the query heads under their kv head instead of repeating k and v: [B, G, (H/G)·T, D].
    const qg = q.reshape([B, G, (H / G) * T, D]) as tf.Tensor4D;
    const y =
      softcap === undefined
        ? attentionKeepingInputs(qg, k, v, mask, scale, H / G)
        : tf.matMul(softcappedProbs(qg, k, mask, scale, H / G, softcap), v);
    return y.reshape([B, H, T, D]) as tf.Tensor4D;
  });
}

/** scores + mask, the [T, S] mask broadcast over the heads of a group: [B, G, (H/G)·T, S]. */
function addMask(
  scores: tf.Tensor4D,
  mask: tf.Tensor2D | null,
  headsPerGroup: number,
): tf.Tensor4D {
  if (!mask) return scores;
  const [B, G, HT, S] = scores.shape;
  return scores
    .reshape([B, G, headsPerGroup, HT / headsPerGroup, S])
    .add(mask)
    .reshape([B, G, HT, S]) as tf.Tensor4D;
}

/** softmax(qg·kᵀ·scale + mask), the probabilities: [B, G, (H/G)·T, S]. */
function attentionProbs(
  qg: tf.Tensor4D,
  k: tf.Tensor4D,
  mask: tf.Tensor2D | null,
  scale: number,
  headsPerGroup: number,
): tf.Tensor4D {
  const scores = tf.matMul(qg, k, false, true).mul(scale) as tf.Tensor4D;
  return tf.softmax(addMask(scores, mask, headsPerGroup), -1);
}

/**
 * softmax(qg·kᵀ·scale + mask)·v as one differentiable step that keeps only its inputs for the backward pass, as
 * FlashAttention does: autograd of the composed ops keeps the raw, scaled and masked scores and the
 * probabilities, four [B, H, T, S] tensors per layer, the largest activations of a long sequence. The backward
 * pass recomputes the probabilities from q and k with the same ops, so they are the forward's to the bit:
 *
 *   dP = dO·vᵀ,  dS = scale · P ∘ (dP − Σ_s P ∘ dP),  dq = dS·k,  dk = dSᵀ·q,  dv = Pᵀ·dO
 */
function attentionKeepingInputs(
  qg: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor2D | null,
  scale: number,
  headsPerGroup: number,
): tf.Tensor4D {
  const f = tf.customGrad(((...args: unknown[]) => {
    const [q, kk, vv] = args as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const save = args.at(-1) as tf.GradSaveFunc;
    // The mask too: the scope that made it ends before the backward pass runs.
    save(mask ? [q, kk, vv, mask] : [q, kk, vv]);
    return {
      value: tf.tidy(() =>
        tf.matMul(attentionProbs(q, kk, mask, scale, headsPerGroup), vv),
      ),
      gradFunc: (dOut: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [qs, ks, vs, m] = saved as [
          tf.Tensor4D,
          tf.Tensor4D,
          tf.Tensor4D,
          tf.Tensor2D | undefined,
        ];
        const probs = attentionProbs(qs, ks, m ?? null, scale, headsPerGroup);
        const dProbs = tf.matMul(dOut, vs, false, true);
        const dScores = probs
          .mul(dProbs.sub(probs.mul(dProbs).sum(-1, true)))
          .mul(scale) as tf.Tensor4D;
        return [
          tf.matMul(dScores, ks),
          tf.matMul(dScores, qs, true, false),
          tf.matMul(probs, dOut, true, false),
        ];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(qg, k, v) as tf.Tensor4D;
}

/** The composed path with Gemma 2-style softcapping, left to autograd (no current checkpoint uses it). */
function softcappedProbs(
  qg: tf.Tensor4D,
  k: tf.Tensor4D,
  mask: tf.Tensor2D | null,
  scale: number,
  headsPerGroup: number,
  softcap: number,
): tf.Tensor4D {
  const scores = tf
    .matMul(qg, k, false, true)
    .mul(scale)
    .div(softcap)
    .tanh()
    .mul(softcap) as tf.Tensor4D;
  return tf.softmax(addMask(scores, mask, headsPerGroup), -1);
}

/**
 * What a training step will need on the GPU, estimated from the model's shapes before the first step runs, so
 * that a configuration that cannot fit fails with reasons instead of a lost device half-way through.
 *
 * The activation model counts what a decoder block keeps for its backward pass (see `blockActivationBytes`), for
 * every block or, with checkpointing, each block's input plus one block, and the largest transient of the
 * backward pass: one block's attention work or one chunk of the loss head. It is an estimate, checked against
 * measured peaks by the `memory` benchmark and the Trainer's tests.
 *
 * Letters: B batch, T tokens per row, N = B·T, C hidden size, H query heads.
 */
import type { CausalLM } from "./causal_lm.js";

const F32 = 4;

/** Bytes, by category, that one training step is expected to hold at its peak. */
export interface MemoryFootprint {
  /** The base model as stored (f32, f16 or packed). */
  baseWeights: number;
  /** Trained tensors: adapters, or every weight in full fine-tuning. */
  trained: number;
  /** Their gradients and AdamW's two moments. */
  gradientsAndOptimizer: number;
  /** Kept for the backward pass (all blocks, or only block inputs plus one block with checkpointing). */
  activations: number;
  /** The sum. */
  peak: number;
  /** The largest single tensor of the step, which must fit one storage binding. */
  largestTensor: { name: string; bytes: number };
}

export interface StepShape {
  batch: number;
  tokens: number;
  /** Elements of the trained tensors (adapters, or the whole model). */
  trainedParameters: number;
  gradientCheckpointing: boolean;
  /** The trained tensors are the base weights themselves (full fine-tuning): not counted twice. */
  fullFineTune?: boolean;
}

/**
 * Activations one block keeps for its backward pass: the projections' outputs that later ops read back (q, k, v
 * for attention, the gate and up projections for the activation; the attention and MLP outputs feed only
 * residual adds, which keep no values), plus the residual stream at each norm and the normed input the adapters
 * read: about Σ out − 2C + 3C values per token.
 */
function blockActivationBytes(lm: CausalLM, s: StepShape): number {
  const { hiddenSize: C, numLayers } = lm.dims;
  const N = s.batch * s.tokens;
  const perLayerLinears = lm.linears().length / numLayers;
  const outputs = lm
    .linears()
    .slice(0, perLayerLinears)
    .reduce((n, l) => n + l.outFeatures, 0);
  return N * (outputs + C) * F32;
}

/** One block's attention scores, probabilities and their gradients, alive while its backward pass runs. */
function attentionWorkBytes(lm: CausalLM, s: StepShape): number {
  return 4 * s.batch * lm.dims.numHeads * s.tokens * s.tokens * F32;
}

/** One vocabulary chunk of logits, its softmax and gradient: the most the chunked cross-entropy holds at once. */
function lossHeadBytes(lm: CausalLM, s: StepShape): number {
  return 4 * s.batch * s.tokens * lm.headChunkRows * F32;
}

/**
 * The expected peak of one training step of `lm` at [batch, tokens].
 *
 * @example
 * ```ts
 * const f = estimateTrainingMemory(model.lm, { batch: 1, tokens: 256, trainedParameters: 1e6, gradientCheckpointing: true });
 * console.log(`${(f.peak / 2 ** 30).toFixed(2)} GiB, largest tensor ${f.largestTensor.name}`);
 * ```
 */
export function estimateTrainingMemory(
  lm: CausalLM,
  s: StepShape,
): MemoryFootprint {
  const { hiddenSize: C, numHeads: H, numLayers } = lm.dims;
  const N = s.batch * s.tokens;
  const block = blockActivationBytes(lm, s);
  const kept = s.gradientCheckpointing
    ? numLayers * N * C * F32 + block
    : numLayers * block;
  const activations =
    kept + Math.max(attentionWorkBytes(lm, s), lossHeadBytes(lm, s));
  const baseWeights = lm.weightBytes();
  const trained = s.trainedParameters * F32;
  const gradientsAndOptimizer = 3 * trained;
  const candidates = [
    {
      name: `attention scores [${s.batch}, ${H}, ${s.tokens}, ${s.tokens}]`,
      bytes: s.batch * H * s.tokens * s.tokens * F32,
    },
    ...lm.linears().map((l) => ({
      name: `${l.name} output [${N}, ${l.outFeatures}]`,
      bytes: N * l.outFeatures * F32,
    })),
  ];
  const largestTensor = candidates.reduce((a, b) =>
    b.bytes > a.bytes ? b : a,
  );
  return {
    baseWeights,
    trained,
    gradientsAndOptimizer,
    activations,
    peak:
      baseWeights +
      (s.fullFineTune ? 0 : trained) +
      gradientsAndOptimizer +
      activations,
    largestTensor,
  };
}

/** A footprint with what produced it, for the Trainer's advice. */
export interface MemoryPlan {
  footprint: MemoryFootprint;
  /** The storage of the base's projections: "float32", "float16", "int8" or "nf4". */
  baseFormat: string;
}

/**
 * What a training step will need on the GPU, estimated from the model's shapes before the first step runs, so
 * that a configuration that cannot fit fails with reasons instead of a lost device half-way through.
 *
 * The activation model counts what tfjs keeps for the backward pass of one decoder block: every projection's
 * output (and its input, shared with the previous op), the attention scores and probabilities, and the norms and
 * residuals. It is an estimate, checked against measured peaks by the `memory` benchmark.
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

/** Activations one block keeps for its backward pass. */
function blockActivationBytes(lm: CausalLM, s: StepShape): number {
  const { hiddenSize: C, numHeads: H, numLayers } = lm.dims;
  const N = s.batch * s.tokens;
  const perLayerLinears = lm.linears().length / numLayers;
  const outputs = lm
    .linears()
    .slice(0, perLayerLinears)
    .reduce((n, l) => n + l.outFeatures, 0);
  // Projection outputs and what follows them elementwise (RoPE, the gated activation): about twice each.
  const projections = 2 * N * outputs * F32;
  // Scores, masked scores and probabilities, [B, H, T, T] each.
  const attention = 3 * s.batch * H * s.tokens * s.tokens * F32;
  // Two norms' inputs and outputs and two residual sums.
  const stream = 6 * N * C * F32;
  return projections + attention + stream;
}

/** One vocabulary chunk of logits and its softmax, the most the chunked cross-entropy holds at once. */
function lossHeadBytes(lm: CausalLM, s: StepShape): number {
  const N = s.batch * s.tokens;
  const rows = lm.headChunkRows;
  return 3 * N * rows * F32;
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
  const activations =
    (s.gradientCheckpointing
      ? numLayers * N * C * F32 + block
      : numLayers * block) + lossHeadBytes(lm, s);
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

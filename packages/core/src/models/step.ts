/**
 * The compiled step of any architecture, as llm.c's gpt2_forward and gpt2_backward: embed, every block's forward,
 * the final norm, the loss and its gradient straight from the LM head, then every block's backward in reverse.
 * An architecture gives its blocks' forward and backward (`StepArchitecture`); this file gives the order.
 *
 * With gradient checkpointing a block keeps only its input, and its backward first runs its forward again: the
 * recomputed activations live only while that block's backward runs.
 *
 * Letters: B batch, T tokens, N = B·T rows, C hidden size.
 */
import type { StepBuilder } from "../engine/builder.js";
import type { GraphTensor } from "../engine/graph.js";
import type { StepIO } from "../engine/session.js";
import { crossEntropy } from "../engine/ops/loss.js";
import type { Embedding } from "./embedding.js";

/** One block of a compiled step: a forward that keeps what its backward needs, and that backward. */
export interface StepBlock<Saved = unknown> {
  /** x [N, C] -> y [N, C] */
  forward(s: StepBuilder, x: GraphTensor): { y: GraphTensor; saved: Saved };
  /**
   * dy [N, C] -> dx [N, C], the adapter gradients recorded on the way. dy may be updated in place and returned
   * as dx (the residual stream's gradient); the caller must not read dy afterwards. With `inputGrad` false
   * nothing before the block trains, and dx is not computed.
   */
  backward(
    s: StepBuilder,
    saved: Saved,
    dy: GraphTensor,
    inputGrad: boolean,
  ): GraphTensor | undefined;
}

/** What an architecture gives the compiled step, for one batch shape. */
export interface StepLayers {
  /** The embedding of ids [N] -> x [N, C]. */
  x: GraphTensor;
  blocks: StepBlock[];
  /** The final norm; its backward gives the last block's output gradient. */
  norm: StepBlock;
}

export interface StepArchitecture {
  /** Records the embedding (and any per-shape constants, such as RoPE tables) and returns the layers. */
  layers(s: StepBuilder, ids: GraphTensor, B: number, T: number): StepLayers;
  /** The LM head's vocabulary chunks (the tied embedding, or lm_head). */
  head: Embedding;
  /** Gemma-style final logit softcapping. */
  logitSoftcap: number | undefined;
}

/**
 * Records one micro-batch of [B, T]: the loss, and in a training graph every adapter gradient (added into the
 * training state's gradient buffer). In a forward-only graph, the loss alone. The host writes `ids` (int32 [N],
 * row-major [B, T]) and `targets` (the label each position predicts, -100 where no loss applies) and reads
 * `loss` (Σ of the token losses, each weighted by the step parameters' lossScale).
 */
export function recordStep(
  s: StepBuilder,
  arch: StepArchitecture,
  B: number,
  T: number,
  options: {
    checkpointing: boolean;
    /** Bytes of logits the loss may hold at once (see `crossEntropy`). */
    logitBudget?: number;
  },
): StepIO {
  const N = B * T;
  const ids = s.g.input("input_ids", [N]);
  const targets = s.g.input("targets", [N]);
  const { x: embedded, blocks, norm } = arch.layers(s, ids, B, T);
  const checkpointing = options.checkpointing && s.training;
  let x = embedded;
  const saved: unknown[] = [];
  for (const block of blocks) {
    const out = block.forward(s, x);
    saved.push(checkpointing ? x : out.saved);
    x = out.y;
  }
  const final = norm.forward(s, x);
  const { loss, dh } = crossEntropy(s, "lm_head", final.y, arch.head, targets, {
    softcap: arch.logitSoftcap,
    logitBudget: options.logitBudget,
  });
  s.g.readback(loss);
  if (!s.training) return { ids, targets, loss };
  let dx = norm.backward(s, final.saved, dh!, true)!;
  for (let i = blocks.length - 1; i >= 0; i--) {
    const block = blocks[i]!;
    const kept = checkpointing
      ? block.forward(s, saved[i] as GraphTensor).saved
      : saved[i];
    const inputGrad = i > 0;
    const next = block.backward(s, kept, dx, inputGrad);
    if (inputGrad) dx = next!;
  }
  return { ids, targets, loss };
}

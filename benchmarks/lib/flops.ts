/**
 * Model FLOPs of one LoRA training step with a frozen base (a multiply-add counts 2), per token:
 *   linear:    2·N forward + 2·N backward for the input gradients only (frozen weights get no weight gradient),
 *              N = the parameters of every projection plus the (tied) LM head;
 *   attention: 12·T·H·D per layer: QKᵀ and P·V forward, dP, dV, dQ, dK backward, 2·T·H·D each, over the
 *              full T×T (no causal halving);
 *   LoRA:      6·r·(in + out) per target: forward 2·r·(in + out), backward dA, dB and the low-rank part of dx.
 * Norms, activations, softmax, the cross-entropy and the optimizer are left out. A full fine-tune adds the
 * weight gradients, another 2·N. benchmarks/gpu/README.md derives the same formula for gpt2.
 */
import type { ModelDims } from "./models.js";

export interface StepFlops {
  linear: number;
  attention: number;
  lora: number;
  total: number;
}

/** Parameters of the projections of one layer plus the head: N/L and V·C. */
function projectionParams(d: ModelDims): { perLayer: number; head: number } {
  const q = d.hidden * d.heads * d.headDim;
  const kv = 2 * d.hidden * d.kvHeads * d.headDim;
  const o = d.heads * d.headDim * d.hidden;
  return {
    perLayer: q + kv + o + d.mlpMatrices * d.hidden * d.intermediate,
    head: d.vocab * d.hidden,
  };
}

/** In and out features of each LoRA target module name. */
export function targetShape(
  d: ModelDims,
  module: string,
): { in: number; out: number } {
  const shapes: Record<string, { in: number; out: number }> = {
    c_attn: { in: d.hidden, out: 3 * d.hidden },
    q_proj: { in: d.hidden, out: d.heads * d.headDim },
    k_proj: { in: d.hidden, out: d.kvHeads * d.headDim },
    v_proj: { in: d.hidden, out: d.kvHeads * d.headDim },
    o_proj: { in: d.heads * d.headDim, out: d.hidden },
  };
  const shape = shapes[module];
  if (!shape) throw new Error(`flops: no shape for LoRA target ${module}`);
  return shape;
}

export function loraStepFlops(
  d: ModelDims,
  tokens: { batch: number; seq: number },
  lora: { r: number; targetModules: string[] } | "full",
): StepFlops {
  const n = tokens.batch * tokens.seq;
  const { perLayer, head } = projectionParams(d);
  const N = d.layers * perLayer + head;
  const linear = (lora === "full" ? 6 : 4) * N * n;
  const attention = 12 * tokens.seq * d.heads * d.headDim * d.layers * n;
  const loraFlops =
    lora === "full"
      ? 0
      : lora.targetModules.reduce((sum, m) => {
          const s = targetShape(d, m);
          return sum + 6 * lora.r * (s.in + s.out) * d.layers * n;
        }, 0);
  return {
    linear,
    attention,
    lora: loraFlops,
    total: linear + attention + loraFlops,
  };
}

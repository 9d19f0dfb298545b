/**
 * Attention in a compiled step (kernels/attention/program.ts): causal, grouped-query, optionally softcapped and
 * sliding-window, FlashAttention-style (the [T, T] scores are never stored; the backward recomputes them from q,
 * k and each row's log-sum-exp). Operands are views of the tensors they live in, so q, k and v are read straight
 * out of the projections and o is written merged-heads for the output projection.
 *
 * Letters: B batch, T tokens, H query heads, G kv heads, D head dim.
 */
import {
  attentionBackward as backwardCalls,
  attentionForward as forwardCall,
  type AttentionView,
} from "../../kernels/attention/program.js";
import { ShapeError } from "../../errors.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";

export interface AttentionDims {
  B: number;
  T: number;
  H: number;
  G: number;
  D: number;
}

/** Heads of a tensor: element (b, head, t, d) at offset + b·sB + head·sH + t·sT + d. */
export interface Heads {
  tensor: GraphTensor;
  B: number;
  heads: number;
  T: number;
  D: number;
  offset: number;
  sB: number;
  sH: number;
  sT: number;
}

/** The heads of a token-major [B, T, rowStride] tensor, starting at column `offset` (a projection's output). */
export function rowHeads(
  tensor: GraphTensor,
  B: number,
  T: number,
  heads: number,
  D: number,
  layout: { offset?: number; rowStride?: number } = {},
): Heads {
  const rowStride = layout.rowStride ?? heads * D;
  return {
    tensor,
    B,
    heads,
    T,
    D,
    offset: layout.offset ?? 0,
    sB: T * rowStride,
    sH: D,
    sT: rowStride,
  };
}

/** The heads of a head-major [B, heads, T, D] tensor. */
export function contiguousHeads(
  tensor: GraphTensor,
  B: number,
  heads: number,
  T: number,
  D: number,
): Heads {
  return {
    tensor,
    B,
    heads,
    T,
    D,
    offset: 0,
    sB: heads * T * D,
    sH: T * D,
    sT: D,
  };
}

function view(h: Heads): AttentionView {
  return { offset: h.offset, strides: [h.sB, h.sH, h.sT] };
}

export interface AttentionOptions {
  scale: number;
  softcap?: number;
  window?: number;
}

/** Whether q, k and v are views of one tensor (a fused projection); then they are bound once. */
function fused(label: string, q: Heads, k: Heads, v: Heads): boolean {
  const same = q.tensor === k.tensor && k.tensor === v.tensor;
  if (
    !same &&
    (q.tensor === k.tensor || k.tensor === v.tensor || q.tensor === v.tensor)
  )
    throw new ShapeError(
      `${label}: two of q, k and v share a tensor but the third does not; the attention programs bind either one tensor or three.`,
    );
  return same;
}

/** o = softmax(q·kᵀ·scale, causal) · v, written into `o`'s heads; returns lse [B, H, T]. */
export function attention(
  s: StepBuilder,
  label: string,
  io: { q: Heads; k: Heads; v: Heads; o: Heads },
  dims: AttentionDims,
  options: AttentionOptions,
): { lse: GraphTensor } {
  const { q, k, v, o } = io;
  const fusedQkv = fused(label, q, k, v);
  const lse = s.g.activation(`${label}.lse`, [dims.B, dims.H, dims.T]);
  s.g.dispatch(
    label,
    forwardCall(
      dims,
      { q: view(q), k: view(k), v: view(v), o: view(o) },
      {
        ...options,
        fusedQkv,
        maxWorkgroupsPerDimension: s.g.limits.maxComputeWorkgroupsPerDimension,
      },
      s.software,
    ),
    fusedQkv
      ? [q.tensor, o.tensor, lse]
      : [q.tensor, k.tensor, v.tensor, o.tensor, lse],
  );
  return { lse };
}

/** dq, dk and dv from dO, written into their heads (two dispatches; Δ = rowsum(dO ∘ o) in between). */
export function attentionBackward(
  s: StepBuilder,
  label: string,
  io: {
    q: Heads;
    k: Heads;
    v: Heads;
    o: Heads;
    dO: Heads;
    lse: GraphTensor;
    dq: Heads;
    dk: Heads;
    dv: Heads;
  },
  dims: AttentionDims,
  options: AttentionOptions,
): void {
  const { q, k, v, o, dO, lse, dq, dk, dv } = io;
  const fusedQkv = fused(label, q, k, v);
  if (fused(`${label} gradients`, dq, dk, dv) !== fusedQkv)
    throw new ShapeError(
      `${label}: q, k and v and their gradients must both share one tensor or both not.`,
    );
  const delta = s.g.activation(`${label}.delta`, [dims.B, dims.H, dims.T]);
  const [dqCall, dkdvCall] = backwardCalls(
    dims,
    {
      q: view(q),
      k: view(k),
      v: view(v),
      o: view(o),
      dO: view(dO),
      dq: view(dq),
      dk: view(dk),
      dv: view(dv),
    },
    {
      ...options,
      fusedQkv,
      maxWorkgroupsPerDimension: s.g.limits.maxComputeWorkgroupsPerDimension,
    },
    s.software,
  );
  if (fusedQkv) {
    s.g.dispatch(`${label} dq`, dqCall, [
      q.tensor,
      o.tensor,
      dO.tensor,
      lse,
      dq.tensor,
      delta,
    ]);
    s.g.dispatch(`${label} dk dv`, dkdvCall, [
      q.tensor,
      dO.tensor,
      lse,
      delta,
      dq.tensor,
    ]);
  } else {
    s.g.dispatch(`${label} dq`, dqCall, [
      q.tensor,
      k.tensor,
      v.tensor,
      o.tensor,
      dO.tensor,
      lse,
      dq.tensor,
      delta,
    ]);
    s.g.dispatch(`${label} dk dv`, dkdvCall, [
      q.tensor,
      k.tensor,
      v.tensor,
      dO.tensor,
      lse,
      delta,
      dk.tensor,
      dv.tensor,
    ]);
  }
}

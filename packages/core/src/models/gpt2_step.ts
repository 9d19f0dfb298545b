/**
 * GPT-2's block in a compiled step: its forward and its backward, side by side, as llm.c's train_gpt2.c writes
 * them. The maths is gpt2.ts's; here each line records dispatches instead of running tfjs ops. q, k and v are
 * read in place from c_attn's fused output, and their gradients written in place into one [N, 3C] tensor.
 *
 *   forward                                        backward (reverse order)
 *   n1 = layernorm(x)                              dx  = dy + layernorm'(dn1)         (dy updated in place)
 *   qkv = n1·W_attn + b                            dn1 = dqkv·W_attnᵀ
 *   o = attention(q, k, v)                         dqkv = attention'(do)
 *   x1 = x + o·W_proj + b                          do  = dx1·W_projᵀ,  dx1 = dy + layernorm'(dn2)
 *   n2 = layernorm(x1)                             dn2 = du·W_fcᵀ
 *   u = n2·W_fc + b,  a = gelu(u)                  du  = gelu'(u) · da
 *   y = x1 + a·W_mproj + b                         da  = dy·W_mprojᵀ
 *
 * n1 and n2 are recomputed before the projections' backward reads them, as in llama_step.ts.
 *
 * Letters: B batch, T tokens, N = B·T, C hidden size, H heads, D = C / H.
 */
import type * as tf from "@tensorflow/tfjs";
import type { StepBuilder } from "../engine/builder.js";
import type { GraphTensor } from "../engine/graph.js";
import { activate, activateBackward } from "../engine/ops/activation.js";
import {
  attention,
  attentionBackward,
  rowHeads,
  type AttentionDims,
} from "../engine/ops/attention.js";
import {
  attendCache,
  writeCache,
  type LayerCache,
} from "../engine/ops/kv_cache.js";
import { layerNorm, layerNormBackward } from "../engine/ops/norm.js";
import type { Embedding } from "./embedding.js";
import {
  readsInput,
  withInput,
  type Linear,
  type LinearSaved,
} from "./layers.js";
import type { DecodeBlock, StepArchitecture, StepBlock } from "./step.js";

interface Norm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

/** The parts of a GPT-2 block the step reads. */
export interface Gpt2StepLayer {
  ln_1: Norm;
  c_attn: Linear;
  c_proj: Linear;
  ln_2: Norm;
  c_fc: Linear;
  mlp_c_proj: Linear;
}

export interface Gpt2StepModel {
  dims: { hiddenSize: number; numHeads: number; layerNormEps: number };
  wte: Embedding;
  wpe: tf.Tensor2D;
  h: Gpt2StepLayer[];
  ln_f: Norm;
}

interface Projected {
  y: GraphTensor;
  saved: LinearSaved;
}

interface NormOut {
  y: GraphTensor;
  mean: GraphTensor;
  rstd: GraphTensor;
}

interface Saved {
  x: GraphTensor;
  n1: NormOut;
  qkv: Projected;
  o: GraphTensor;
  lse: GraphTensor;
  x1: Projected;
  n2: NormOut;
  u: Projected;
  mlp: LinearSaved;
}

/** layernorm(x) with a norm's weight and bias, bound in place. */
function norm(
  s: StepBuilder,
  name: string,
  x: GraphTensor,
  n: Norm,
  eps: number,
): NormOut {
  return layerNorm(
    s,
    name,
    x,
    s.vector(n.weight, `${name}.weight`),
    s.vector(n.bias, `${name}.bias`),
    eps,
  );
}

/**
 * A projection's saved state reading the norm's output recomputed from its input, when its backward reads it: one
 * dispatch, so that the forward's [N, C] output is not kept through the step for the adapter's gradient.
 */
function recomputed(
  s: StepBuilder,
  name: string,
  x: GraphTensor,
  n: Norm,
  eps: number,
  saved: LinearSaved,
): LinearSaved {
  return readsInput(saved)
    ? withInput(saved, norm(s, `${name} (again)`, x, n, eps).y)
    : saved;
}

/** x += layernorm'(dy): the norm's input gradient, added into the residual stream's gradient. */
function normBackward(
  s: StepBuilder,
  name: string,
  dy: GraphTensor,
  x: GraphTensor,
  out: NormOut,
  n: Norm,
  into?: GraphTensor,
): GraphTensor {
  return layerNormBackward(
    s,
    name,
    dy,
    x,
    out.mean,
    out.rstd,
    s.vector(n.weight, `${name}.weight`),
    s.vector(n.bias, `${name}.bias`),
    into,
  );
}

class Gpt2BlockStep implements StepBlock<Saved>, DecodeBlock {
  constructor(
    private readonly layer: Gpt2StepLayer,
    private readonly name: string,
    private readonly eps: number,
    private readonly dims: AttentionDims,
  ) {}

  /** q, k and v: three views of c_attn's [N, 3C] output (or of its gradient). */
  private heads(qkv: GraphTensor) {
    const { B, T, H, D } = this.dims;
    const C = H * D;
    const view = (i: number) =>
      rowHeads(qkv, B, T, H, D, { offset: i * C, rowStride: 3 * C });
    return { q: view(0), k: view(1), v: view(2) };
  }

  forward(s: StepBuilder, x: GraphTensor): { y: GraphTensor; saved: Saved } {
    const { layer, name, eps, dims } = this;
    const { B, T, H, D } = dims;
    // attention
    const n1 = norm(s, `${name}.ln_1`, x, layer.ln_1, eps);
    const qkv = layer.c_attn.stepForward(s, n1.y); // [N, 3C]
    const o = s.g.activation(`${name}.attn_out`, [B * T, H * D]);
    const { lse } = attention(
      s,
      `${name}.attn`,
      { ...this.heads(qkv.y), o: rowHeads(o, B, T, H, D) },
      dims,
      {
        scale: 1 / Math.sqrt(D),
      },
    );
    const x1 = layer.c_proj.stepForward(s, o, { residual: x });
    const { n2, u, y } = this.mlp(s, x1.y);
    return { y: y.y, saved: { x, n1, qkv, o, lse, x1, n2, u, mlp: y.saved } };
  }

  /** The MLP with its norm and residual: x1 -> y. */
  private mlp(s: StepBuilder, x1: GraphTensor) {
    const { layer, name, eps } = this;
    const n2 = norm(s, `${name}.ln_2`, x1, layer.ln_2, eps);
    const u = layer.c_fc.stepForward(s, n2.y); // [N, 4C]
    const a = activate(s, `${name}.mlp.act`, u.y, "gelu_tanh");
    const y = layer.mlp_c_proj.stepForward(s, a, { residual: x1 });
    return { n2, u, y };
  }

  /** Decoding: T new tokens at the step's position, k and v written into the cache, q attending over it. */
  decode(s: StepBuilder, x: GraphTensor, cache: LayerCache): GraphTensor {
    const { layer, name, eps, dims } = this;
    const { B, T, H, D } = dims;
    const n1 = norm(s, `${name}.ln_1`, x, layer.ln_1, eps);
    const { q, k, v } = this.heads(layer.c_attn.stepForward(s, n1.y).y);
    writeCache(s, `${name}.k`, k, cache.k, cache.S);
    writeCache(s, `${name}.v`, v, cache.v, cache.S);
    const o = s.g.activation(`${name}.attn_out`, [B * T, H * D]);
    attendCache(
      s,
      `${name}.attn`,
      { q, o: rowHeads(o, B, T, H, D) },
      cache,
      H,
      {
        scale: 1 / Math.sqrt(D),
      },
    );
    const x1 = layer.c_proj.stepForward(s, o, { residual: x });
    return this.mlp(s, x1.y).y.y;
  }

  backward(
    s: StepBuilder,
    sv: Saved,
    dy: GraphTensor,
    inputGrad: boolean,
  ): GraphTensor | undefined {
    const { layer, name, dims } = this;
    const { B, T, H, D } = dims;
    // MLP, in reverse; dy becomes dx1 in place
    const da = layer.mlp_c_proj.stepBackward(s, sv.mlp, dy)!;
    const du = activateBackward(
      s,
      `${name}.mlp.act`,
      da,
      sv.u.y,
      "gelu_tanh",
    ).dx;
    const dn2 = layer.c_fc.stepBackward(
      s,
      recomputed(s, `${name}.ln_2`, sv.x1.y, layer.ln_2, this.eps, sv.u.saved),
      du,
    )!;
    normBackward(s, `${name}.ln_2`, dn2, sv.x1.y, sv.n2, layer.ln_2, dy);
    // attention, in reverse; dy becomes dx in place
    const dO = layer.c_proj.stepBackward(s, sv.x1.saved, dy)!;
    const dqkv = s.g.activation(`${name}.attn.dqkv`, [B * T, 3 * H * D]);
    const grads = this.heads(dqkv);
    attentionBackward(
      s,
      `${name}.attn`,
      {
        ...this.heads(sv.qkv.y),
        o: rowHeads(sv.o, B, T, H, D),
        dO: rowHeads(dO, B, T, H, D),
        lse: sv.lse,
        dq: grads.q,
        dk: grads.k,
        dv: grads.v,
      },
      dims,
      { scale: 1 / Math.sqrt(D) },
    );
    const dn1 = layer.c_attn.stepBackward(
      s,
      recomputed(s, `${name}.ln_1`, sv.x, layer.ln_1, this.eps, sv.qkv.saved),
      dqkv,
      { inputGrad },
    );
    if (!inputGrad) return undefined;
    normBackward(s, `${name}.ln_1`, dn1!, sv.x, sv.n1, layer.ln_1, dy);
    return dy;
  }
}

/** GPT-2's layers for the compiled step of one batch shape. */
export function gpt2Step(m: Gpt2StepModel): StepArchitecture {
  const { hiddenSize: C, numHeads: H, layerNormEps: eps } = m.dims;
  const finalNorm = finalNormBlock(m.ln_f, eps) as StepBlock;
  const layers = (B: number, T: number) => {
    const dims = { B, T, H, G: H, D: C / H };
    return {
      embedding: { table: m.wte, positions: m.wpe },
      blocks: m.h.map(
        (layer, i) => new Gpt2BlockStep(layer, `transformer.h.${i}`, eps, dims),
      ),
      norm: finalNorm,
    };
  };
  return {
    head: m.wte,
    logitSoftcap: undefined,
    layers: (_s, B, T) => layers(B, T),
    decoding: {
      kvHeads: H,
      headDim: C / H,
      layers: (_s, B, T) => layers(B, T),
    },
  };
}

/** GPT-2's final LayerNorm as a step block. */
function finalNormBlock(
  ln_f: Norm,
  eps: number,
): StepBlock<{ x: GraphTensor; out: NormOut }> {
  return {
    forward(s, x) {
      const out = norm(s, "transformer.ln_f", x, ln_f, eps);
      return { y: out.y, saved: { x, out } };
    },
    backward(s, saved, dy) {
      return normBackward(s, "transformer.ln_f", dy, saved.x, saved.out, ln_f);
    },
  };
}

/**
 * Gemma 3's decoder layer in a compiled step: its forward and its backward, side by side. The maths is
 * gemma3.ts's: q and k normalised per head before RoPE, norms after the attention and MLP outputs as well as
 * before, sliding-window layers with their own RoPE base.
 *
 *   forward                                          backward (reverse order)
 *   n1 = rmsnorm(x)                                  dx  = dy + rmsnorm'(dn1)           (dy updated in place)
 *   q, k, v = n1·Wq, n1·Wk, n1·Wv                    dn1 = dq·Wqᵀ + dk·Wkᵀ + dv·Wvᵀ
 *   q', k' = rope(qnorm(q)), rope(knorm(k))          dq, dk = (rope∘norm)'(dq', dk')  (+ dqnorm, dknorm)
 *   o = attention(q', k', v)                         dq', dk', dv = attention'(do)
 *   x1 = x + rmsnorm(o·Wo)                           do = rmsnorm'(dx1)·Woᵀ,  dx1 = dy + rmsnorm'(dn2)
 *   n2 = rmsnorm(x1)                                 dn2 = dgate·Wgᵀ + dup·Wuᵀ
 *   a = gelu(n2·Wg) · (n2·Wu)                        dgate, dup = gelu-gate'(da)
 *   y = x1 + rmsnorm(a·Wd)                           da = rmsnorm'(dy)·Wdᵀ
 *
 * n1 and n2 are recomputed before the projections' backward reads them, as in llama_step.ts.
 *
 * Letters: B batch, T tokens, N = B·T, C hidden size, H query heads, G kv heads, D head dim, F MLP size.
 */
import type * as tf from "@tensorflow/tfjs";
import type { BoundVector, StepBuilder } from "../engine/builder.js";
import type { GraphTensor } from "../engine/graph.js";
import { activate, activateBackward } from "../engine/ops/activation.js";
import {
  attention,
  attentionBackward,
  contiguousHeads,
  rowHeads,
  type AttentionDims,
} from "../engine/ops/attention.js";
import {
  attendCache,
  writeCache,
  type LayerCache,
} from "../engine/ops/kv_cache.js";
import { rmsNorm, rmsNormBackward } from "../engine/ops/norm.js";
import {
  ropeHeads,
  ropeHeadsAt,
  ropeHeadsBackward,
  type RopeTables,
} from "../engine/ops/rope.js";
import type { AttentionProjections, GatedMlp } from "./decoder_weights.js";
import type { Embedding } from "./embedding.js";
import {
  ropeTableValues,
  withRecomputedRmsNorm,
  type LinearSaved,
} from "./layers.js";
import { rmsNormBlock } from "./llama_step.js";
import type { DecodeBlock, StepArchitecture, StepBlock } from "./step.js";

/** The parts of a Gemma 3 decoder layer the step reads (every norm weight already (1 + w)). */
export interface Gemma3StepLayer {
  self_attn: AttentionProjections & {
    q_norm: tf.Tensor1D;
    k_norm: tf.Tensor1D;
  };
  mlp: GatedMlp;
  norms: {
    input_layernorm: tf.Tensor1D;
    post_attention_layernorm: tf.Tensor1D;
    pre_feedforward_layernorm: tf.Tensor1D;
    post_feedforward_layernorm: tf.Tensor1D;
  };
}

export interface Gemma3StepModel {
  dims: {
    hiddenSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    rmsNormEps: number;
    queryPreAttnScalar: number;
    slidingWindow: number;
    sliding: boolean[];
    attnLogitSoftcap: number | undefined;
    finalLogitSoftcap: number | undefined;
  };
  embed_tokens: Embedding;
  layers: Gemma3StepLayer[];
  norm: tf.Tensor1D;
  head: Embedding;
  globalInvFreq: Float64Array;
  localInvFreq: Float64Array;
}

interface Projected {
  y: GraphTensor;
  saved: LinearSaved;
}

interface Normed {
  y: GraphTensor;
  rstd: GraphTensor;
}

interface Saved {
  x: GraphTensor;
  n1: Normed;
  q: Projected;
  k: Projected;
  v: Projected;
  qr: { out: GraphTensor; rstd: GraphTensor | undefined };
  kr: { out: GraphTensor; rstd: GraphTensor | undefined };
  o: GraphTensor;
  lse: GraphTensor;
  po: Projected;
  x1: Normed;
  n2: Normed;
  gate: Projected;
  up: Projected;
  down: Projected;
  y: Normed;
}

class Gemma3BlockStep implements StepBlock<Saved>, DecodeBlock {
  constructor(
    private readonly layer: Gemma3StepLayer,
    private readonly name: string,
    private readonly m: Gemma3StepModel,
    private readonly dims: AttentionDims,
    private readonly rope: RopeTables,
    /** The sliding window of this layer, or undefined for a full-attention layer. */
    private readonly window: number | undefined,
  ) {}

  private weight(s: StepBuilder, t: tf.Tensor1D, name: string): BoundVector {
    return s.vector(t, `${this.name}.${name}.weight`);
  }

  /** A per-head q/k norm's weight [D], shared by every head. */
  private headNorm(s: StepBuilder, t: tf.Tensor1D, name: string): BoundVector {
    return s.vector(t, `${this.name}.${name}.weight`);
  }

  /** The projections' saved state reading `norm`'s output recomputed from `x` (see withRecomputedRmsNorm). */
  private recomputed(
    s: StepBuilder,
    norm: "input_layernorm" | "pre_feedforward_layernorm",
    x: GraphTensor,
    saved: LinearSaved[],
  ): LinearSaved[] {
    const weight = this.weight(s, this.layer.norms[norm], norm);
    const eps = this.m.dims.rmsNormEps;
    return withRecomputedRmsNorm(
      s,
      `${this.name}.${norm}`,
      x,
      weight,
      eps,
      saved,
    );
  }

  private options() {
    return {
      scale: 1 / Math.sqrt(this.m.dims.queryPreAttnScalar),
      softcap: this.m.dims.attnLogitSoftcap,
      window: this.window,
    };
  }

  forward(s: StepBuilder, x: GraphTensor): { y: GraphTensor; saved: Saved } {
    const { layer, name, dims, rope } = this;
    const { B, T, H, G, D } = dims;
    const eps = this.m.dims.rmsNormEps;
    const a = layer.self_attn;
    const n = layer.norms;
    // attention, with q and k normalised per head before RoPE
    const n1 = rmsNorm(
      s,
      `${name}.input_layernorm`,
      x,
      this.weight(s, n.input_layernorm, "input_layernorm"),
      eps,
    );
    const q = a.q_proj.stepForward(s, n1.y);
    const k = a.k_proj.stepForward(s, n1.y);
    const v = a.v_proj.stepForward(s, n1.y);
    const qNorm = {
      weight: this.headNorm(s, a.q_norm, "self_attn.q_norm").value,
      eps,
    };
    const kNorm = {
      weight: this.headNorm(s, a.k_norm, "self_attn.k_norm").value,
      eps,
    };
    const qr = ropeHeads(
      s,
      `${name}.q`,
      rowHeads(q.y, B, T, H, D),
      rope,
      qNorm,
    );
    const kr = ropeHeads(
      s,
      `${name}.k`,
      rowHeads(k.y, B, T, G, D),
      rope,
      kNorm,
    ) as Normed & { out: GraphTensor };
    const o = s.g.activation(`${name}.attn_out`, [B * T, H * D]);
    const { lse } = attention(
      s,
      `${name}.self_attn`,
      {
        q: contiguousHeads(qr.out, B, H, T, D),
        k: contiguousHeads(kr.out, B, G, T, D),
        v: rowHeads(v.y, B, T, G, D),
        o: rowHeads(o, B, T, H, D),
      },
      dims,
      this.options(),
    );
    const after = this.afterAttention(s, x, o);
    return {
      y: after.y.y,
      saved: { x, n1, q, k, v, qr, kr, o, lse, ...after },
    };
  }

  /** o_proj, its post-norm and residual, then the gelu-tanh gated MLP between its own pre and post norms. */
  private afterAttention(s: StepBuilder, x: GraphTensor, o: GraphTensor) {
    const { layer, name } = this;
    const eps = this.m.dims.rmsNormEps;
    const n = layer.norms;
    const po = layer.self_attn.o_proj.stepForward(s, o);
    const x1 = rmsNorm(
      s,
      `${name}.post_attention_layernorm`,
      po.y,
      this.weight(s, n.post_attention_layernorm, "post_attention_layernorm"),
      eps,
      { residual: x },
    );
    // gelu-tanh gated MLP between its own pre and post norms
    const n2 = rmsNorm(
      s,
      `${name}.pre_feedforward_layernorm`,
      x1.y,
      this.weight(s, n.pre_feedforward_layernorm, "pre_feedforward_layernorm"),
      eps,
    );
    const gate = layer.mlp.gate_proj.stepForward(s, n2.y);
    const up = layer.mlp.up_proj.stepForward(s, n2.y);
    const act = activate(s, `${name}.mlp.act_fn`, gate.y, "gelu_tanh", up.y);
    const down = layer.mlp.down_proj.stepForward(s, act);
    const y = rmsNorm(
      s,
      `${name}.post_feedforward_layernorm`,
      down.y,
      this.weight(
        s,
        n.post_feedforward_layernorm,
        "post_feedforward_layernorm",
      ),
      eps,
      { residual: x1.y },
    );
    return { po, x1, n2, gate, up, down, y };
  }

  /**
   * Decoding: T new tokens at the step's position; q and k normalised per head and rotated at their positions,
   * k written into the cache with v, q attending over it (this layer's window and softcap).
   */
  decode(s: StepBuilder, x: GraphTensor, cache: LayerCache): GraphTensor {
    const { layer, name, dims, rope } = this;
    const { B, T, H, G, D } = dims;
    const eps = this.m.dims.rmsNormEps;
    const a = layer.self_attn;
    const n1 = rmsNorm(
      s,
      `${name}.input_layernorm`,
      x,
      this.weight(s, layer.norms.input_layernorm, "input_layernorm"),
      eps,
    );
    const q = a.q_proj.stepForward(s, n1.y).y;
    const k = a.k_proj.stepForward(s, n1.y).y;
    const v = a.v_proj.stepForward(s, n1.y).y;
    const norm = (t: tf.Tensor1D, what: string) => ({
      weight: this.headNorm(s, t, what).value,
      eps,
    });
    const qr = ropeHeadsAt(s, `${name}.q`, rowHeads(q, B, T, H, D), rope, {
      norm: norm(a.q_norm, "self_attn.q_norm"),
    });
    ropeHeadsAt(s, `${name}.k`, rowHeads(k, B, T, G, D), rope, {
      norm: norm(a.k_norm, "self_attn.k_norm"),
      cache: { tensor: cache.k, S: cache.S },
    });
    writeCache(s, `${name}.v`, rowHeads(v, B, T, G, D), cache.v, cache.S);
    const o = s.g.activation(`${name}.attn_out`, [B * T, H * D]);
    attendCache(
      s,
      `${name}.self_attn`,
      { q: contiguousHeads(qr, B, H, T, D), o: rowHeads(o, B, T, H, D) },
      cache,
      G,
      this.options(),
    );
    return this.afterAttention(s, x, o).y.y;
  }

  backward(
    s: StepBuilder,
    sv: Saved,
    dy: GraphTensor,
    inputGrad: boolean,
  ): GraphTensor | undefined {
    const { layer, name, dims, rope } = this;
    const { B, T, H, G, D } = dims;
    const a = layer.self_attn;
    const n = layer.norms;
    // MLP, in reverse; dy becomes dx1 in place
    const dDown = rmsNormBackward(
      s,
      `${name}.post_feedforward_layernorm`,
      dy,
      sv.down.y,
      sv.y.rstd,
      this.weight(
        s,
        n.post_feedforward_layernorm,
        "post_feedforward_layernorm",
      ),
    );
    const da = layer.mlp.down_proj.stepBackward(s, sv.down.saved, dDown)!;
    const d = activateBackward(
      s,
      `${name}.mlp.act_fn`,
      da,
      sv.gate.y,
      "gelu_tanh",
      sv.up.y,
    );
    const [gate, up] = this.recomputed(
      s,
      "pre_feedforward_layernorm",
      sv.x1.y,
      [sv.gate.saved, sv.up.saved],
    );
    const dn2 = layer.mlp.gate_proj.stepBackward(s, gate!, d.dx)!;
    layer.mlp.up_proj.stepBackward(s, up!, d.dup!, { into: dn2 });
    rmsNormBackward(
      s,
      `${name}.pre_feedforward_layernorm`,
      dn2,
      sv.x1.y,
      sv.n2.rstd,
      this.weight(s, n.pre_feedforward_layernorm, "pre_feedforward_layernorm"),
      dy,
    );
    // attention, in reverse; dy becomes dx in place
    const dpo = rmsNormBackward(
      s,
      `${name}.post_attention_layernorm`,
      dy,
      sv.po.y,
      sv.x1.rstd,
      this.weight(s, n.post_attention_layernorm, "post_attention_layernorm"),
    );
    const dO = a.o_proj.stepBackward(s, sv.po.saved, dpo)!;
    const dqr = s.g.activation(`${name}.dq_rope`, [B, H, T, D]);
    const dkr = s.g.activation(`${name}.dk_rope`, [B, G, T, D]);
    const dv = s.g.activation(`${name}.dv`, [B * T, G * D]);
    attentionBackward(
      s,
      `${name}.self_attn`,
      {
        q: contiguousHeads(sv.qr.out, B, H, T, D),
        k: contiguousHeads(sv.kr.out, B, G, T, D),
        v: rowHeads(sv.v.y, B, T, G, D),
        o: rowHeads(sv.o, B, T, H, D),
        dO: rowHeads(dO, B, T, H, D),
        lse: sv.lse,
        dq: contiguousHeads(dqr, B, H, T, D),
        dk: contiguousHeads(dkr, B, G, T, D),
        dv: rowHeads(dv, B, T, G, D),
      },
      dims,
      this.options(),
    );
    const dq = s.g.activation(`${name}.dq`, [B * T, H * D]);
    const dk = s.g.activation(`${name}.dk`, [B * T, G * D]);
    const qNorm = this.headNorm(s, a.q_norm, "self_attn.q_norm");
    const kNorm = this.headNorm(s, a.k_norm, "self_attn.k_norm");
    ropeHeadsBackward(s, `${name}.q`, dqr, rowHeads(dq, B, T, H, D), rope, {
      weight: qNorm.value,
      input: rowHeads(sv.q.y, B, T, H, D),
      rstd: sv.qr.rstd!,
      grad: qNorm.grad,
    });
    ropeHeadsBackward(s, `${name}.k`, dkr, rowHeads(dk, B, T, G, D), rope, {
      weight: kNorm.value,
      input: rowHeads(sv.k.y, B, T, G, D),
      rstd: sv.kr.rstd!,
      grad: kNorm.grad,
    });
    const [q, k, v] = this.recomputed(s, "input_layernorm", sv.x, [
      sv.q.saved,
      sv.k.saved,
      sv.v.saved,
    ]);
    const dn1 = a.q_proj.stepBackward(s, q!, dq, { inputGrad });
    a.k_proj.stepBackward(s, k!, dk, { into: dn1, inputGrad });
    a.v_proj.stepBackward(s, v!, dv, { into: dn1, inputGrad });
    if (!inputGrad) return undefined;
    rmsNormBackward(
      s,
      `${name}.input_layernorm`,
      dn1!,
      sv.x,
      sv.n1.rstd,
      this.weight(s, n.input_layernorm, "input_layernorm"),
      dy,
    );
    return dy;
  }
}

/** Gemma 3's layers for the compiled step of one batch shape. */
export function gemma3Step(m: Gemma3StepModel): StepArchitecture {
  const {
    hiddenSize: C,
    numHeads: H,
    numKvHeads: G,
    headDim: D,
    rmsNormEps: eps,
  } = m.dims;
  return {
    head: m.head,
    logitSoftcap: m.dims.finalLogitSoftcap,
    layers: (s, B, T) => layers(s, B, T, T),
    decoding: {
      kvHeads: G,
      headDim: D,
      // Tables of every position the cache holds, read at the step's position.
      layers: (s, B, T, S) => layers(s, B, T, S),
    },
  };

  /** The layers of [B, T] tokens, with RoPE tables of `positions` rows. */
  function layers(s: StepBuilder, B: number, T: number, positions: number) {
    const tables = (invFreq: Float64Array, name: string): RopeTables => {
      const { cos, sin } = ropeTableValues(invFreq, 0, positions);
      return {
        cos: s.g.constant(`${name}.cos`, [positions, D], cos),
        sin: s.g.constant(`${name}.sin`, [positions, D], sin),
      };
    };
    const global = tables(m.globalInvFreq, "rope.global");
    const local = tables(m.localInvFreq, "rope.local");
    const dims = { B, T, H, G, D };
    return {
      // The √C normaliser is a float32 scalar in HF, applied after the lookup so the tied head stays unscaled.
      embedding: {
        table: m.embed_tokens,
        scale: Math.fround(Math.sqrt(C)),
      },
      blocks: m.layers.map((layer, i) => {
        const sliding = m.dims.sliding[i]!;
        return new Gemma3BlockStep(
          layer,
          `model.layers.${i}`,
          m,
          dims,
          sliding ? local : global,
          sliding ? m.dims.slidingWindow : undefined,
        );
      }),
      norm: rmsNormBlock(m.norm, "model.norm", eps),
    };
  }
}

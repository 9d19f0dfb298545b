/**
 * Llama's (and Qwen2's) decoder layer in a compiled step: its forward and its backward, side by side, as llm.c
 * writes GPT-2's. The maths is llama.ts's; here each line records dispatches instead of running tfjs ops.
 *
 *   forward                                        backward (reverse order)
 *   n1 = rmsnorm(x)                                dx  = dy + rmsnorm'(dn1)            (dy updated in place)
 *   q, k, v = n1·Wq, n1·Wk, n1·Wv                  dn1 = dq·Wqᵀ + dk·Wkᵀ + dv·Wvᵀ
 *   q', k' = rope(q), rope(k)                       dq, dk = rope⁻¹(dq'), rope⁻¹(dk')
 *   o = attention(q', k', v)                        dq', dk', dv = attention'(do)
 *   x1 = x + o·Wo                                   do  = dx1·Woᵀ,  dx1 = dy + rmsnorm'(dn2)
 *   n2 = rmsnorm(x1)                                dn2 = dgate·Wgᵀ + dup·Wuᵀ
 *   a = silu(n2·Wg) · (n2·Wu)                       dgate, dup = silu-gate'(da)
 *   y = x1 + a·Wd                                   da  = dy·Wdᵀ
 *
 * The norms' outputs n1 and n2 are not kept for the adapters' gradients: each is recomputed from x (or x1) and
 * its weight just before the projections' backward reads it, one cheap dispatch instead of [N, C] per layer held
 * through the whole step.
 *
 * Letters: B batch, T tokens, N = B·T, C hidden size, H query heads, G kv heads, D head dim, F MLP size.
 */
import type * as tf from "@tensorflow/tfjs";
import type { StepBuilder } from "../engine/builder.js";
import type { GraphTensor } from "../engine/graph.js";
import {
  activate,
  activatePacked,
  activateBackward,
} from "../engine/ops/activation.js";
import {
  attention,
  attentionBackward,
  contiguousHeads,
  rowHeads,
  type AttentionDims,
  type Heads,
} from "../engine/ops/attention.js";
import { linearForward } from "../engine/ops/linear.js";
import { FLOAT32_WEIGHT } from "../kernels/quant/inputs.js";
import { isPacked } from "../kernels/quant/packed.js";
import {
  attendCache,
  ropeIntoCache,
  type LayerCache,
} from "../engine/ops/kv_cache.js";
import {
  ropeHeads,
  ropeHeadsBackward,
  type RopeTables,
} from "../engine/ops/rope.js";
import { rmsNorm, rmsNormBackward } from "../engine/ops/norm.js";
import type { AttentionProjections, GatedMlp } from "./decoder_weights.js";
import type { Embedding } from "./embedding.js";
import {
  ropeTableValues,
  withRecomputedRmsNorm,
  type Linear,
  type LinearSaved,
} from "./layers.js";
import type { DecodeBlock, StepArchitecture, StepBlock } from "./step.js";

/** The parts of a Llama decoder layer the step reads. */
export interface LlamaStepLayer {
  input_layernorm: tf.Tensor1D;
  self_attn: AttentionProjections;
  post_attention_layernorm: tf.Tensor1D;
  mlp: GatedMlp;
}

export interface LlamaStepModel {
  dims: {
    hiddenSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    rmsNormEps: number;
  };
  embed_tokens: Embedding;
  layers: LlamaStepLayer[];
  norm: tf.Tensor1D;
  head: Embedding;
  invFreq: Float64Array;
}

interface Projected {
  y: GraphTensor;
  saved: LinearSaved;
}

interface Saved {
  x: GraphTensor;
  n1: { y: GraphTensor; rstd: GraphTensor };
  q: Projected;
  k: Projected;
  v: Projected;
  qr: GraphTensor;
  kr: GraphTensor;
  o: GraphTensor;
  lse: GraphTensor;
  x1: Projected;
  n2: { y: GraphTensor; rstd: GraphTensor };
  gate: Projected;
  up: Projected;
  down: LinearSaved;
}

class LlamaBlockStep implements StepBlock<Saved>, DecodeBlock {
  constructor(
    private readonly layer: LlamaStepLayer,
    private readonly name: string,
    private readonly eps: number,
    private readonly dims: AttentionDims,
    private readonly rope: RopeTables,
  ) {}

  /** The projections' saved state reading `norm`'s output recomputed from `x` (see withRecomputedRmsNorm). */
  private recomputed(
    s: StepBuilder,
    norm: "input_layernorm" | "post_attention_layernorm",
    x: GraphTensor,
    saved: LinearSaved[],
  ): LinearSaved[] {
    const weight = s.vector(this.layer[norm], `${this.name}.${norm}.weight`);
    return withRecomputedRmsNorm(
      s,
      `${this.name}.${norm}`,
      x,
      weight,
      this.eps,
      saved,
    );
  }

  forward(s: StepBuilder, x: GraphTensor): { y: GraphTensor; saved: Saved } {
    const { layer, name, eps, dims, rope } = this;
    const { B, T, H, G, D } = dims;
    const a = layer.self_attn;
    // attention
    const n1 = rmsNorm(
      s,
      `${name}.input_layernorm`,
      x,
      s.vector(layer.input_layernorm, `${name}.input_layernorm.weight`),
      eps,
    );
    const q = a.q_proj.stepForward(s, n1.y);
    const k = a.k_proj.stepForward(s, n1.y);
    const v = a.v_proj.stepForward(s, n1.y);
    const qr = ropeHeads(s, `${name}.q`, rowHeads(q.y, B, T, H, D), rope).out; // [B, H, T, D]
    const kr = ropeHeads(s, `${name}.k`, rowHeads(k.y, B, T, G, D), rope).out; // [B, G, T, D]
    const o = s.g.activation(`${name}.attn_out`, [B * T, H * D]);
    const { lse } = attention(
      s,
      `${name}.self_attn`,
      {
        q: contiguousHeads(qr, B, H, T, D),
        k: contiguousHeads(kr, B, G, T, D),
        v: rowHeads(v.y, B, T, G, D),
        o: rowHeads(o, B, T, H, D),
      },
      dims,
      { scale: 1 / Math.sqrt(D) },
    );
    const x1 = a.o_proj.stepForward(s, o, { residual: x });
    const { n2, gate, up, y } = this.mlp(s, x1.y);
    return {
      y: y.y,
      saved: {
        x,
        n1,
        q,
        k,
        v,
        qr,
        kr,
        o,
        lse,
        x1,
        n2,
        gate,
        up,
        down: y.saved,
      },
    };
  }

  /** The MLP's input norm. */
  private postNorm(s: StepBuilder, x1: GraphTensor) {
    const { layer, name, eps } = this;
    return rmsNorm(
      s,
      `${name}.post_attention_layernorm`,
      x1,
      s.vector(
        layer.post_attention_layernorm,
        `${name}.post_attention_layernorm.weight`,
      ),
      eps,
    );
  }

  /** The SwiGLU MLP with its norm (given, or recorded here) and residual: x1 -> y. */
  private mlp(s: StepBuilder, x1: GraphTensor, n2 = this.postNorm(s, x1)) {
    const { layer, name } = this;
    const gate = layer.mlp.gate_proj.stepForward(s, n2.y);
    const up = layer.mlp.up_proj.stepForward(s, n2.y);
    const act = activate(s, `${name}.mlp.act_fn`, gate.y, "silu", up.y);
    const y = layer.mlp.down_proj.stepForward(s, act, { residual: x1 });
    return { n2, gate, up, y };
  }

  /**
   * Decoding: the forward of T new tokens at the step's position, keys (after RoPE) and values written into the
   * layer's cache, queries attending over it. Nothing is kept for a backward.
   */
  decode(s: StepBuilder, x: GraphTensor, cache: LayerCache): GraphTensor {
    const { layer, name, eps, dims, rope } = this;
    const { B, T, H, G, D } = dims;
    const a = layer.self_attn;
    const n1 = rmsNorm(
      s,
      `${name}.input_layernorm`,
      x,
      s.vector(layer.input_layernorm, `${name}.input_layernorm.weight`),
      eps,
    );
    const qr = ropeIntoCache(
      s,
      `${name}.self_attn`,
      this.qkv(s, n1.y),
      rope,
      cache,
    );
    const o = s.g.activation(`${name}.attn_out`, [B * T, H * D]);
    attendCache(
      s,
      `${name}.self_attn`,
      { q: contiguousHeads(qr, B, H, T, D), o: rowHeads(o, B, T, H, D) },
      cache,
      G,
      { scale: 1 / Math.sqrt(D) },
    );
    const x1 = a.o_proj.stepForward(s, o, { residual: x });
    return this.decodeMlp(s, x1.y);
  }

  /**
   * Decoding's q, k and v heads of n1 [N, C]: one matmul over the three weights concatenated where they fuse (see
   * `fusedProjection`); else three projections.
   */
  private qkv(
    s: StepBuilder,
    n1: GraphTensor,
  ): { q: Heads; k: Heads; v: Heads } {
    const { B, T, H, G, D } = this.dims;
    const a = this.layer.self_attn;
    const projections = [a.q_proj, a.k_proj, a.v_proj];
    const y = fusedProjection(
      s,
      `${this.name}.self_attn.qkv_proj`,
      n1,
      projections,
    );
    if (!y) {
      const [q, k, v] = projections.map((p) => p.stepForward(s, n1).y);
      return {
        q: rowHeads(q!, B, T, H, D),
        k: rowHeads(k!, B, T, G, D),
        v: rowHeads(v!, B, T, G, D),
      };
    }
    const width = (H + 2 * G) * D;
    const heads = (n: number, column: number) =>
      rowHeads(y, B, T, n, D, { offset: column, rowStride: width });
    return { q: heads(H, 0), k: heads(G, H * D), v: heads(G, (H + G) * D) };
  }

  /** Decoding's MLP: gate and up as one projection where they fuse, else as in training. */
  private decodeMlp(s: StepBuilder, x1: GraphTensor): GraphTensor {
    const { layer, name } = this;
    const { gate_proj, up_proj, down_proj } = layer.mlp;
    const n2 = this.postNorm(s, x1);
    const gateUp = fusedProjection(s, `${name}.mlp.gate_up_proj`, n2.y, [
      gate_proj,
      up_proj,
    ]);
    if (!gateUp) return this.mlp(s, x1, n2).y.y;
    const act = activatePacked(s, `${name}.mlp.act_fn`, gateUp, "silu");
    return down_proj.stepForward(s, act, { residual: x1 }).y;
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
    const mlp = layer.mlp;
    // MLP, in reverse; dy becomes dx1 in place
    const da = mlp.down_proj.stepBackward(s, sv.down, dy)!;
    const d = activateBackward(
      s,
      `${name}.mlp.act_fn`,
      da,
      sv.gate.y,
      "silu",
      sv.up.y,
    );
    const [gate, up] = this.recomputed(s, "post_attention_layernorm", sv.x1.y, [
      sv.gate.saved,
      sv.up.saved,
    ]);
    const dn2 = mlp.gate_proj.stepBackward(s, gate!, d.dx)!;
    mlp.up_proj.stepBackward(s, up!, d.dup!, { into: dn2 });
    rmsNormBackward(
      s,
      `${name}.post_attention_layernorm`,
      dn2,
      sv.x1.y,
      sv.n2.rstd,
      s.vector(
        layer.post_attention_layernorm,
        `${name}.post_attention_layernorm.weight`,
      ),
      dy,
    );
    // attention, in reverse; dy becomes dx in place
    const dO = a.o_proj.stepBackward(s, sv.x1.saved, dy)!;
    const dqr = s.g.activation(`${name}.dq_rope`, [B, H, T, D]);
    const dkr = s.g.activation(`${name}.dk_rope`, [B, G, T, D]);
    const dv = s.g.activation(`${name}.dv`, [B * T, G * D]);
    attentionBackward(
      s,
      `${name}.self_attn`,
      {
        q: contiguousHeads(sv.qr, B, H, T, D),
        k: contiguousHeads(sv.kr, B, G, T, D),
        v: rowHeads(sv.v.y, B, T, G, D),
        o: rowHeads(sv.o, B, T, H, D),
        dO: rowHeads(dO, B, T, H, D),
        lse: sv.lse,
        dq: contiguousHeads(dqr, B, H, T, D),
        dk: contiguousHeads(dkr, B, G, T, D),
        dv: rowHeads(dv, B, T, G, D),
      },
      dims,
      { scale: 1 / Math.sqrt(D) },
    );
    const dq = s.g.activation(`${name}.dq`, [B * T, H * D]);
    const dk = s.g.activation(`${name}.dk`, [B * T, G * D]);
    ropeHeadsBackward(s, `${name}.q`, dqr, rowHeads(dq, B, T, H, D), rope);
    ropeHeadsBackward(s, `${name}.k`, dkr, rowHeads(dk, B, T, G, D), rope);
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
      s.vector(layer.input_layernorm, `${name}.input_layernorm.weight`),
      dy,
    );
    return dy;
  }
}

/**
 * x [N, C] through several out_in projections at once, over their weights (and biases) concatenated into one
 * [ΣOUT, C] (copied when the graph is compiled): for a decoding graph, where none has an adapter that applies
 * now (the base model, or a merged adapter) and every weight is f32. Undefined where they do not fuse.
 */
export function fusedProjection(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  projections: Linear[],
): GraphTensor | undefined {
  const weights = projections.map((p) => p.weight);
  const biases = projections.map((p) => p.bias);
  const fuses =
    projections.every((p) => p.layout === "out_in") &&
    weights.every((w) => !isPacked(w)) &&
    (biases.every((b) => b === null) || biases.every((b) => b !== null)) &&
    projections.every((p) => p.adapter?.stepBinding(s) === undefined);
  if (!fuses) return undefined;
  const width = projections.reduce((n, p) => n + p.outFeatures, 0);
  const C = projections[0]!.inFeatures;
  const w = s.concatenated(weights as tf.Tensor[], `${label}.weight`, [
    width,
    C,
  ]);
  const bias = biases[0]
    ? s.concatenated(biases as tf.Tensor[], `${label}.bias`, [width])
    : undefined;
  return linearForward(
    s,
    label,
    x,
    { data: w, scales: [], attrs: FLOAT32_WEIGHT, shape: [width, C] },
    "out_in",
    { bias: bias && { value: bias, grad: undefined, size: width } },
  );
}

/** The final RMSNorm as a step block: its backward makes the last block's output gradient. */
export function rmsNormBlock(
  weight: tf.Tensor1D,
  name: string,
  eps: number,
): StepBlock<{ x: GraphTensor; rstd: GraphTensor }> {
  return {
    forward(s, x) {
      const n = rmsNorm(s, name, x, s.vector(weight, `${name}.weight`), eps);
      return { y: n.y, saved: { x, rstd: n.rstd } };
    },
    backward(s, saved, dy) {
      return rmsNormBackward(
        s,
        name,
        dy,
        saved.x,
        saved.rstd,
        s.vector(weight, `${name}.weight`),
      );
    },
  };
}

/** Llama's layers for the compiled step of one batch shape, and for decoding. */
export function llamaStep(m: LlamaStepModel): StepArchitecture {
  const { numHeads: H, numKvHeads: G, headDim: D, rmsNormEps: eps } = m.dims;
  /** The layers of [B, T] tokens with RoPE tables of `positions` rows (T in training; decoding reads p + t). */
  const layers = (s: StepBuilder, B: number, T: number, positions: number) => {
    const { cos, sin } = ropeTableValues(m.invFreq, 0, positions);
    const rope = {
      cos: s.g.constant("rope.cos", [positions, D], cos),
      sin: s.g.constant("rope.sin", [positions, D], sin),
    };
    const dims = { B, T, H, G, D };
    return {
      embedding: { table: m.embed_tokens },
      blocks: m.layers.map(
        (layer, i) =>
          new LlamaBlockStep(layer, `model.layers.${i}`, eps, dims, rope),
      ),
      norm: rmsNormBlock(m.norm, "model.norm", eps),
    };
  };
  return {
    head: m.head,
    logitSoftcap: undefined,
    layers: (s, B, T) => layers(s, B, T, T),
    decoding: {
      kvHeads: G,
      headDim: D,
      layers: (s, B, T, S) => layers(s, B, T, S),
    },
  };
}

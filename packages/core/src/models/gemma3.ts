/**
 * Gemma 3 text (gemma-3-270m and the text tower of larger Gemma 3), as in HF's modeling_gemma3.py:
 * embeddings scaled by √C, RMSNorm with (1 + w), q/k norms, GQA, query_pre_attn_scalar scaling, four norms
 * per layer, gelu-tanh MLP, and sliding-window layers with their own RoPE base between full-attention layers.
 *
 * Letters: B batch, T tokens, C hidden size, H query heads, G kv heads, D head dim, F MLP size.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import { gemma3Step } from "./gemma3_step.js";
import type { StepArchitecture } from "./step.js";
import { CausalLM, type KVCache, type ModelDims } from "./causal_lm.js";
import type { ConfigReader } from "./config.js";
import type { Embedding } from "./embedding.js";
import {
  applyRope,
  attention,
  causalMask,
  activation,
  Linear,
  mergeHeads,
  rmsNorm,
  ropeInverseFrequencies,
  ropeTables,
  splitHeads,
  type RopeScaling,
} from "./layers.js";
import { ropeScaling } from "./rope.js";
import {
  loadAttentionProjections,
  loadEmbeddingAndHead,
  loadGatedMlp,
  type AttentionProjections,
  type GatedMlp,
} from "./decoder_weights.js";
import {
  loadWeights,
  type WeightOptions,
  type WeightSource,
} from "./weights.js";

export interface Gemma3Config extends ModelDims {
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  ropeLocalBase: number;
  slidingWindow: number;
  /** Per layer: true for sliding-window attention, false for full attention. */
  sliding: boolean[];
  queryPreAttnScalar: number;
  finalLogitSoftcap: number | undefined;
  attnLogitSoftcap: number | undefined;
}

export function gemma3Config(cfg: ConfigReader): Gemma3Config {
  const C = cfg.int("hidden_size");
  const H = cfg.int("num_attention_heads");
  const L = cfg.int("num_hidden_layers");
  cfg.oneOf("hidden_activation", ["gelu_pytorch_tanh"], "gelu_pytorch_tanh");
  for (const unsupported of ["attention_bias", "use_bidirectional_attention"]) {
    if (cfg.bool(unsupported, false)) {
      throw new ConfigError(
        `${cfg.source}: Gemma 3 with "${unsupported}": true is not supported.`,
      );
    }
  }
  return {
    modelType: "gemma3_text",
    vocabSize: cfg.int("vocab_size"),
    hiddenSize: C,
    numLayers: L,
    numHeads: H,
    numKvHeads: cfg.int("num_key_value_heads", H),
    headDim: cfg.int("head_dim", 256),
    maxPositions: cfg.int("max_position_embeddings", 131072),
    tieWordEmbeddings: cfg.bool("tie_word_embeddings", true),
    bosTokenId: cfg.optionalTokenId("bos_token_id"),
    eosTokenIds: cfg.eosTokenIds(),
    intermediateSize: cfg.int("intermediate_size"),
    rmsNormEps: cfg.number("rms_norm_eps", 1e-6),
    ropeTheta: cfg.number("rope_theta", 1_000_000),
    ropeScaling: ropeScaling(cfg),
    ropeLocalBase: cfg.number("rope_local_base_freq", 10_000),
    slidingWindow: cfg.int("sliding_window", 4096),
    sliding: layerKinds(cfg, L),
    queryPreAttnScalar: cfg.number("query_pre_attn_scalar", 256),
    finalLogitSoftcap: cfg.optionalNumber("final_logit_softcapping"),
    attnLogitSoftcap: cfg.optionalNumber("attn_logit_softcapping"),
  };
}

/** `layer_types` when present; otherwise every `sliding_window_pattern`-th layer is global. */
function layerKinds(cfg: ConfigReader, L: number): boolean[] {
  const types = cfg.raw["layer_types"];
  if (Array.isArray(types)) {
    if (types.length !== L)
      throw new ConfigError(
        `${cfg.source}: "layer_types" has ${types.length} entries for ${L} layers.`,
      );
    return types.map((t, i) => {
      if (t === "sliding_attention") return true;
      if (t === "full_attention") return false;
      throw new ConfigError(
        `${cfg.source}: "layer_types"[${i}] is ${JSON.stringify(t)}; expected "sliding_attention" or "full_attention".`,
      );
    });
  }
  const pattern = cfg.int("sliding_window_pattern", 6);
  return Array.from({ length: L }, (_, i) => (i + 1) % pattern !== 0);
}

interface Attention extends AttentionProjections {
  /** (1 + w) scales of the per-head q and k norms: [D] */
  q_norm: tf.Tensor1D;
  k_norm: tf.Tensor1D;
}

/** The four norms of a layer, each already (1 + w). */
interface Norms {
  input_layernorm: tf.Tensor1D;
  post_attention_layernorm: tf.Tensor1D;
  pre_feedforward_layernorm: tf.Tensor1D;
  post_feedforward_layernorm: tf.Tensor1D;
}

interface LayerContext {
  rope: { cos: tf.Tensor2D; sin: tf.Tensor2D };
  mask: tf.Tensor2D | null;
}

class Gemma3DecoderLayer {
  constructor(
    readonly self_attn: Attention,
    readonly mlp: GatedMlp,
    readonly norms: Norms,
  ) {}

  /** x: [B, T, C] -> [B, T, C] */
  forward(
    x: tf.Tensor3D,
    c: Gemma3Config,
    ctx: LayerContext,
    i: number,
    cache?: KVCache,
  ): tf.Tensor3D {
    const a = this.self_attn;
    const eps = c.rmsNormEps;
    // attention, with q and k normalised per head before RoPE
    const h = rmsNorm(x, this.norms.input_layernorm, eps);
    const q = applyRope(
      rmsNorm(
        splitHeads(a.q_proj.forward(h), c.numHeads),
        a.q_norm,
        eps,
      ) as tf.Tensor4D,
      ctx.rope.cos,
      ctx.rope.sin,
    );
    let k = applyRope(
      rmsNorm(
        splitHeads(a.k_proj.forward(h), c.numKvHeads),
        a.k_norm,
        eps,
      ) as tf.Tensor4D,
      ctx.rope.cos,
      ctx.rope.sin,
    );
    let v = splitHeads(a.v_proj.forward(h), c.numKvHeads);
    if (cache) ({ k, v } = cache.append(i, k, v));
    const y = attention(
      q,
      k,
      v,
      ctx.mask,
      1 / Math.sqrt(c.queryPreAttnScalar),
      c.attnLogitSoftcap,
    );
    x = x.add(
      rmsNorm(
        a.o_proj.forward(mergeHeads(y)),
        this.norms.post_attention_layernorm,
        eps,
      ),
    );
    // gelu-tanh gated MLP between its own pre and post norms
    const m = rmsNorm(x, this.norms.pre_feedforward_layernorm, eps);
    const gated = activation(
      this.mlp.gate_proj.forward(m),
      "gelu_tanh",
      this.mlp.up_proj.forward(m),
    );
    return x.add(
      rmsNorm(
        this.mlp.down_proj.forward(gated),
        this.norms.post_feedforward_layernorm,
        eps,
      ),
    ) as tf.Tensor3D;
  }

  linears(): Linear[] {
    const a = this.self_attn;
    return [
      a.q_proj,
      a.k_proj,
      a.v_proj,
      a.o_proj,
      this.mlp.gate_proj,
      this.mlp.up_proj,
      this.mlp.down_proj,
    ];
  }
}

export class Gemma3ForCausalLM extends CausalLM {
  private readonly globalInvFreq: Float64Array;
  private readonly localInvFreq: Float64Array;
  protected override readonly logitSoftcap: number | undefined;

  constructor(
    readonly dims: Gemma3Config,
    readonly embed_tokens: Embedding,
    readonly layers: Gemma3DecoderLayer[],
    readonly norm: tf.Tensor1D,
    protected readonly head: Embedding,
  ) {
    super();
    this.globalInvFreq = ropeInverseFrequencies(
      dims.headDim,
      dims.ropeTheta,
      dims.ropeScaling,
    );
    this.localInvFreq = ropeInverseFrequencies(
      dims.headDim,
      dims.ropeLocalBase,
      { type: "default" },
    );
    this.logitSoftcap = dims.finalLogitSoftcap;
  }

  hiddenStates(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D {
    return tf.tidy(() => {
      const T = ids.shape[1];
      const past = cache?.length ?? 0;
      // The √C normaliser is a float32 scalar in HF, applied after the lookup so the tied head stays unscaled.
      let x = this.embed_tokens
        .lookup(ids)
        .mul(Math.fround(Math.sqrt(this.dims.hiddenSize))) as tf.Tensor3D;
      const full: LayerContext = {
        rope: ropeTables(this.globalInvFreq, past, T),
        mask: causalMask(T, past),
      };
      const local: LayerContext = {
        rope: ropeTables(this.localInvFreq, past, T),
        mask: causalMask(T, past, this.dims.slidingWindow),
      };
      this.layers.forEach((layer, i) => {
        const context = this.dims.sliding[i] ? local : full;
        // A scope per block: only what the backward pass saved outlives it.
        x = tf.tidy(() => layer.forward(x, this.dims, context, i, cache));
      });
      return rmsNorm(x, this.norm, this.dims.rmsNormEps) as tf.Tensor3D;
    });
  }

  linears(): Linear[] {
    return this.layers.flatMap((l) => l.linears());
  }

  override stepArchitecture(): StepArchitecture {
    const { dims, embed_tokens, layers, norm, head } = this;
    const { globalInvFreq, localInvFreq } = this;
    return gemma3Step({
      dims,
      embed_tokens,
      layers,
      norm,
      head,
      globalInvFreq,
      localInvFreq,
    });
  }
}

export function loadGemma3(
  config: Gemma3Config,
  source: WeightSource,
  maxBindingBytes: number,
  options: WeightOptions = {},
): Promise<Gemma3ForCausalLM> {
  return loadWeights(
    source,
    maxBindingBytes,
    async (w) => {
      const { hiddenSize: C, headDim: D } = config;
      const onePlus = (name: string, size: number) =>
        w.tensor1dMapped(
          name,
          size,
          (v) => 1 + v,
          (v) => v - 1,
        );
      const layers: Gemma3DecoderLayer[] = [];
      for (let i = 0; i < config.numLayers; i++) {
        const p = `model.layers.${i}`;
        layers.push(
          new Gemma3DecoderLayer(
            {
              ...(await loadAttentionProjections(w, p, config, {
                qkv: false,
                o: false,
              })),
              q_norm: await onePlus(`${p}.self_attn.q_norm.weight`, D),
              k_norm: await onePlus(`${p}.self_attn.k_norm.weight`, D),
            },
            await loadGatedMlp(w, p, C, config.intermediateSize, false),
            {
              input_layernorm: await onePlus(`${p}.input_layernorm.weight`, C),
              post_attention_layernorm: await onePlus(
                `${p}.post_attention_layernorm.weight`,
                C,
              ),
              pre_feedforward_layernorm: await onePlus(
                `${p}.pre_feedforward_layernorm.weight`,
                C,
              ),
              post_feedforward_layernorm: await onePlus(
                `${p}.post_feedforward_layernorm.weight`,
                C,
              ),
            },
          ),
        );
      }
      const { embed, head } = await loadEmbeddingAndHead(w, config);
      return new Gemma3ForCausalLM(
        config,
        embed,
        layers,
        await onePlus("model.norm.weight", C),
        head,
      );
    },
    options,
    "model.",
  );
}

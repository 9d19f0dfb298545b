/**
 * Llama (SmolLM/SmolLM2, TinyLlama, Llama 3.x), as in HF's modeling_llama.py: RMSNorm pre-norm blocks, RoPE
 * (default, linear or llama3 scaling), grouped-query attention, SwiGLU MLP, optionally tied LM head.
 * Qwen2 is the same maths with q/k/v biases (see qwen2.ts).
 *
 * Letters: B batch, T tokens, C hidden size, H query heads, G kv heads, D head dim, F MLP size.
 */
import * as tf from "@tensorflow/tfjs";
import { CausalLM, type KVCache, type ModelDims } from "./causal_lm.js";
import type { ConfigReader } from "./config.js";
import type { Embedding } from "./embedding.js";
import {
  applyRope,
  attention,
  causalMask,
  Linear,
  mergeHeads,
  rmsNorm,
  ropeInverseFrequencies,
  ropeTables,
  activation,
  splitHeads,
  type RopeScaling,
} from "./layers.js";
import { ropeScaling } from "./rope.js";
import { llamaStep } from "./llama_step.js";
import type { StepArchitecture } from "./step.js";
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

export interface LlamaConfig extends ModelDims {
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Which projections carry a bias: Llama's attention_bias covers q, k, v and o; Qwen2 has q, k, v only. */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
}

export function llamaConfig(
  cfg: ConfigReader,
  modelType = "llama",
): LlamaConfig {
  const C = cfg.int("hidden_size");
  const H = cfg.int("num_attention_heads");
  cfg.oneOf("hidden_act", ["silu"], "silu");
  const attentionBias = cfg.bool("attention_bias", false);
  return {
    modelType,
    vocabSize: cfg.int("vocab_size"),
    hiddenSize: C,
    numLayers: cfg.int("num_hidden_layers"),
    numHeads: H,
    numKvHeads: cfg.int("num_key_value_heads", H),
    headDim: cfg.int("head_dim", C / H),
    maxPositions: cfg.int("max_position_embeddings", 2048),
    tieWordEmbeddings: cfg.bool("tie_word_embeddings", false),
    bosTokenId: cfg.optionalTokenId("bos_token_id"),
    eosTokenIds: cfg.eosTokenIds(),
    intermediateSize: cfg.int("intermediate_size"),
    rmsNormEps: cfg.number("rms_norm_eps", 1e-6),
    ropeTheta: cfg.number("rope_theta", 10000),
    ropeScaling: ropeScaling(cfg),
    qkvBias: attentionBias,
    oBias: attentionBias,
    mlpBias: cfg.bool("mlp_bias", false),
  };
}

class LlamaDecoderLayer {
  constructor(
    readonly input_layernorm: tf.Tensor1D,
    readonly self_attn: AttentionProjections,
    readonly post_attention_layernorm: tf.Tensor1D,
    readonly mlp: GatedMlp,
  ) {}

  /** x: [B, T, C] -> [B, T, C] */
  forward(
    x: tf.Tensor3D,
    c: LlamaConfig,
    rope: { cos: tf.Tensor2D; sin: tf.Tensor2D },
    mask: tf.Tensor2D | null,
    i: number,
    cache?: KVCache,
  ): tf.Tensor3D {
    const a = this.self_attn;
    // attention
    const h = rmsNorm(x, this.input_layernorm, c.rmsNormEps);
    const q = applyRope(
      splitHeads(a.q_proj.forward(h), c.numHeads),
      rope.cos,
      rope.sin,
    ); // [B, H, T, D]
    let k = applyRope(
      splitHeads(a.k_proj.forward(h), c.numKvHeads),
      rope.cos,
      rope.sin,
    ); // [B, G, T, D]
    let v = splitHeads(a.v_proj.forward(h), c.numKvHeads);
    if (cache) ({ k, v } = cache.append(i, k, v));
    const y = attention(q, k, v, mask, 1 / Math.sqrt(c.headDim));
    x = x.add(a.o_proj.forward(mergeHeads(y)));
    // SwiGLU MLP
    const m = rmsNorm(x, this.post_attention_layernorm, c.rmsNormEps);
    const gated = activation(
      this.mlp.gate_proj.forward(m),
      "silu",
      this.mlp.up_proj.forward(m),
    );
    return x.add(this.mlp.down_proj.forward(gated)) as tf.Tensor3D;
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

export class LlamaForCausalLM extends CausalLM {
  private readonly invFreq: Float64Array;

  constructor(
    readonly dims: LlamaConfig,
    readonly embed_tokens: Embedding,
    readonly layers: LlamaDecoderLayer[],
    readonly norm: tf.Tensor1D,
    protected readonly head: Embedding,
  ) {
    super();
    this.invFreq = ropeInverseFrequencies(
      dims.headDim,
      dims.ropeTheta,
      dims.ropeScaling,
    );
  }

  hiddenStates(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D {
    return tf.tidy(() => {
      const T = ids.shape[1];
      const past = cache?.length ?? 0;
      let x = this.embed_tokens.lookup(ids) as tf.Tensor3D; // [B, T, C]
      const rope = ropeTables(this.invFreq, past, T);
      const mask = causalMask(T, past);
      this.layers.forEach((layer, i) => {
        // A scope per block: only what the backward pass saved outlives it.
        x = tf.tidy(() => layer.forward(x, this.dims, rope, mask, i, cache));
      });
      return rmsNorm(x, this.norm, this.dims.rmsNormEps) as tf.Tensor3D;
    });
  }

  linears(): Linear[] {
    return this.layers.flatMap((l) => l.linears());
  }

  override stepArchitecture(): StepArchitecture {
    const { dims, embed_tokens, layers, norm, head, invFreq } = this;
    return llamaStep({ dims, embed_tokens, layers, norm, head, invFreq });
  }
}

export function loadLlama(
  config: LlamaConfig,
  source: WeightSource,
  maxBindingBytes: number,
  options: WeightOptions = {},
): Promise<LlamaForCausalLM> {
  return loadWeights(
    source,
    maxBindingBytes,
    async (w) => {
      const C = config.hiddenSize;
      const layers: LlamaDecoderLayer[] = [];
      for (let i = 0; i < config.numLayers; i++) {
        const p = `model.layers.${i}`;
        layers.push(
          new LlamaDecoderLayer(
            await w.tensor1d(`${p}.input_layernorm.weight`, C),
            await loadAttentionProjections(w, p, config, {
              qkv: config.qkvBias,
              o: config.oBias,
            }),
            await w.tensor1d(`${p}.post_attention_layernorm.weight`, C),
            await loadGatedMlp(
              w,
              p,
              C,
              config.intermediateSize,
              config.mlpBias,
            ),
          ),
        );
      }
      const { embed, head } = await loadEmbeddingAndHead(w, config);
      return new LlamaForCausalLM(
        config,
        embed,
        layers,
        await w.tensor1d("model.norm.weight", C),
        head,
      );
    },
    options,
    "model.",
  );
}

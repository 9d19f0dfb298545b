/**
 * The models the benchmarks train: the real configs of SmolLM2-135M and GPT-2 (copied from their Hugging Face
 * config.json, as in test/fixtures/golden/real/) with deterministic random weights, so no download is needed.
 */
import {
  LoraModel,
  PretrainedModel,
  resolveConfig,
  type TrainBatch,
  type WeightOptions,
} from "@webtune/core";
import { randomWeightSource } from "../../test/helpers/random_weights.js";

export type ModelName =
  "smollm2-135m" | "gpt2" | "smollm2-360m" | "qwen2.5-0.5b" | "gemma-3-270m";

/** HF config.json fields of each benchmarked model (the fields webtune reads). */
export const CONFIGS: Record<ModelName, Record<string, unknown>> = {
  "smollm2-135m": {
    model_type: "llama",
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    rope_scaling: null,
    tie_word_embeddings: true,
    attention_bias: false,
    hidden_act: "silu",
    vocab_size: 49152,
    bos_token_id: 0,
    eos_token_id: 0,
  },
  "smollm2-360m": {
    model_type: "llama",
    hidden_size: 960,
    intermediate_size: 2560,
    num_hidden_layers: 32,
    num_attention_heads: 15,
    num_key_value_heads: 5,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    rope_scaling: null,
    tie_word_embeddings: true,
    attention_bias: false,
    hidden_act: "silu",
    vocab_size: 49152,
    bos_token_id: 0,
    eos_token_id: 0,
  },
  "qwen2.5-0.5b": {
    model_type: "qwen2",
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    max_window_layers: 24,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    sliding_window: 32768,
    use_sliding_window: false,
    tie_word_embeddings: true,
    hidden_act: "silu",
    vocab_size: 151936,
    bos_token_id: 151643,
    eos_token_id: 151643,
  },
  "gemma-3-270m": {
    model_type: "gemma3_text",
    hidden_size: 640,
    intermediate_size: 2048,
    num_hidden_layers: 18,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    head_dim: 256,
    hidden_activation: "gelu_pytorch_tanh",
    layer_types: Array.from({ length: 18 }, (_, i) =>
      i % 6 === 5 ? "full_attention" : "sliding_attention",
    ),
    sliding_window: 512,
    max_position_embeddings: 32768,
    query_pre_attn_scalar: 256,
    rms_norm_eps: 1e-6,
    rope_local_base_freq: 10000,
    rope_theta: 1000000,
    rope_scaling: null,
    attn_logit_softcapping: null,
    final_logit_softcapping: null,
    attention_bias: false,
    vocab_size: 262144,
    bos_token_id: 2,
    eos_token_id: 1,
    pad_token_id: 0,
  },
  gpt2: {
    model_type: "gpt2",
    n_embd: 768,
    n_layer: 12,
    n_head: 12,
    n_positions: 1024,
    n_inner: null,
    layer_norm_epsilon: 1e-5,
    activation_function: "gelu_new",
    vocab_size: 50257,
    bos_token_id: 50256,
    eos_token_id: 50256,
  },
};

/** PEFT's default LoRA targets for each architecture (peft.utils.constants). */
export const DEFAULT_TARGETS: Record<ModelName, string[]> = {
  "smollm2-135m": ["q_proj", "v_proj"],
  "smollm2-360m": ["q_proj", "v_proj"],
  "qwen2.5-0.5b": ["q_proj", "v_proj"],
  "gemma-3-270m": ["q_proj", "v_proj"],
  gpt2: ["c_attn"],
};

/** The config with its layer count cut to `layers` (smaller runs keep the real widths). */
export function configWithLayers(
  name: ModelName,
  layers?: number,
): Record<string, unknown> {
  const config = { ...CONFIGS[name] };
  if (layers === undefined) return config;
  config[name === "gpt2" ? "n_layer" : "num_hidden_layers"] = layers;
  const types = config["layer_types"];
  if (Array.isArray(types)) config["layer_types"] = types.slice(0, layers);
  return config;
}

export interface ModelDims {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  /** Projections in the MLP: 2 in GPT-2 (c_fc, c_proj), 3 in Llama (gate, up, down). */
  mlpMatrices: 2 | 3;
  vocab: number;
}

export function dimsOf(config: Record<string, unknown>): ModelDims {
  const n = (k: string) => config[k] as number;
  if (config["model_type"] === "gpt2")
    return {
      layers: n("n_layer"),
      hidden: n("n_embd"),
      heads: n("n_head"),
      kvHeads: n("n_head"),
      headDim: n("n_embd") / n("n_head"),
      intermediate: 4 * n("n_embd"),
      mlpMatrices: 2,
      vocab: n("vocab_size"),
    };
  const heads = n("num_attention_heads");
  return {
    layers: n("num_hidden_layers"),
    hidden: n("hidden_size"),
    heads,
    kvHeads: n("num_key_value_heads") ?? heads,
    headDim: n("hidden_size") / heads,
    intermediate: n("intermediate_size"),
    mlpMatrices: 3,
    vocab: n("vocab_size"),
  };
}

/** A model of the config with random weights, loaded as webtune loads a checkpoint. */
export async function randomModel(
  config: Record<string, unknown>,
  bindingLimit: number,
  options: WeightOptions = {},
): Promise<PretrainedModel> {
  const description = `${String(config["model_type"])} config, random weights`;
  const lm = await resolveConfig(config, `${description}/config.json`).load(
    randomWeightSource(config, description),
    bindingLimit,
    options,
  );
  return new PretrainedModel(lm, undefined, config, {}, description);
}

export interface LoraSettings {
  r: number;
  alpha: number;
  targetModules: string[];
}

export function withLora(
  model: PretrainedModel,
  lora: LoraSettings,
): LoraModel {
  const peft = new LoraModel(model);
  peft.addAdapter("default", {
    r: lora.r,
    loraAlpha: lora.alpha,
    loraDropout: 0,
    targetModules: lora.targetModules,
  });
  return peft;
}

/** Random ids (an LCG, seeded) with labels = ids: every position is a loss token. */
export function randomBatch(
  batch: number,
  seq: number,
  vocab: number,
  seed: number,
): TrainBatch {
  let s = seed >>> 0 || 1;
  const inputIds = Array.from({ length: batch }, () =>
    Array.from({ length: seq }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % vocab;
    }),
  );
  return { inputIds, labels: inputIds.map((row) => [...row]) };
}

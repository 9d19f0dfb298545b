/**
 * GPT-2 (and distilgpt2), as in Radford et al. 2019 and HF's modeling_gpt2.py: learned positions, pre-LayerNorm
 * blocks, fused c_attn, gelu_new MLP, tied LM head. Conv1D weights are [in, out] and are read in place.
 *
 * Letters: B batch, T tokens, C hidden size (n_embd), H heads, D = C / H.
 */
import * as tf from "@tensorflow/tfjs";
import { CausalLM, type KVCache, type ModelDims } from "./causal_lm.js";
import { ConfigReader } from "./config.js";
import type { Embedding } from "./embedding.js";
import {
  attention,
  causalMask,
  activation,
  layerNorm,
  Linear,
  mergeHeads,
  splitHeads,
} from "./layers.js";
import {
  loadWeights,
  type WeightOptions,
  type WeightSource,
} from "./weights.js";
import { ConfigError } from "../errors.js";
import { gpt2Step } from "./gpt2_step.js";
import type { StepArchitecture } from "./step.js";

export interface Gpt2Config extends ModelDims {
  layerNormEps: number;
  innerSize: number;
}

export function gpt2Config(cfg: ConfigReader): Gpt2Config {
  const C = cfg.int("n_embd");
  const H = cfg.int("n_head");
  // Both names are the tanh approximation of GELU.
  cfg.oneOf(
    "activation_function",
    ["gelu_new", "gelu_pytorch_tanh"],
    "gelu_new",
  );
  if (cfg.bool("scale_attn_by_inverse_layer_idx", false)) {
    throw new ConfigError(
      `${cfg.source}: "scale_attn_by_inverse_layer_idx": true is not supported.`,
    );
  }
  return {
    modelType: "gpt2",
    vocabSize: cfg.int("vocab_size"),
    hiddenSize: C,
    numLayers: cfg.int("n_layer"),
    numHeads: H,
    numKvHeads: H,
    headDim: C / H,
    maxPositions: cfg.int("n_positions", 1024),
    tieWordEmbeddings: true,
    bosTokenId: cfg.optionalTokenId("bos_token_id"),
    eosTokenIds: cfg.eosTokenIds(),
    layerNormEps: cfg.number("layer_norm_epsilon", 1e-5),
    innerSize: cfg.optionalNumber("n_inner") ?? 4 * C,
  };
}

interface Norm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

class Gpt2Block {
  constructor(
    readonly ln_1: Norm,
    readonly c_attn: Linear,
    readonly c_proj: Linear,
    readonly ln_2: Norm,
    readonly c_fc: Linear,
    readonly mlp_c_proj: Linear,
  ) {}

  /** x: [B, T, C] -> [B, T, C] */
  forward(
    x: tf.Tensor3D,
    config: Gpt2Config,
    mask: tf.Tensor2D | null,
    i: number,
    cache?: KVCache,
  ): tf.Tensor3D {
    const C = config.hiddenSize;
    const eps = config.layerNormEps;
    // attention: q, k, v from one fused projection
    const h = layerNorm(x, this.ln_1.weight, this.ln_1.bias, eps);
    const [q, k, v] = tf.split(this.c_attn.forward(h), [C, C, C], 2);
    let kh = splitHeads(k!, config.numHeads);
    let vh = splitHeads(v!, config.numHeads);
    if (cache) ({ k: kh, v: vh } = cache.append(i, kh, vh));
    const y = attention(
      splitHeads(q!, config.numHeads),
      kh,
      vh,
      mask,
      1 / Math.sqrt(config.headDim),
    );
    x = x.add(this.c_proj.forward(mergeHeads(y)));
    // MLP
    const m = layerNorm(x, this.ln_2.weight, this.ln_2.bias, eps);
    return x.add(
      this.mlp_c_proj.forward(activation(this.c_fc.forward(m), "gelu_tanh")),
    ) as tf.Tensor3D;
  }

  linears(): Linear[] {
    return [this.c_attn, this.c_proj, this.c_fc, this.mlp_c_proj];
  }
}

export class Gpt2LMHeadModel extends CausalLM {
  protected readonly head: Embedding;

  constructor(
    readonly dims: Gpt2Config,
    readonly wte: Embedding,
    readonly wpe: tf.Tensor2D,
    readonly h: Gpt2Block[],
    readonly ln_f: Norm,
  ) {
    super();
    this.head = wte;
  }

  hiddenStates(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D {
    return tf.tidy(() => {
      const T = ids.shape[1];
      const past = cache?.length ?? 0;
      const positions = tf.range(past, past + T, 1, "int32");
      let x = this.wte
        .lookup(ids)
        .add(tf.gather(this.wpe, positions)) as tf.Tensor3D; // [B, T, C]
      const mask = causalMask(T, past);
      this.h.forEach((block, i) => {
        // A scope per block: only what the backward pass saved outlives it.
        x = tf.tidy(() => block.forward(x, this.dims, mask, i, cache));
      });
      return layerNorm(
        x,
        this.ln_f.weight,
        this.ln_f.bias,
        this.dims.layerNormEps,
      ) as tf.Tensor3D;
    });
  }

  linears(): Linear[] {
    return this.h.flatMap((b) => b.linears());
  }

  override stepArchitecture(): StepArchitecture {
    const { dims, wte, wpe, h, ln_f } = this;
    return gpt2Step({ dims, wte, wpe, h, ln_f });
  }
}

/**
 * Loads GPT-2 weights by GPT2LMHeadModel's names; checkpoints saved from GPT2Model (the hub's gpt2, without the
 * "transformer." prefix) read the same, so module names and adapters are PEFT's either way.
 */
export function loadGpt2(
  config: Gpt2Config,
  source: WeightSource,
  maxBindingBytes: number,
  options: WeightOptions = {},
): Promise<Gpt2LMHeadModel> {
  return loadWeights(
    source,
    maxBindingBytes,
    async (w) => {
      w.ignore("lm_head.weight"); // some checkpoints store the tied head again
      const C = config.hiddenSize;
      const norm = async (key: string): Promise<Norm> => ({
        weight: await w.tensor1d(`${key}.weight`, C),
        bias: await w.tensor1d(`${key}.bias`, C),
      });
      const linear = (module: string, inF: number, outF: number) =>
        w.linear(module, "in_out", inF, outF, true);
      const blocks: Gpt2Block[] = [];
      for (let i = 0; i < config.numLayers; i++) {
        const p = `transformer.h.${i}`;
        blocks.push(
          new Gpt2Block(
            await norm(`${p}.ln_1`),
            await linear(`${p}.attn.c_attn`, C, 3 * C),
            await linear(`${p}.attn.c_proj`, C, C),
            await norm(`${p}.ln_2`),
            await linear(`${p}.mlp.c_fc`, C, config.innerSize),
            await linear(`${p}.mlp.c_proj`, config.innerSize, C),
          ),
        );
      }
      return new Gpt2LMHeadModel(
        config,
        await w.embedding("transformer.wte.weight", config.vocabSize, C),
        await w.tensor2d("transformer.wpe.weight", [config.maxPositions, C]),
        blocks,
        await norm("transformer.ln_f"),
      );
    },
    options,
    "transformer.",
  );
}

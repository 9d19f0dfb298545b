/**
 * Loading the modules that Llama, Qwen2 and Gemma 3 checkpoints name identically: the attention and gated-MLP
 * projections of `model.layers.{i}`, and the embedding with its (tied or separate) LM head.
 */
import type { ModelDims } from "./causal_lm.js";
import type { Embedding } from "./embedding.js";
import type { Linear } from "./layers.js";
import type { WeightLoader } from "./weights.js";

export interface AttentionProjections {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
}

export interface GatedMlp {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;
}

/** `${prefix}.self_attn.{q,k,v,o}_proj`, nn.Linear layout. */
export async function loadAttentionProjections(
  w: WeightLoader,
  prefix: string,
  d: ModelDims,
  bias: { qkv: boolean; o: boolean },
): Promise<AttentionProjections> {
  const { hiddenSize: C, headDim: D, numHeads: H, numKvHeads: G } = d;
  const lin = (name: string, inF: number, outF: number, b: boolean) =>
    w.linear(`${prefix}.self_attn.${name}`, "out_in", inF, outF, b);
  return {
    q_proj: await lin("q_proj", C, H * D, bias.qkv),
    k_proj: await lin("k_proj", C, G * D, bias.qkv),
    v_proj: await lin("v_proj", C, G * D, bias.qkv),
    o_proj: await lin("o_proj", H * D, C, bias.o),
  };
}

/** `${prefix}.mlp.{gate,up,down}_proj`, nn.Linear layout. */
export async function loadGatedMlp(
  w: WeightLoader,
  prefix: string,
  hiddenSize: number,
  intermediateSize: number,
  bias: boolean,
): Promise<GatedMlp> {
  const lin = (name: string, inF: number, outF: number) =>
    w.linear(`${prefix}.mlp.${name}`, "out_in", inF, outF, bias);
  return {
    gate_proj: await lin("gate_proj", hiddenSize, intermediateSize),
    up_proj: await lin("up_proj", hiddenSize, intermediateSize),
    down_proj: await lin("down_proj", intermediateSize, hiddenSize),
  };
}

/** `model.embed_tokens`, and `lm_head` unless the config ties it to the embedding. */
export async function loadEmbeddingAndHead(
  w: WeightLoader,
  d: ModelDims,
): Promise<{ embed: Embedding; head: Embedding }> {
  const embed = await w.embedding(
    "model.embed_tokens.weight",
    d.vocabSize,
    d.hiddenSize,
  );
  if (d.tieWordEmbeddings) {
    w.ignore("lm_head.weight"); // some checkpoints store the tied head again
    return { embed, head: embed };
  }
  return {
    embed,
    head: await w.embedding("lm_head.weight", d.vocabSize, d.hiddenSize),
  };
}

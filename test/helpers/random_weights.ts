/**
 * Deterministic "random" checkpoints for real model configs, so golden logits need no committed weights.
 * The same generator is written in test/fixtures/golden/make_golden.py (see its README):
 *
 *   u = lowbias32(lowbias32(fnv1a32(name)) ^ i) / 2^32 · 2 − 1,   value = f32(offset + scale · u)
 *
 * with (offset, scale) = (0, 0.02) for biases, (1, 0.1) for norm weights ((0, 0.1) in Gemma 3, which adds 1
 * itself), and (0, 0.04) for everything else.
 */
import { lowbias32 } from "../../packages/core/src/kernels/lora_linear/dropout.js";
import type { WeightSource } from "../../packages/core/src/models/weights.js";

export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function initOf(
  name: string,
  modelType: string,
): { offset: number; scale: number } {
  if (name.endsWith(".bias")) return { offset: 0, scale: 0.02 };
  if (/(norm|ln_1|ln_2|ln_f)\.weight$/.test(name))
    return { offset: modelType === "gemma3_text" ? 0 : 1, scale: 0.1 };
  return { offset: 0, scale: 0.04 };
}

export function generateTensor(
  name: string,
  size: number,
  modelType: string,
): Float32Array {
  const { offset, scale } = initOf(name, modelType);
  const seed = lowbias32(fnv1a32(name));
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const u = (lowbias32((seed ^ i) >>> 0) / 4294967296) * 2 - 1;
    out[i] = offset + scale * u;
  }
  return out;
}

type Shapes = Record<string, number[]>;

/** The checkpoint keys and shapes of each architecture, as transformers' save_pretrained writes them. */
export function checkpointShapes(config: Record<string, unknown>): Shapes {
  const n = (k: string, fallback?: number) => (config[k] ?? fallback) as number;
  const shapes: Shapes = {};
  const type = config["model_type"] as string;
  if (type === "gpt2") {
    const C = n("n_embd");
    const inner = (config["n_inner"] as number | null) ?? 4 * C;
    shapes["transformer.wte.weight"] = [n("vocab_size"), C];
    shapes["transformer.wpe.weight"] = [n("n_positions"), C];
    for (let i = 0; i < n("n_layer"); i++) {
      const p = `transformer.h.${i}`;
      for (const ln of ["ln_1", "ln_2"]) {
        shapes[`${p}.${ln}.weight`] = [C];
        shapes[`${p}.${ln}.bias`] = [C];
      }
      const conv: [string, number, number][] = [
        ["attn.c_attn", C, 3 * C],
        ["attn.c_proj", C, C],
        ["mlp.c_fc", C, inner],
        ["mlp.c_proj", inner, C],
      ];
      for (const [m, i_, o] of conv) {
        shapes[`${p}.${m}.weight`] = [i_, o];
        shapes[`${p}.${m}.bias`] = [o];
      }
    }
    shapes["transformer.ln_f.weight"] = [C];
    shapes["transformer.ln_f.bias"] = [C];
    return shapes;
  }
  const C = n("hidden_size");
  const H = n("num_attention_heads");
  const G = n("num_key_value_heads", H);
  const D = n("head_dim", type === "gemma3_text" ? 256 : C / H);
  const F = n("intermediate_size");
  const V = n("vocab_size");
  shapes["model.embed_tokens.weight"] = [V, C];
  for (let i = 0; i < n("num_hidden_layers"); i++) {
    const p = `model.layers.${i}`;
    const proj: [string, number, number][] = [
      ["self_attn.q_proj", C, H * D],
      ["self_attn.k_proj", C, G * D],
      ["self_attn.v_proj", C, G * D],
      ["self_attn.o_proj", H * D, C],
      ["mlp.gate_proj", C, F],
      ["mlp.up_proj", C, F],
      ["mlp.down_proj", F, C],
    ];
    for (const [m, inF, outF] of proj) {
      shapes[`${p}.${m}.weight`] = [outF, inF];
      const qkv =
        m === "self_attn.q_proj" ||
        m === "self_attn.k_proj" ||
        m === "self_attn.v_proj";
      if (
        (type === "qwen2" && qkv) ||
        (type === "llama" &&
          config["attention_bias"] === true &&
          m.startsWith("self_attn"))
      ) {
        shapes[`${p}.${m}.bias`] = [outF];
      }
    }
    const norms = ["input_layernorm", "post_attention_layernorm"];
    if (type === "gemma3_text") {
      norms.push(
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
        "self_attn.q_norm",
        "self_attn.k_norm",
      );
    }
    for (const norm of norms)
      shapes[`${p}.${norm}.weight`] = [norm.startsWith("self_attn") ? D : C];
  }
  shapes["model.norm.weight"] = [C];
  const tied =
    (config["tie_word_embeddings"] as boolean | undefined) ??
    type === "gemma3_text";
  if (!tied) shapes["lm_head.weight"] = [V, C];
  return shapes;
}

/** A WeightSource that generates each tensor when it is read. */
export function randomWeightSource(
  config: Record<string, unknown>,
  description: string,
): WeightSource {
  const shapes = checkpointShapes(config);
  const modelType = config["model_type"] as string;
  return {
    description,
    names: () => Object.keys(shapes),
    shape: async (name) => shapes[name],
    read: async (name) => {
      const shape = shapes[name];
      if (!shape) throw new Error(`${description}: no tensor ${name}`);
      return generateTensor(
        name,
        shape.reduce((a, b) => a * b, 1),
        modelType,
      );
    },
  };
}

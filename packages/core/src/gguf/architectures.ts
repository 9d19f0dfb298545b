/**
 * What llama.cpp calls each architecture's tensors and hyperparameters, and how its tensors differ from
 * Hugging Face's: the conversions of llama.cpp's convert_hf_to_gguf.py (conversion/llama.py, qwen.py, gpt2.py,
 * gemma.py at llama.cpp 80fb11a, the release node-llama-cpp 3.21.1 runs), for the four architectures webtune loads.
 *
 * - llama: q_proj / k_proj rows are permuted per head, because llama.cpp rotates interleaved pairs where HF
 *   rotates halves (rotate_half); Llama 3 rope scaling becomes a `rope_freqs` tensor of per-pair factors.
 * - qwen2: llama.cpp rotates halves (NeoX) as HF does, so nothing is permuted; q/k/v carry biases.
 * - gpt2: Conv1D weights are [in, out] and are transposed to [out, in]; c_attn stays fused as attn_qkv.
 * - gemma3: RMSNorm weights are stored as 1 + w, as Gemma3RMSNorm applies them.
 */
import { ConfigError, FormatError } from "../errors.js";
import type { ModelDims } from "../models/causal_lm.js";
import { ConfigReader } from "../models/config.js";
import { ropeInverseFrequencies } from "../models/layers.js";
import { ropeScaling } from "../models/rope.js";
import { f32, str, u32, type GgufValue } from "./format.js";

/** One converted tensor, row-major like torch. */
export interface ConvertedTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

export interface GgufArchitecture {
  /** `general.architecture`, and the prefix of the hyperparameter keys. */
  readonly name: string;
  /** `{arch}.*` keys from config.json. */
  hyperparameters(
    cfg: ConfigReader,
    dims: ModelDims,
  ): Record<string, GgufValue>;
  /** The GGUF name of an HF module ("model.layers.0.self_attn.q_proj" -> "blk.0.attn_q"). */
  moduleName(module: string): string;
  /** An HF checkpoint tensor as llama.cpp reads it. */
  convert(
    name: string,
    shape: number[],
    values: Float32Array,
    dims: ModelDims,
  ): ConvertedTensor;
  /** A LoRA B [out, r] of `module` with its rows in the order the converted base weight has them. */
  loraB(
    module: string,
    B: Float32Array,
    shape: number[],
    dims: ModelDims,
  ): Float32Array;
  /** Tensors llama.cpp needs that the checkpoint does not have. */
  extraTensors(cfg: ConfigReader, dims: ModelDims): ConvertedTensor[];
}

/** The architecture of a model type, or a ConfigError naming the ones GGUF export supports. */
export function ggufArchitecture(modelType: string): GgufArchitecture {
  const arch = ARCHITECTURES[modelType];
  if (!arch)
    throw new ConfigError(
      `GGUF export supports ${Object.keys(ARCHITECTURES).join(", ")}; this model is "${modelType}".`,
    );
  return arch;
}

/** HF module name (under model.layers.N) -> llama.cpp's, for the decoder architectures. */
const DECODER_LAYER: Record<string, string> = {
  input_layernorm: "attn_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "self_attn.q_norm": "attn_q_norm",
  "self_attn.k_norm": "attn_k_norm",
  post_attention_layernorm: "ffn_norm",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

/** Gemma 3 has four norms per layer: the ffn_norm comes before the MLP, and two more after. */
const GEMMA3_LAYER: Record<string, string> = {
  ...DECODER_LAYER,
  post_attention_layernorm: "post_attention_norm",
  pre_feedforward_layernorm: "ffn_norm",
  post_feedforward_layernorm: "post_ffw_norm",
};

const DECODER_TOP: Record<string, string> = {
  "model.embed_tokens": "token_embd",
  "model.norm": "output_norm",
  lm_head: "output",
};

const GPT2_LAYER: Record<string, string> = {
  ln_1: "attn_norm",
  "attn.c_attn": "attn_qkv",
  "attn.c_proj": "attn_output",
  ln_2: "ffn_norm",
  "mlp.c_fc": "ffn_up",
  "mlp.c_proj": "ffn_down",
};

const GPT2_TOP: Record<string, string> = {
  "transformer.wte": "token_embd",
  "transformer.wpe": "position_embd",
  "transformer.ln_f": "output_norm",
};

function renamer(
  top: Record<string, string>,
  layerPrefix: RegExp,
  layer: Record<string, string>,
): (module: string) => string {
  return (module) => {
    const direct = top[module];
    if (direct) return direct;
    const m = layerPrefix.exec(module);
    const inner = m && layer[m[2]!];
    if (!m || !inner)
      throw new FormatError(
        `GGUF export: the tensor "${module}" has no llama.cpp name; webtune does not know where llama.cpp reads it.`,
      );
    return `blk.${m[1]}.${inner}`;
  };
}

/** "x.weight" -> ["x", "weight"]. */
function splitName(name: string): [string, string] {
  const dot = name.lastIndexOf(".");
  return [name.slice(0, dot), name.slice(dot + 1)];
}

/**
 * convert_hf_to_gguf's `LlamaModel.permute`: within each head, row i of the first half and row i of the second
 * half become rows 2i and 2i + 1, so that llama.cpp's interleaved rotation pairs what HF's rotate_half pairs.
 */
export function permuteHeadRows(
  values: Float32Array,
  rows: number,
  heads: number,
): Float32Array {
  const cols = values.length / rows;
  const d = rows / heads;
  const half = d / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * d + j * half + i) * cols;
        out.set(values.subarray(from, from + cols), (h * d + 2 * i + j) * cols);
      }
  return out;
}

function transpose(
  values: Float32Array,
  rows: number,
  cols: number,
): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  return out;
}

/** The keys every decoder shares (conversion/base.py `TextModel.set_gguf_parameters`). */
function decoderHyperparameters(
  arch: string,
  cfg: ConfigReader,
  dims: ModelDims,
): Record<string, GgufValue> {
  return {
    [`${arch}.context_length`]: u32(dims.maxPositions),
    [`${arch}.embedding_length`]: u32(dims.hiddenSize),
    [`${arch}.block_count`]: u32(dims.numLayers),
    [`${arch}.feed_forward_length`]: u32(cfg.int("intermediate_size")),
    [`${arch}.attention.head_count`]: u32(dims.numHeads),
    [`${arch}.attention.head_count_kv`]: u32(dims.numKvHeads),
    [`${arch}.attention.key_length`]: u32(dims.headDim),
    [`${arch}.attention.value_length`]: u32(dims.headDim),
    [`${arch}.rope.freq_base`]: f32(cfg.number("rope_theta", 10_000)),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f32(
      cfg.number("rms_norm_eps", 1e-6),
    ),
  };
}

/** rope_scaling as llama.cpp's keys: "linear" has keys, Llama 3's is a tensor (see llamaRopeFreqs). */
function ropeScalingKeys(
  arch: string,
  cfg: ConfigReader,
): Record<string, GgufValue> {
  const scaling = ropeScaling(cfg);
  if (scaling.type !== "linear") return {};
  return {
    [`${arch}.rope.scaling.type`]: str("linear"),
    [`${arch}.rope.scaling.factor`]: f32(scaling.factor),
  };
}

/**
 * Llama 3 rope scaling as llama.cpp's `rope_freqs`: per rotation pair, the factor the base frequency is divided
 * by (conversion/llama.py `generate_extra_tensors`), here from webtune's own scaled frequencies.
 */
function llamaRopeFreqs(cfg: ConfigReader, dims: ModelDims): ConvertedTensor[] {
  const scaling = ropeScaling(cfg);
  if (scaling.type !== "llama3") return [];
  const base = cfg.number("rope_theta", 10_000);
  const plain = ropeInverseFrequencies(dims.headDim, base, { type: "default" });
  const scaled = ropeInverseFrequencies(dims.headDim, base, scaling);
  const values = Float32Array.from(plain, (f, i) => f / scaled[i]!);
  return [{ name: "rope_freqs.weight", shape: [values.length], values }];
}

const unchanged = (
  name: string,
  shape: number[],
  values: Float32Array,
): ConvertedTensor => ({ name, shape, values });

function decoder(
  arch: string,
  layer: Record<string, string>,
  options: {
    permuteQK: boolean;
    normShift: number;
    hyperparameters?: (
      cfg: ConfigReader,
      dims: ModelDims,
    ) => Record<string, GgufValue>;
  },
): GgufArchitecture {
  const moduleName = renamer(
    DECODER_TOP,
    /^model\.layers\.(\d+)\.(.+)$/,
    layer,
  );
  const headsOf = (module: string, dims: ModelDims): number | undefined => {
    if (!options.permuteQK) return undefined;
    if (module.endsWith("self_attn.q_proj")) return dims.numHeads;
    if (module.endsWith("self_attn.k_proj")) return dims.numKvHeads;
    return undefined;
  };
  return {
    name: arch,
    moduleName,
    hyperparameters: (cfg, dims) => ({
      ...decoderHyperparameters(arch, cfg, dims),
      [`${arch}.vocab_size`]: u32(dims.vocabSize),
      [`${arch}.rope.dimension_count`]: u32(dims.headDim),
      ...ropeScalingKeys(arch, cfg),
      ...options.hyperparameters?.(cfg, dims),
    }),
    convert(name, shape, values, dims) {
      const [module, kind] = splitName(name);
      const gguf = `${moduleName(module)}.${kind}`;
      const heads = headsOf(module, dims);
      if (heads)
        return unchanged(
          gguf,
          shape,
          permuteHeadRows(values, shape[0]!, heads),
        );
      if (options.normShift && module.endsWith("norm") && kind === "weight")
        return unchanged(
          gguf,
          shape,
          values.map((v) => v + options.normShift),
        );
      return unchanged(gguf, shape, values);
    },
    loraB(module, B, shape, dims) {
      const heads = headsOf(module, dims);
      return heads ? permuteHeadRows(B, shape[0]!, heads) : B;
    },
    extraTensors: (cfg, dims) =>
      options.permuteQK ? llamaRopeFreqs(cfg, dims) : [],
  };
}

/** Gemma 3's sliding-window layout as llama.cpp's: every `pattern`-th layer attends globally. */
function gemma3Hyperparameters(
  cfg: ConfigReader,
  dims: ModelDims,
): Record<string, GgufValue> {
  const scalar = cfg.number("query_pre_attn_scalar", dims.headDim);
  if (scalar !== dims.headDim)
    throw new ConfigError(
      `${cfg.source}: query_pre_attn_scalar is ${scalar}; llama.cpp's gemma3 scales attention by 1/√head_dim (${dims.headDim}), so this model has no GGUF form.`,
    );
  const pattern = slidingPattern(cfg, dims.numLayers);
  const softcap = cfg.optionalNumber("final_logit_softcapping");
  return {
    "gemma3.attention.layer_norm_rms_epsilon": f32(
      cfg.number("rms_norm_eps", 1e-6),
    ),
    "gemma3.rope.freq_base": f32(cfg.number("rope_theta", 1_000_000)),
    "gemma3.rope.freq_base_swa": f32(
      cfg.number("rope_local_base_freq", 10_000),
    ),
    ...(pattern === 1
      ? {}
      : {
          "gemma3.attention.sliding_window": u32(
            cfg.int("sliding_window", 4096),
          ),
          "gemma3.attention.sliding_window_pattern": u32(pattern),
        }),
    ...(softcap ? { "gemma3.final_logit_softcapping": f32(softcap) } : {}),
  };
}

/** The period of full-attention layers: layer i is sliding unless (i + 1) is a multiple of it. */
function slidingPattern(cfg: ConfigReader, layers: number): number {
  const types = cfg.raw["layer_types"];
  if (!Array.isArray(types)) return cfg.int("sliding_window_pattern", 6);
  const full = types.map((t) => t === "full_attention");
  const period = full.indexOf(true) + 1 || layers + 1;
  if (full.every((f, i) => f === ((i + 1) % period === 0))) return period;
  throw new ConfigError(
    `${cfg.source}: layer_types ${JSON.stringify(types)} is not a repeating pattern of sliding layers then one full layer, which is the only layout llama.cpp's gemma3 has.`,
  );
}

const gpt2ModuleName = renamer(
  GPT2_TOP,
  /^transformer\.h\.(\d+)\.(.+)$/,
  GPT2_LAYER,
);
const CONV1D = /\.(c_attn|c_proj|c_fc)$/;

const GPT2: GgufArchitecture = {
  name: "gpt2",
  moduleName: gpt2ModuleName,
  hyperparameters: (cfg, dims) => ({
    "gpt2.context_length": u32(dims.maxPositions),
    "gpt2.embedding_length": u32(dims.hiddenSize),
    "gpt2.block_count": u32(dims.numLayers),
    "gpt2.feed_forward_length": u32(
      cfg.raw["n_inner"] ? cfg.int("n_inner") : 4 * dims.hiddenSize,
    ),
    "gpt2.attention.head_count": u32(dims.numHeads),
    "gpt2.attention.layer_norm_epsilon": f32(
      cfg.number("layer_norm_epsilon", 1e-5),
    ),
  }),
  convert(name, shape, values) {
    const [module, kind] = splitName(name);
    const gguf = `${gpt2ModuleName(module)}.${kind}`;
    if (kind === "weight" && CONV1D.test(module)) {
      const [rows, cols] = shape as [number, number];
      return unchanged(gguf, [cols, rows], transpose(values, rows, cols));
    }
    return unchanged(gguf, shape, values);
  },
  // PEFT keeps A [r, in] and B [out, r] for Conv1D too (fan_in_fan_out transposes the product, not the factors),
  // which is already the layout of the transposed weight.
  loraB: (_module, B) => B,
  extraTensors: () => [],
};

const ARCHITECTURES: Record<string, GgufArchitecture> = {
  llama: decoder("llama", DECODER_LAYER, { permuteQK: true, normShift: 0 }),
  qwen2: decoder("qwen2", DECODER_LAYER, { permuteQK: false, normShift: 0 }),
  gpt2: GPT2,
  gemma3_text: decoder("gemma3", GEMMA3_LAYER, {
    permuteQK: false,
    normShift: 1,
    hyperparameters: gemma3Hyperparameters,
  }),
};

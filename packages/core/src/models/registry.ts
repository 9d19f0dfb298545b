/**
 * The supported architectures, keyed by HF's `model_type`: how to read each one's config.json and how to load
 * its weights. An unsupported type is rejected from config.json alone, before any weight is fetched.
 */
import { ConfigError, FormatError } from "../errors.js";
import type { CausalLM, ModelDims } from "./causal_lm.js";
import type { RopeScaling } from "./layers.js";
import { ConfigReader, type HfConfig } from "./config.js";
import { gemma3Config, loadGemma3, type Gemma3Config } from "./gemma3.js";
import { gpt2Config, loadGpt2, type Gpt2Config } from "./gpt2.js";
import { llamaConfig, loadLlama, type LlamaConfig } from "./llama.js";
import { loadQwen2, qwen2Config } from "./qwen2.js";
import type { WeightOptions, WeightSource } from "./weights.js";

interface Architecture<C extends ModelDims> {
  parse(cfg: ConfigReader): C;
  load(
    config: C,
    source: WeightSource,
    maxBindingBytes: number,
    options?: WeightOptions,
  ): Promise<CausalLM>;
}

const ARCHITECTURES = {
  gpt2: {
    parse: gpt2Config,
    load: loadGpt2,
  } satisfies Architecture<Gpt2Config>,
  llama: {
    parse: (c: ConfigReader) => llamaConfig(c),
    load: loadLlama,
  } satisfies Architecture<LlamaConfig>,
  qwen2: {
    parse: qwen2Config,
    load: loadQwen2,
  } satisfies Architecture<LlamaConfig>,
  gemma3_text: {
    parse: gemma3Config,
    load: loadGemma3,
  } satisfies Architecture<Gemma3Config>,
};

export type ModelType = keyof typeof ARCHITECTURES;
export const SUPPORTED_MODEL_TYPES = Object.keys(ARCHITECTURES) as ModelType[];

/** A parsed config.json, ready to load weights for. */
export interface ResolvedConfig {
  modelType: ModelType;
  dims: ModelDims;
  /** `trainable`: every weight a trainable variable, for full fine-tuning. */
  load(
    source: WeightSource,
    maxBindingBytes: number,
    options?: WeightOptions,
  ): Promise<CausalLM>;
}

/**
 * rope_scaling values that would make RoPE's frequencies Inf or NaN (a factor of 0, llama3's low_freq_factor at or
 * above high_freq_factor): refused by name, as other fields are when they are read.
 */
function checkRopeScaling(dims: ModelDims, source: string): void {
  const scaling = (dims as { ropeScaling?: RopeScaling }).ropeScaling;
  if (!scaling || scaling.type === "default") return;
  const bad = (problem: string) =>
    new ConfigError(
      `${source}: "rope_scaling" has ${problem}; RoPE's frequencies would be Inf or NaN and so would the loss. ` +
        `Fix the value in the file (the model's original config.json has it).`,
    );
  if (!(scaling.factor > 0))
    throw bad(`factor ${scaling.factor}, which must be above 0`);
  if (scaling.type !== "llama3") return;
  const { lowFreqFactor: low, highFreqFactor: high } = scaling;
  if (!(scaling.originalMaxPositions > 0))
    throw bad(
      `original_max_position_embeddings ${scaling.originalMaxPositions}, which must be above 0`,
    );
  if (!(low > 0 && high > low))
    throw bad(
      `low_freq_factor ${low} and high_freq_factor ${high}; they must satisfy 0 < low_freq_factor < high_freq_factor`,
    );
}

/** Reads config.json; throws ConfigError for an unsupported model_type or an invalid field. */
export function resolveConfig(raw: HfConfig, source: string): ResolvedConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new FormatError(
      `${source} is not a JSON object of fields ({"model_type": ..., ...}); it holds ${Array.isArray(raw) ? "an array" : raw === null ? "null" : `a ${typeof raw}`}. ` +
        `Download the file again.`,
    );
  const modelType = raw["model_type"];
  // An own key only: "__proto__" or "toString" is an unsupported type, not a member of Object.
  if (
    typeof modelType !== "string" ||
    !Object.hasOwn(ARCHITECTURES, modelType)
  ) {
    throw new ConfigError(
      `${source}: model_type ${JSON.stringify(modelType)} is not supported. webtune supports ` +
        `${SUPPORTED_MODEL_TYPES.join(", ")}.`,
    );
  }
  const arch = ARCHITECTURES[modelType as ModelType] as Architecture<ModelDims>;
  const dims = arch.parse(new ConfigReader(raw, source));
  checkRopeScaling(dims, source);
  return {
    modelType: modelType as ModelType,
    dims,
    load: (weights, maxBindingBytes, options) =>
      arch.load(dims, weights, maxBindingBytes, options),
  };
}

/**
 * The supported architectures, keyed by HF's `model_type`: how to read each one's config.json and how to load
 * its weights. An unsupported type is rejected from config.json alone, before any weight is fetched.
 */
import { ConfigError } from "../errors.js";
import type { CausalLM, ModelDims } from "./causal_lm.js";
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

/** Reads config.json; throws ConfigError for an unsupported model_type or an invalid field. */
export function resolveConfig(raw: HfConfig, source: string): ResolvedConfig {
  const modelType = raw["model_type"];
  if (typeof modelType !== "string" || !(modelType in ARCHITECTURES)) {
    throw new ConfigError(
      `${source}: model_type ${JSON.stringify(modelType)} is not supported. webtune supports ` +
        `${SUPPORTED_MODEL_TYPES.join(", ")}.`,
    );
  }
  const arch = ARCHITECTURES[modelType as ModelType] as Architecture<ModelDims>;
  const dims = arch.parse(new ConfigReader(raw, source));
  return {
    modelType: modelType as ModelType,
    dims,
    load: (weights, maxBindingBytes, options) =>
      arch.load(dims, weights, maxBindingBytes, options),
  };
}

/**
 * Qwen2 / Qwen2.5, as in HF's modeling_qwen2.py: Llama's maths with biases on q, k and v (not o).
 */
import { ConfigError } from "../errors.js";
import type { ConfigReader } from "./config.js";
import { llamaConfig, loadLlama, type LlamaConfig } from "./llama.js";

export function qwen2Config(cfg: ConfigReader): LlamaConfig {
  if (cfg.bool("use_sliding_window", false)) {
    throw new ConfigError(
      `${cfg.source}: Qwen2 with "use_sliding_window": true is not supported.`,
    );
  }
  return {
    ...llamaConfig(cfg, "qwen2"),
    qkvBias: true,
    oBias: false,
    mlpBias: false,
  };
}

export const loadQwen2 = loadLlama;

/**
 * adapter_config.json as PEFT writes and reads it: every LoraConfig field, keys sorted, 2-space indent
 * (PeftConfigMixin.save_pretrained). Reading accepts files from older and newer PEFT versions: fields webtune
 * does not know are ignored with a warning; known fields it cannot honour are errors.
 */
import { ConfigError, FormatError } from "../errors.js";
import { LORA_DEFAULTS, loraConfig, type LoraConfig } from "./config.js";

/**
 * The fields a current PEFT LoraConfig writes that webtune does not model, with the values webtune writes
 * (PEFT's defaults). A file where one of them holds anything else asks for a feature webtune lacks.
 */
export const PEFT_PASSIVE_FIELDS: Record<string, unknown> = {
  alora_invocation_tokens: null,
  arrow_config: null,
  auto_mapping: null,
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  inference_mode: true,
  layer_replication: null,
  loftq_config: {},
  lora_bias: false,
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: "megatron.core",
  peft_type: "LORA",
  /** The PEFT release whose format this follows (test/fixtures/peft/PEFT_FORMAT.md). */
  peft_version: "0.19.0",
  qalora_group_size: 16,
  revision: null,
  target_parameters: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_qalora: false,
};

/** Passive fields whose value does not change the maths, so any value is accepted. */
const HARMLESS = new Set([
  "auto_mapping",
  "inference_mode",
  "revision",
  "peft_type",
  "megatron_core",
  "qalora_group_size",
  "peft_version",
]);

/** The JSON object PEFT would save for this config (keys sorted, as PEFT sorts them). */
export function peftConfigJson(config: LoraConfig): Record<string, unknown> {
  const all: Record<string, unknown> = { ...PEFT_PASSIVE_FIELDS, ...config };
  // PEFT keeps list targets as a set and saves it as a list; sort for a stable file.
  if (Array.isArray(all["target_modules"]))
    all["target_modules"] = [...(all["target_modules"] as string[])].sort();
  if (Array.isArray(all["exclude_modules"]))
    all["exclude_modules"] = [...(all["exclude_modules"] as string[])].sort();
  if (
    Array.isArray(all["layers_pattern"]) &&
    (all["layers_pattern"] as string[]).length === 1
  ) {
    all["layers_pattern"] = (all["layers_pattern"] as string[])[0];
  }
  return Object.fromEntries(
    Object.keys(all)
      .sort()
      .map((k) => [k, all[k]]),
  );
}

/** A LoraConfig from a PEFT adapter_config.json, warning about fields this version ignores. */
export function configFromPeftJson(
  raw: Record<string, unknown>,
  source: string,
): LoraConfig {
  const known: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    // Own keys only: a file's "constructor" or "__proto__" is an unknown field, not a member of Object.
    if (Object.hasOwn(LORA_DEFAULTS, key)) {
      known[key] = value;
    } else if (Object.hasOwn(PEFT_PASSIVE_FIELDS, key) || HARMLESS.has(key)) {
      if (!HARMLESS.has(key) && !isDefault(value, PEFT_PASSIVE_FIELDS[key])) {
        throw new FormatError(
          `${source}/adapter_config.json: "${key}" is ${JSON.stringify(value)}, a PEFT feature webtune does not support ` +
            `(expected ${JSON.stringify(PEFT_PASSIVE_FIELDS[key])}).`,
        );
      }
    } else {
      ignored.push(key);
    }
  }
  if (ignored.length > 0) {
    console.warn(
      `webtune: ${source}/adapter_config.json: ignoring field(s) this version does not know: ${ignored.join(", ")}.`,
    );
  }
  // PEFT writes null for "not set" where webtune's config has empty maps.
  for (const key of ["rank_pattern", "alpha_pattern"] as const)
    if (known[key] === null) known[key] = {};
  if (
    known["target_modules"] === null ||
    known["target_modules"] === undefined
  ) {
    throw new FormatError(
      `${source}/adapter_config.json has no target_modules.`,
    );
  }
  try {
    return loraConfig(known as unknown as LoraConfig);
  } catch (error) {
    if (error instanceof ConfigError)
      throw new FormatError(`${source}/adapter_config.json: ${error.message}`, {
        cause: error,
      });
    throw error;
  }
}

function isDefault(value: unknown, fallback: unknown): boolean {
  if (value === null || value === undefined)
    return (
      fallback === null ||
      fallback === false ||
      (typeof fallback === "object" && fallback !== null)
    );
  return (
    JSON.stringify(value) === JSON.stringify(fallback) ||
    (typeof value === "object" &&
      value !== null &&
      Object.keys(value).length === 0)
  );
}

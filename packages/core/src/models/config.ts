/**
 * Reading Hugging Face config.json fields with defaults and clear errors. Architectures call these; nothing
 * downstream sees the raw JSON.
 */
import { ConfigError } from "../errors.js";

export type HfConfig = Record<string, unknown>;

/**
 * Number fields whose value must be above zero, and why: at zero or below the model loads and its loss is NaN (or
 * every logit is), which would only show up steps into training.
 */
const POSITIVE: ReadonlyMap<string, string> = new Map([
  ["rms_norm_eps", "a norm's epsilon keeps 1/sqrt(mean(x²) + eps) finite"],
  ["layer_norm_epsilon", "a norm's epsilon keeps 1/sqrt(var(x) + eps) finite"],
  ["layer_norm_eps", "a norm's epsilon keeps 1/sqrt(var(x) + eps) finite"],
  ["rope_theta", "RoPE's frequencies are rope_theta^(-2i/D)"],
  ["rope_local_base_freq", "RoPE's frequencies are base^(-2i/D)"],
  [
    "query_pre_attn_scalar",
    "attention scores are scaled by 1/sqrt(query_pre_attn_scalar)",
  ],
  ["final_logit_softcapping", "logits are capped as c·tanh(x/c)"],
  ["attn_logit_softcapping", "attention scores are capped as c·tanh(x/c)"],
  ["n_inner", "it is the MLP's width"],
]);

/** Reads fields of one config.json, naming it in errors. */
export class ConfigReader {
  constructor(
    readonly raw: HfConfig,
    /** For messages, e.g. "HuggingFaceTB/SmolLM2-135M/config.json". */
    readonly source: string,
  ) {}

  /** A positive integer field, or `fallback` when absent. */
  int(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      throw new ConfigError(
        `${this.source}: "${key}" must be a positive integer, got ${shown(v)}.`,
      );
    }
    return v;
  }

  /** A finite number field, or `fallback` when absent; above zero where zero would make the loss NaN. */
  number(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ConfigError(
        `${this.source}: "${key}" must be a finite number, got ${shown(v)}.`,
      );
    }
    const why = POSITIVE.get(key);
    if (why !== undefined && !(v > 0)) {
      throw new ConfigError(
        `${this.source}: "${key}" is ${v}, but it must be above 0 (${why}); with ${v} the model's loss would be ` +
          `NaN. Fix the value in the file (the model's original config.json has it).`,
      );
    }
    return v;
  }

  /** A number field that may be absent or null. */
  optionalNumber(key: string): number | undefined {
    const v = this.raw[key];
    return v === undefined || v === null ? undefined : this.number(key);
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== "boolean")
      throw new ConfigError(
        `${this.source}: "${key}" must be true or false, got ${shown(v)}.`,
      );
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== "string")
      throw new ConfigError(
        `${this.source}: "${key}" must be a string, got ${shown(v)}.`,
      );
    return v;
  }

  /** Values a field may take; anything else is an error listing them. */
  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.string(key, fallback);
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(
        `${this.source}: "${key}" is "${v}"; webtune supports ${allowed.map((a) => `"${a}"`).join(", ")}.`,
      );
    }
    return v as T;
  }

  /** eos_token_id as a list (HF allows an int or a list). */
  eosTokenIds(): number[] {
    const v = this.raw["eos_token_id"];
    if (v === undefined || v === null) return [];
    return (Array.isArray(v) ? v : [v]).filter(
      (x): x is number => typeof x === "number",
    );
  }

  /** A token id (0 allowed), or undefined when absent or null. */
  optionalTokenId(key: string): number | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new ConfigError(
        `${this.source}: "${key}" must be a token id (an integer >= 0), got ${shown(v)}.`,
      );
    }
    return v;
  }
}

/** A value from config.json for a message: its JSON, cut short. */
function shown(v: unknown): string {
  if (typeof v === "number") return String(v); // JSON has no Infinity (a file's 1e999 parses to it)
  let text: string;
  try {
    text = String(JSON.stringify(v));
  } catch {
    text = typeof v; // nested too deep to print
  }
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

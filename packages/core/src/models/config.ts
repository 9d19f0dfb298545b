/**
 * Reading Hugging Face config.json fields with defaults and clear errors. Architectures call these; nothing
 * downstream sees the raw JSON.
 */
import { ConfigError } from "../errors.js";

export type HfConfig = Record<string, unknown>;

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
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ConfigError(
        `${this.source}: "${key}" must be a positive integer, got ${JSON.stringify(v)}.`,
      );
    }
    return v;
  }

  /** A finite number field, or `fallback` when absent. */
  number(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ConfigError(
        `${this.source}: "${key}" must be a number, got ${JSON.stringify(v)}.`,
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
        `${this.source}: "${key}" must be true or false, got ${JSON.stringify(v)}.`,
      );
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== "string")
      throw new ConfigError(
        `${this.source}: "${key}" must be a string, got ${JSON.stringify(v)}.`,
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
        `${this.source}: "${key}" must be a token id (an integer >= 0), got ${JSON.stringify(v)}.`,
      );
    }
    return v;
  }
}

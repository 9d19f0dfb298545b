/** Parsing `rope_scaling` from config.json into the forms `ropeInverseFrequencies` implements. */
import { ConfigError } from "../errors.js";
import type { ConfigReader } from "./config.js";
import type { RopeScaling } from "./layers.js";

const SUPPORTED = ["default", "linear", "llama3"];

export function ropeScaling(
  cfg: ConfigReader,
  key = "rope_scaling",
): RopeScaling {
  const raw = cfg.raw[key] as Record<string, unknown> | null | undefined;
  if (raw === undefined || raw === null) return { type: "default" };
  const type = (raw["rope_type"] ?? raw["type"]) as string | undefined;
  const num = (field: string, fallback?: number): number => {
    const v = raw[field] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ConfigError(
        `${cfg.source}: "${key}.${field}" must be a number for rope type "${type}", got ${JSON.stringify(v)}.`,
      );
    }
    return v;
  };
  switch (type) {
    case "default":
      return { type: "default" };
    case "linear":
      return { type: "linear", factor: num("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: num("factor"),
        lowFreqFactor: num("low_freq_factor"),
        highFreqFactor: num("high_freq_factor"),
        originalMaxPositions: num("original_max_position_embeddings"),
      };
    default:
      throw new ConfigError(
        `${cfg.source}: rope scaling type ${JSON.stringify(type)} is not supported; webtune supports ${SUPPORTED.join(", ")}.`,
      );
  }
}

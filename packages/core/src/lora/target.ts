/**
 * Which modules an adapter targets, with PEFT's matching rules (tuners_utils.check_target_module_exists and
 * get_pattern_key), and the rank and alpha each targeted module gets.
 */
import { ConfigError } from "../errors.js";
import type { LoraConfig } from "./config.js";
import { fullMatch, layerIndexAfter, matchesPatternKey } from "./patterns.js";

/** A list matches a name exactly or as a dotted suffix; a string matches as a full regex. */
function matches(
  field: string,
  spec: string[] | string,
  name: string,
): boolean {
  if (typeof spec === "string") return fullMatch(field, spec, name);
  return spec.some((t) => name === t || name.endsWith(`.${t}`));
}

/** The layer index in a module name, after one of `patterns` ("layers", "h"), or after any segment. */
function layerIndex(
  name: string,
  patterns: string[] | null,
): number | undefined {
  const candidates = patterns && patterns.length > 0 ? patterns : ["[^.]*"];
  for (const p of candidates) {
    const index = layerIndexAfter("layers_pattern", p, name);
    if (index !== undefined) return index;
  }
  return undefined;
}

export function isTargeted(config: LoraConfig, name: string): boolean {
  if (
    config.exclude_modules &&
    matches("exclude_modules", config.exclude_modules, name)
  )
    return false;
  const found =
    config.target_modules === "all-linear" ||
    matches("target_modules", config.target_modules, name);
  if (!found || config.layers_to_transform === null) return found;
  const index = layerIndex(name, config.layers_pattern);
  return index !== undefined && config.layers_to_transform.includes(index);
}

/** PEFT's get_pattern_key: the first pattern key that matches the end of the name after a dot. */
function patternKey(
  field: string,
  keys: string[],
  name: string,
): string | undefined {
  return keys.find((key) => matchesPatternKey(field, key, name));
}

/** Rank and alpha of one module, from the patterns or the config's defaults; `rankKey`: the rank_pattern key used. */
export function rankAndAlpha(
  config: LoraConfig,
  name: string,
): { r: number; alpha: number; rankKey?: string } {
  const rKey = patternKey(
    "rank_pattern",
    Object.keys(config.rank_pattern),
    name,
  );
  const aKey = patternKey(
    "alpha_pattern",
    Object.keys(config.alpha_pattern),
    name,
  );
  return {
    r: rKey !== undefined ? config.rank_pattern[rKey]! : config.r,
    alpha: aKey !== undefined ? config.alpha_pattern[aKey]! : config.lora_alpha,
    ...(rKey !== undefined ? { rankKey: rKey } : {}),
  };
}

/**
 * The Linear modules an adapter targets. Throws when it targets none (listing the model's Linear modules), or
 * when a listed target names a module that exists but is not a Linear layer.
 */
export function selectTargets(
  config: LoraConfig,
  linearNames: string[],
  otherModules: string[],
): string[] {
  const targets = linearNames.filter((n) => isTargeted(config, n));
  if (Array.isArray(config.target_modules)) {
    const nonLinear = otherModules.filter((n) =>
      matches("target_modules", config.target_modules as string[], n),
    );
    if (nonLinear.length > 0) {
      throw new ConfigError(
        `LoraConfig: target_modules names ${nonLinear.slice(0, 3).join(", ")}, which ${nonLinear.length > 1 ? "are" : "is"} not a Linear ` +
          "layer; webtune adapts Linear layers only (e.g. q_proj, v_proj).",
      );
    }
  }
  if (targets.length === 0) {
    const examples = [...new Set(linearNames.map((n) => n.split(".").at(-1)!))];
    throw new ConfigError(
      `LoraConfig: target_modules ${JSON.stringify(config.target_modules)} matches no Linear module of this model. ` +
        `Its Linear modules are named ${examples.join(", ")} (e.g. ${linearNames[0]}).`,
    );
  }
  return targets;
}

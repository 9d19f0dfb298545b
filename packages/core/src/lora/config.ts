/**
 * LoraConfig with Hugging Face PEFT's field names and semantics. Files always use these (snake_case) names;
 * TypeScript callers may also use the camelCase aliases. Parsed once at the edge, with `loraConfig()`.
 */
import { HEAD_MODULES_TO_SAVE } from "../models/head_names.js";
import { ConfigError } from "../errors.js";
import { checkPattern, checkPatternKeys } from "./patterns.js";

/** A PEFT LoRA config, in PEFT's serialised names. */
export interface LoraConfig {
  /** Rank of the update: A is [r, in], B is [out, r]. */
  r: number;
  /** Scaling numerator: the update is scaled by lora_alpha / r (or lora_alpha / √r with use_rslora). */
  lora_alpha: number;
  /** Dropout probability on the adapter's input, during training only. */
  lora_dropout: number;
  /**
   * Which Linear modules get an adapter: a list of names matched exactly or as a dotted suffix
   * ("q_proj" matches "model.layers.0.self_attn.q_proj"), a string matched as a full regex, or "all-linear".
   */
  target_modules: string[] | string;
  /** Modules never adapted, matched like target_modules (list: exact or suffix; string: full regex). */
  exclude_modules: string[] | string | null;
  /** Only "none" is supported: biases stay frozen. */
  bias: "none";
  /** Rank-stabilised scaling lora_alpha / √r (Kalajdzievski 2023). */
  use_rslora: boolean;
  /** Weight-decomposed LoRA (Liu et al. 2024): a trained magnitude per output feature. */
  use_dora: boolean;
  /** true: kaiming-uniform A and zero B (the adapter starts as a no-op); "gaussian": N(0, 1/r) A, zero B; false: both random. */
  init_lora_weights: boolean | "gaussian";
  /** Per-module ranks, keyed by a name or a regex matched against the end of the module name. */
  rank_pattern: Record<string, number>;
  /** Per-module alphas, matched like rank_pattern. */
  alpha_pattern: Record<string, number>;
  /** Only adapt these layer indexes (the number after `layers_pattern` in the module name). */
  layers_to_transform: number[] | null;
  /** The name of the layer list in module names ("layers", "h"); null: any "<name>.<index>." segment. */
  layers_pattern: string[] | null;
  /** Modules trained in full and saved with the adapter: a classification head ("classifier", "score"). */
  modules_to_save: string[] | null;
  /** True when the targets store weights [in, out] (GPT-2's Conv1D). Set by injection. */
  fan_in_fan_out: boolean;
  /** PEFT's task type: "CAUSAL_LM", or "SEQ_CLS" / "TOKEN_CLS" with a classification head. */
  task_type: string;
  /** The base model's id or path, for the adapter card and PEFT's loader. */
  base_model_name_or_path: string | null;
}

export type LoraConfigInput = Partial<LoraConfig> & {
  r: number;
  loraAlpha?: number;
  loraDropout?: number;
  targetModules?: string[] | string;
  excludeModules?: string[] | string | null;
  useRslora?: boolean;
  useDora?: boolean;
  initLoraWeights?: boolean | "gaussian";
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
  layersToTransform?: number[] | number | null;
  layersPattern?: string[] | string | null;
  modulesToSave?: string[] | null;
  fanInFanOut?: boolean;
  taskType?: string;
  baseModelNameOrPath?: string | null;
};

const ALIASES: Record<string, keyof LoraConfig> = {
  loraAlpha: "lora_alpha",
  loraDropout: "lora_dropout",
  targetModules: "target_modules",
  excludeModules: "exclude_modules",
  useRslora: "use_rslora",
  useDora: "use_dora",
  initLoraWeights: "init_lora_weights",
  rankPattern: "rank_pattern",
  alphaPattern: "alpha_pattern",
  layersToTransform: "layers_to_transform",
  layersPattern: "layers_pattern",
  modulesToSave: "modules_to_save",
  fanInFanOut: "fan_in_fan_out",
  taskType: "task_type",
  baseModelNameOrPath: "base_model_name_or_path",
};

export const LORA_DEFAULTS: LoraConfig = {
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  target_modules: "all-linear",
  exclude_modules: null,
  bias: "none",
  use_rslora: false,
  use_dora: false,
  init_lora_weights: true,
  rank_pattern: {},
  alpha_pattern: {},
  layers_to_transform: null,
  layers_pattern: null,
  modules_to_save: null,
  fan_in_fan_out: false,
  task_type: "CAUSAL_LM",
  base_model_name_or_path: null,
};

/**
 * Validates and completes a LoRA config. Unknown fields, r ≤ 0 and out-of-range values are ConfigErrors.
 *
 * @example
 * ```ts
 * const config = loraConfig({ r: 8, loraAlpha: 16, targetModules: ["q_proj", "v_proj"] });
 * ```
 */
export function loraConfig(input: LoraConfigInput): LoraConfig {
  if (typeof input !== "object" || input === null || Array.isArray(input))
    throw new ConfigError(
      `LoraConfig: expected an object of fields such as { r: 8, targetModules: ["q_proj"] }, got ${describe(input)}.`,
    );
  const out: Record<string, unknown> = { ...LORA_DEFAULTS };
  for (const [key, value] of Object.entries(input)) {
    // Own keys only: "constructor" or "__proto__" from a file are unknown fields, not Object's members.
    const name = Object.hasOwn(ALIASES, key) ? ALIASES[key]! : key;
    if (!Object.hasOwn(LORA_DEFAULTS, name)) {
      throw new ConfigError(
        `LoraConfig: unknown field "${key}". Known fields: ${Object.keys(LORA_DEFAULTS).join(", ")}.`,
      );
    }
    if (value !== undefined) out[name] = value;
  }
  const c = out as unknown as LoraConfig;
  // PEFT accepts a single int and a single string here.
  const layers = out["layers_to_transform"] as number[] | number | null;
  c.layers_to_transform = typeof layers === "number" ? [layers] : layers;
  const pattern = out["layers_pattern"] as string[] | string | null;
  c.layers_pattern = typeof pattern === "string" ? [pattern] : pattern;
  validate(c);
  return c;
}

function positiveInt(value: unknown, what: string): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(
      `LoraConfig: ${what} must be a positive integer, got ${describe(value)}.`,
    );
  }
}

function validate(c: LoraConfig): void {
  positiveInt(c.r, "r");
  if (
    typeof c.lora_alpha !== "number" ||
    !Number.isFinite(c.lora_alpha) ||
    c.lora_alpha <= 0
  ) {
    throw new ConfigError(
      `LoraConfig: lora_alpha must be a positive number, got ${describe(c.lora_alpha)}.`,
    );
  }
  if (
    typeof c.lora_dropout !== "number" ||
    !(c.lora_dropout >= 0 && c.lora_dropout < 1)
  ) {
    throw new ConfigError(
      `LoraConfig: lora_dropout must be in [0, 1), got ${describe(c.lora_dropout)}.`,
    );
  }
  if (c.bias !== "none") {
    throw new ConfigError(
      `LoraConfig: bias ${describe(c.bias)} is not supported; only "none" (base biases stay frozen).`,
    );
  }
  if (![true, false, "gaussian"].includes(c.init_lora_weights)) {
    throw new ConfigError(
      `LoraConfig: init_lora_weights must be true, false or "gaussian", got ${describe(c.init_lora_weights)}.`,
    );
  }
  for (const field of ["use_rslora", "use_dora", "fan_in_fan_out"] as const)
    if (typeof c[field] !== "boolean")
      throw new ConfigError(
        `LoraConfig: ${field} must be true or false, got ${describe(c[field])}.`,
      );
  for (const field of ["rank_pattern", "alpha_pattern"] as const) {
    if (!isPlainObject(c[field]))
      throw new ConfigError(
        `LoraConfig: ${field} must be an object of {pattern: value}, got ${describe(c[field])}.`,
      );
    checkPatternKeys(field, Object.keys(c[field]));
  }
  for (const [key, r] of Object.entries(c.rank_pattern))
    positiveInt(r, `rank_pattern["${key}"]`);
  for (const [key, a] of Object.entries(c.alpha_pattern)) {
    if (typeof a !== "number" || !Number.isFinite(a) || !(a > 0)) {
      throw new ConfigError(
        `LoraConfig: alpha_pattern["${key}"] must be a positive number, got ${describe(a)}.`,
      );
    }
  }
  const targets = c.target_modules;
  if (!(
    typeof targets === "string" ||
    (Array.isArray(targets) && targets.every((t) => typeof t === "string"))
  )) {
    throw new ConfigError(
      `LoraConfig: target_modules must be a list of names, a regex string or "all-linear".`,
    );
  }
  if (Array.isArray(targets) && targets.length === 0) {
    throw new ConfigError(
      `LoraConfig: target_modules is empty; name the modules to adapt, or use "all-linear".`,
    );
  }
  if (typeof targets === "string" && targets !== "all-linear")
    checkPattern("target_modules", targets);
  checkNames(c, "exclude_modules", true);
  if (typeof c.exclude_modules === "string")
    checkPattern("exclude_modules", c.exclude_modules);
  checkNames(c, "layers_pattern", false);
  for (const p of c.layers_pattern ?? []) checkPattern("layers_pattern", p);
  checkNames(c, "modules_to_save", false);
  if (c.layers_to_transform !== null && !Array.isArray(c.layers_to_transform))
    fail(`layers_to_transform is ${describe(c.layers_to_transform)}`);
  if (c.layers_to_transform)
    c.layers_to_transform.forEach(
      (i) =>
        (Number.isInteger(i) && i >= 0) ||
        fail(`layers_to_transform has ${describe(i)}`),
    );
  if (typeof c.task_type !== "string")
    throw new ConfigError(
      `LoraConfig: task_type must be a string such as "CAUSAL_LM", got ${describe(c.task_type)}.`,
    );
  if (
    c.base_model_name_or_path !== null &&
    typeof c.base_model_name_or_path !== "string"
  )
    throw new ConfigError(
      `LoraConfig: base_model_name_or_path must be a string or null, got ${describe(c.base_model_name_or_path)}.`,
    );
  const other = (c.modules_to_save ?? []).filter(
    (m) => !HEAD_MODULES_TO_SAVE.includes(m.split(".").at(-1)!),
  );
  if (other.length > 0) {
    throw new ConfigError(
      `LoraConfig: modules_to_save (${other.join(", ")}) is not supported; webtune trains in full only a ` +
        `classification head (${HEAD_MODULES_TO_SAVE.join(", ")}), which a SEQ_CLS or TOKEN_CLS adapter adds itself.`,
    );
  }
}

/** A field that holds null or a list of strings (or, where `orString`, one string). */
function checkNames(
  c: LoraConfig,
  field: "exclude_modules" | "layers_pattern" | "modules_to_save",
  orString: boolean,
): void {
  const v: unknown = c[field];
  if (v === null || (orString && typeof v === "string")) return;
  if (!Array.isArray(v) || !v.every((t) => typeof t === "string"))
    throw new ConfigError(
      `LoraConfig: ${field} must be null${orString ? ", a regex string" : ""} or a list of names, got ${describe(v)}.`,
    );
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A value for a message: JSON where it has one, short. */
function describe(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? typeof v;
  } catch {
    text = typeof v; // a BigInt, or an object that refers to itself
  }
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

function fail(problem: string): never {
  throw new ConfigError(
    `LoraConfig: ${problem}; expected non-negative layer indexes.`,
  );
}

/** The scaling of one module: alpha / r, or alpha / √r with rsLoRA. */
export function scalingOf(
  r: number,
  alpha: number,
  useRslora: boolean,
): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/**
 * LoraModel: named LoRA adapters over one frozen pretrained model, as PEFT's PeftModel/LoraModel. Adapters are
 * keys in per-layer maps; switching is setting the active key. Injection finds targets by HF module name.
 */
import * as tf from "@tensorflow/tfjs";
import type {
  CompileTrainingOptions,
  TrainingSession,
} from "../engine/session.js";
import { ConfigError } from "../errors.js";
import { compileTrainingSession } from "../models/step.js";
import { tagMemory } from "../runtime/memory.js";
import type { ModelSource, LoadOptions } from "../io/hub.js";
import { openModelFiles } from "../io/hub.js";
import {
  readAdapterFiles,
  writeAdapterFiles,
  adapterFilesSource,
  type AdapterFiles,
  type ModuleToWrite,
  type AdapterPart,
} from "../io/peft.js";
import type { Linear } from "../models/layers.js";
import type { ModelDims } from "../models/causal_lm.js";
import {
  estimateTrainingMemory,
  type MemoryPlan,
} from "../models/footprint.js";
import type { PretrainedModel } from "../models/pretrained.js";
import type { GenerateOptions, GenerateResult } from "../models/generate.js";
import type { LabelScores } from "../models/prefix_scoring.js";
import {
  loraConfig,
  scalingOf,
  type LoraConfig,
  type LoraConfigInput,
} from "./config.js";
import { LoraLinear, type AdapterState } from "./layer.js";
import { peftConfigJson, configFromPeftJson } from "./peft_config.js";
import { rankAndAlpha, selectTargets } from "./target.js";
import { initWeights, unionTargets } from "./init.js";
import { adapterWeightsFromFile, combineAdapters } from "./weights.js";
import type { ClassificationHead } from "../models/heads.js";
import {
  HEAD_CONFIG_FIELDS,
  headFiles,
  headFromAdapter,
  newHead,
  withHead,
  type AdapterHead,
} from "./heads.js";

export interface ParameterCounts {
  trainable: number;
  total: number;
}

/** What to initialise a new adapter's random tensors from. */
export interface AdapterInit {
  /** Seed of A's (and, with init_lora_weights false, B's) random values. Default 0. */
  seed?: number;
  /**
   * A classification head trained in full beside the adapter (PEFT's SEQ_CLS / TOKEN_CLS with modules_to_save):
   * the model's logits and loss use it while this adapter is active.
   */
  head?: AdapterHead;
}

/** The PEFT config fields that change what an adapter learns: what a resumed run must share. */
const IDENTITY_FIELDS = [
  "r",
  "lora_alpha",
  "lora_dropout",
  "target_modules",
  "exclude_modules",
  "layers_to_transform",
  "layers_pattern",
  "rank_pattern",
  "alpha_pattern",
  "use_rslora",
  "use_dora",
  "init_lora_weights",
  "bias",
  // A head's task and labels: a checkpoint of one head does not resume another.
  "task_type",
  "modules_to_save",
];

export class LoraModel {
  readonly state: AdapterState = {
    active: undefined,
    disabled: false,
    training: false,
    dropoutSeed: 0,
  };
  private readonly configs = new Map<string, LoraConfig>();
  private readonly layers = new Map<string, LoraLinear>();
  /** Each adapter's classification head, if it has one. */
  private readonly heads = new Map<string, ClassificationHead>();

  constructor(readonly base: PretrainedModel) {}

  /** Adapter names, in the order they were added. */
  get adapterNames(): string[] {
    return [...this.configs.keys()];
  }

  get activeAdapter(): string | undefined {
    return this.state.active;
  }

  config(name: string): LoraConfig {
    const c = this.configs.get(name);
    if (!c) {
      throw new ConfigError(
        `No adapter named "${name}"; this model has ${this.adapterNames.map((n) => `"${n}"`).join(", ") || "none"}.`,
      );
    }
    return c;
  }

  /**
   * Wraps every Linear the config targets with a new adapter. The first adapter added becomes active.
   *
   * @example
   * ```ts
   * const peft = new LoraModel(model);
   * peft.addAdapter("default", { r: 8, loraAlpha: 16, targetModules: ["q_proj", "v_proj"] });
   * console.log(peft.printTrainableParameters());
   * ```
   */
  addAdapter(
    name: string,
    input: LoraConfigInput | LoraConfig,
    init: AdapterInit = {},
  ): LoraConfig {
    this.checkNewName(name);
    const config = this.completeConfig(loraConfig(input));
    const linears = new Map(this.base.linears().map((l) => [l.name, l]));
    const targets = selectTargets(
      config,
      [...linears.keys()],
      this.base.lm.otherModules(),
    );
    config.fan_in_fan_out = targets.some(
      (t) => linears.get(t)!.layout === "in_out",
    );
    // Every rank is checked before the first tensor is made: a refused config allocates nothing.
    const planned = targets.map((module) => {
      const layer = linears.get(module)!;
      const { r, alpha, rankKey } = rankAndAlpha(config, module);
      checkRank(module, layer, r, rankKey);
      return { layer, r, alpha };
    });
    planned.forEach(({ layer, r, alpha }, i) => {
      this.layerOf(layer).adapters.set(
        name,
        initWeights(layer, r, alpha, config, (init.seed ?? 0) + i),
      );
    });
    this.initDora(name, config);
    if (init.head) {
      withHead(config, init.head.task);
      this.heads.set(
        name,
        newHead(this.base, init.head, (init.seed ?? 0) + planned.length),
      );
    }
    this.configs.set(name, config);
    this.tagMemory(name);
    this.state.active ??= name;
    this.syncHead();
    return config;
  }

  /** The classification head of an adapter (default: the active one), if it has one. */
  head(name = this.state.active): ClassificationHead | undefined {
    return name === undefined ? undefined : this.heads.get(name);
  }

  /** The model's logits and loss use the active adapter's head, or the LM head. */
  private syncHead(): void {
    this.base.lm.taskHead = this.head();
  }

  private checkNewName(name: string): void {
    if (this.configs.has(name))
      throw new ConfigError(
        `An adapter named "${name}" already exists; delete it first or pick another name.`,
      );
    if (!/^[\w.-]+$/.test(name))
      throw new ConfigError(
        `Adapter name "${name}" must use letters, digits, "_", "-" or ".".`,
      );
  }

  private completeConfig(config: LoraConfig): LoraConfig {
    config.base_model_name_or_path ??= this.base.source;
    return config;
  }

  /** Counts a new adapter's tensors as adapter memory in `gpuMemory()`. */
  private tagMemory(name: string): void {
    for (const lora of this.layers.values()) {
      const w = lora.adapters.get(name);
      if (w)
        tagMemory("adapters", [
          w.A,
          w.B,
          ...(w.magnitude ? [w.magnitude] : []),
        ]);
    }
  }

  /** DoRA's magnitude starts at ‖W + s·B·A‖ per output row, so the adapter starts as the base model. */
  private initDora(name: string, config: LoraConfig): void {
    if (!config.use_dora) return;
    for (const lora of this.layers.values()) {
      const w = lora.adapters.get(name);
      if (w && !w.magnitude)
        w.magnitude = tf.variable(lora.weightNorm(w), true);
    }
  }

  private layerOf(layer: Linear): LoraLinear {
    let lora = this.layers.get(layer.name);
    if (!lora) {
      lora = new LoraLinear(layer, this.layers.size, this.state);
      this.layers.set(layer.name, lora);
      layer.adapter = lora;
    }
    return lora;
  }

  setAdapter(name: string): void {
    this.config(name);
    this.state.active = name;
    this.syncHead();
  }

  deleteAdapter(name: string): void {
    this.config(name);
    if (
      [...this.layers.values()].some((l) => l.mergedAdapters.includes(name))
    ) {
      throw new ConfigError(
        `Adapter "${name}" is merged into the weights: unmerge() before deleting it.`,
      );
    }
    for (const lora of this.layers.values()) lora.deleteAdapter(name);
    this.heads.get(name)?.dispose();
    this.heads.delete(name);
    this.configs.delete(name);
    if (this.state.active === name) this.state.active = this.adapterNames[0];
    this.syncHead();
  }

  disableAdapters(): void {
    this.state.disabled = true;
  }

  enableAdapters(): void {
    this.state.disabled = false;
  }

  /** Runs `fn` on the base model alone (PEFT's `with model.disable_adapter():`), restoring the state after. */
  async withAdaptersDisabled<T>(fn: () => T | Promise<T>): Promise<T> {
    const before = this.state.disabled;
    this.state.disabled = true;
    try {
      return await fn();
    } finally {
      this.state.disabled = before;
    }
  }

  /** The tensors an optimizer updates for an adapter (default: the active one). */
  trainableVariables(name = this.requireActive()): tf.Variable[] {
    return this.namedTrainableVariables(name).map((t) => t.variable);
  }

  /** The same tensors with their PEFT names, e.g. "model.layers.0.self_attn.q_proj.lora_B": stable across runs. */
  namedTrainableVariables(name = this.requireActive()): {
    key: string;
    part: AdapterPart | "modules_to_save";
    variable: tf.Variable;
  }[] {
    this.config(name);
    const out: {
      key: string;
      part: AdapterPart | "modules_to_save";
      variable: tf.Variable;
    }[] = [];
    for (const [module, lora] of this.layers) {
      const w = lora.adapters.get(name);
      if (!w) continue;
      const parts: [AdapterPart, tf.Variable | undefined][] = [
        ["lora_A", w.A],
        ["lora_B", w.B],
        ["lora_magnitude_vector", w.magnitude],
      ];
      for (const [part, variable] of parts)
        if (variable) out.push({ key: `${module}.${part}`, part, variable });
    }
    for (const { key, variable } of this.heads.get(name)?.namedVariables() ??
      [])
      out.push({ key, part: "modules_to_save", variable });
    return out;
  }

  /** Trainable (the active adapter) and total (base plus every adapter) parameters, as PEFT counts them. */
  parameterCounts(): ParameterCounts {
    const trainable = this.state.active
      ? this.trainableVariables().reduce((n, v) => n + v.size, 0)
      : 0;
    let adapters = 0;
    for (const name of this.adapterNames)
      adapters += this.trainableVariables(name).reduce((n, v) => n + v.size, 0);
    return { trainable, total: this.base.lm.parameterCount() + adapters };
  }

  /** Expected GPU memory of one training step of the active adapter; the Trainer checks it before step 1. */
  memoryPlan(shape: {
    batch: number;
    tokens: number;
    gradientCheckpointing: boolean;
  }): MemoryPlan {
    const lm = this.base.lm;
    return {
      footprint: estimateTrainingMemory(lm, {
        ...shape,
        trainedParameters: this.parameterCounts().trainable,
      }),
      baseFormat: lm.projectionFormat(),
    };
  }

  /**
   * The compiled training session of the active adapter (the Trainer's fast path): undefined where there is none
   * (no WebGPU backend, an architecture without a compiled step), and the Trainer then uses tfjs's autograd.
   */
  compileTraining(
    options: CompileTrainingOptions,
  ): TrainingSession | undefined {
    return compileTrainingSession(this.base.lm, {
      ...options,
      checkpointing: this.gradientCheckpointing,
    });
  }

  /** PEFT's print_trainable_parameters line. */
  printTrainableParameters(): string {
    const { trainable, total } = this.parameterCounts();
    return `trainable params: ${trainable.toLocaleString("en-US")} || all params: ${total.toLocaleString("en-US")} || trainable%: ${((100 * trainable) / total).toFixed(4)}`;
  }

  /** Folds an adapter (default: the active one) into the frozen weights; unmerge() restores them exactly. */
  merge(name = this.requireActive()): void {
    this.config(name);
    for (const lora of this.layers.values())
      if (lora.adapters.has(name)) lora.merge(name);
  }

  unmerge(): void {
    for (const lora of this.layers.values()) lora.unmerge();
  }

  /** The adapters folded into the weights now, in the order they were merged. */
  get mergedAdapters(): string[] {
    const names = new Set<string>();
    for (const lora of this.layers.values())
      for (const name of lora.mergedAdapters) names.add(name);
    return [...names];
  }

  /**
   * Merges the active adapter for good, removes every adapter, and returns the plain base model; the adapter's
   * classification head, if any, stays on it (HF's merge_and_unload keeps modules_to_save).
   */
  mergeAndUnload(name = this.requireActive()): PretrainedModel {
    this.merge(name);
    for (const [module, lora] of this.layers) {
      lora.commitMerge();
      lora.dispose();
      this.base.linears().find((l) => l.name === module)!.adapter = undefined;
    }
    const kept = this.heads.get(name);
    for (const [other, head] of this.heads) if (other !== name) head.dispose();
    this.heads.clear();
    this.layers.clear();
    this.configs.clear();
    this.state.active = undefined;
    this.base.lm.taskHead = kept;
    return this.base;
  }

  /**
   * A new adapter combining others (PEFT's add_weighted_adapter): "linear" sums √(w·s)-weighted A and B
   * (equal ranks), "cat" stacks w·s·A and B (rank = the sum of ranks).
   */
  addWeightedAdapter(
    sources: string[],
    weights: number[],
    name: string,
    combination: "linear" | "cat",
  ): LoraConfig {
    this.checkNewName(name);
    const configs = sources.map((s) => this.config(s));
    if (weights.length !== sources.length)
      throw new ConfigError(
        `addWeightedAdapter: ${sources.length} adapters but ${weights.length} weights.`,
      );
    const type = sources.length === 1 ? "linear" : combination;
    const ranks = configs.map((c) =>
      Math.max(c.r, ...Object.values(c.rank_pattern)),
    );
    if (type === "linear" && new Set(ranks).size > 1) {
      throw new ConfigError(
        `addWeightedAdapter "linear" needs adapters of equal rank, got ${ranks.join(", ")}; use "cat".`,
      );
    }
    const r = type === "linear" ? ranks[0]! : ranks.reduce((a, b) => a + b, 0);
    const first = configs[0]!;
    const config: LoraConfig = {
      ...first,
      r,
      lora_alpha: r,
      rank_pattern: {},
      alpha_pattern: {},
      target_modules: unionTargets(configs),
    };
    for (const lora of this.layers.values()) {
      const parts = sources.map((s, i) => ({
        w: lora.adapters.get(s),
        weight: weights[i]!,
      }));
      if (parts.every((p) => !p.w)) continue;
      const { A, B } = combineAdapters(parts, type, r);
      lora.adapters.set(name, {
        A,
        B,
        r,
        alpha: r,
        scale: scalingOf(r, r, config.use_rslora),
        dropout: config.lora_dropout,
      });
    }
    this.configs.set(name, config);
    this.tagMemory(name);
    return config;
  }

  /**
   * What is being trained, for the run identity a checkpoint stores: the base model and the active adapter's
   * PEFT config (rank, alpha, targets, dropout, variants).
   */
  runIdentity(): Record<string, string | number | boolean | null> {
    const json = peftConfigJson(this.config(this.requireActive()));
    const fields: Record<string, string | number | boolean | null> = {
      model: this.base.source,
    };
    for (const key of IDENTITY_FIELDS) {
      const v = json[key] ?? null;
      fields[key] =
        typeof v === "object" && v !== null
          ? JSON.stringify(v)
          : (v as string | number | boolean | null);
    }
    const head = this.head();
    if (head) fields["labels"] = JSON.stringify(head.labels);
    return fields;
  }

  /** The adapter's two PEFT files: adapter_config.json and adapter_model.safetensors (F32). */
  async saveAdapter(name = this.requireActive()): Promise<AdapterFiles> {
    const config = this.config(name);
    const modules = new Map<string, ModuleToWrite>();
    for (const [module, lora] of this.layers) {
      const w = lora.adapters.get(name);
      if (!w) continue;
      modules.set(module, {
        A: (await w.A.data()) as Float32Array,
        aShape: w.A.shape,
        B: (await w.B.data()) as Float32Array,
        bShape: w.B.shape,
        magnitude: w.magnitude
          ? ((await w.magnitude.data()) as Float32Array)
          : undefined,
      });
    }
    const head = this.heads.get(name);
    if (!head) return writeAdapterFiles(peftConfigJson(config), modules);
    const { fields, tensors } = await headFiles(head);
    const json = { ...peftConfigJson(config), ...fields };
    return writeAdapterFiles(sortedKeys(json), modules, tensors);
  }

  /**
   * Loads a PEFT adapter (written by webtune or by Python PEFT) from a hub id, URL, directory, picked Files,
   * or the files `saveAdapter` returned. Nothing is added if any module or shape disagrees with the model.
   */
  async loadAdapter(
    name: string,
    source: ModelSource | AdapterFiles,
    options: LoadOptions = {},
  ): Promise<LoraConfig> {
    this.checkNewName(name);
    const files = await openModelFiles(
      isAdapterFiles(source) ? adapterFilesSource(source) : source,
      options,
      "adapter",
    );
    const { config: raw, modules, saved } = await readAdapterFiles(files);
    const config = this.completeConfig(
      configFromPeftJson(withoutHeadFields(raw), files.source),
    );
    const linears = new Map(this.base.linears().map((l) => [l.name, l]));
    const loaded = adapterWeightsFromFile(
      modules,
      linears,
      config,
      files.source,
    );
    // Made last: the LoRA weights above are checked first, so a refused adapter leaves no head behind.
    let head: ClassificationHead | undefined;
    try {
      head = headFromAdapter(this.base, raw, saved, files.source);
    } catch (error) {
      for (const w of loaded.values())
        tf.dispose([w.A, w.B, ...(w.magnitude ? [w.magnitude] : [])]);
      throw error;
    }
    for (const [module, weights] of loaded)
      this.layerOf(linears.get(module)!).adapters.set(name, weights);
    if (head) this.heads.set(name, head);
    this.configs.set(name, config);
    this.tagMemory(name);
    this.state.active ??= name;
    this.syncHead();
    return config;
  }

  private requireActive(): string {
    if (this.state.active === undefined)
      throw new ConfigError(
        "No adapter is active: addAdapter() or loadAdapter() first.",
      );
    return this.state.active;
  }

  get dims(): ModelDims {
    return this.base.dims;
  }

  /** Logits with the active adapter applied. */
  logits(ids: number[][]): tf.Tensor3D {
    return this.base.logits(ids);
  }

  /** False while the active adapter has a classification head: labels are then its targets, unshifted. */
  get labelsShifted(): boolean {
    return this.base.lm.taskHead === undefined;
  }

  /** The base model's activation checkpointing (see `CausalLM.gradientCheckpointing`). */
  get gradientCheckpointing(): boolean {
    return this.base.lm.gradientCheckpointing;
  }

  set gradientCheckpointing(on: boolean) {
    this.base.lm.gradientCheckpointing = on;
  }

  loss(ids: number[][], labels?: number[][]): tf.Scalar {
    return this.base.loss(ids, labels);
  }

  generate(
    prompt: string | number[],
    options?: GenerateOptions,
  ): Promise<GenerateResult> {
    return this.base.generate(prompt, options);
  }

  /** Batched greedy continuations with the active adapter; see {@link PretrainedModel.greedyBatch}. */
  greedyBatch(
    prompts: number[][],
    maxNewTokens: number[],
    options: { signal?: AbortSignal } = {},
  ): Promise<GenerateResult[]> {
    return this.base.greedyBatch(prompts, maxNewTokens, options);
  }

  /** Label scoring with the active adapter; see {@link PretrainedModel.labelNlls}. */
  labelNlls(
    prompts: number[][],
    labels: number[][],
    signal?: AbortSignal,
  ): Promise<LabelScores | undefined> {
    return this.base.labelNlls(prompts, labels, signal);
  }

  /** Frees every adapter and detaches them from the base model (which stays loaded). */
  dispose(): void {
    this.unmerge();
    for (const [module, lora] of this.layers) {
      lora.dispose();
      this.base.linears().find((l) => l.name === module)!.adapter = undefined;
    }
    this.layers.clear();
    this.configs.clear();
    // Only its own heads: a head left on the model by mergeAndUnload is the model's now.
    const lm = this.base.lm;
    for (const head of this.heads.values()) {
      if (lm.taskHead === head) lm.taskHead = undefined;
      head.dispose();
    }
    this.heads.clear();
    this.state.active = undefined;
  }
}

/**
 * Refuses a rank above min(in, out) of the layer it adapts. PEFT allows it, but B·A [out, in] cannot have a rank
 * above min(in, out): the extra rank adds parameters, optimizer state and memory (A [r, in], B [out, r]) and no
 * expressiveness, and a typo such as r = 1e6 would allocate gigabytes before anything failed.
 */
function checkRank(
  module: string,
  layer: Linear,
  r: number,
  rankKey: string | undefined,
): void {
  const [IN, OUT] = [layer.inFeatures, layer.outFeatures];
  const limit = Math.min(IN, OUT);
  if (r <= limit) return;
  const from =
    rankKey !== undefined
      ? `rank_pattern[${JSON.stringify(rankKey)}] = ${r}`
      : `r = ${r}`;
  throw new ConfigError(
    `LoraConfig: ${from} is above the rank of module "${module}", a Linear of shape [in, out] = [${IN}, ${OUT}]: ` +
      `its update B·A has rank at most min(${IN}, ${OUT}) = ${limit}, so a larger r only adds memory (A [r, ${IN}], ` +
      `B [${OUT}, r]) and no expressiveness. Use r <= ${limit} for this module (rank_pattern sets one per module), ` +
      `or, for a full-rank update, load the model with trainable: true and train every weight.`,
  );
}

/** The config without the head fields webtune adds (LoraConfig does not hold them; the head does). */
function withoutHeadFields(
  raw: Record<string, unknown>,
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(raw).filter(([k]) => !HEAD_CONFIG_FIELDS.includes(k)),
  );
}

function sortedKeys(json: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.keys(json)
      .sort()
      .map((k) => [k, json[k]]),
  );
}

function isAdapterFiles(source: unknown): source is AdapterFiles {
  return (
    typeof source === "object" &&
    source !== null &&
    "adapter_config.json" in source
  );
}

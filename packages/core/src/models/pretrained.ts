/**
 * A pretrained model as a user holds it: the architecture's CausalLM, its tokenizer and generation defaults,
 * loaded from a hub id, a URL, browser files or a Node directory.
 */
import type * as tf from "@tensorflow/tfjs";
import { FormatError } from "../errors.js";
import {
  openModelFiles,
  type LoadOptions,
  type ModelSource,
} from "../io/hub.js";
import type { ModelFiles } from "../io/model_files.js";
import type { SafetensorsReader } from "../io/safetensors.js";
import { openModelWeights } from "../io/sharded.js";
import { gpuInfo } from "../runtime/runtime.js";
import type { CausalLM, ModelDims } from "./causal_lm.js";
import type { HfConfig } from "./config.js";
import {
  generate,
  greedyBatch,
  type GenerateOptions,
  type GenerateResult,
} from "./generate.js";
import { prefixLabelNlls, type LabelScores } from "./prefix_scoring.js";
import type { Linear } from "./layers.js";
import { resolveConfig } from "./registry.js";
import { ClassificationHead, headModuleName, type HeadTask } from "./heads.js";
import { Tokenizer } from "./tokenizer.js";
import {
  checkWeightOptions,
  type WeightOptions,
  type WeightSource,
} from "./weights.js";

export type { ModelSource, LoadOptions };

/** A frozen pretrained language model with its tokenizer. */
export class PretrainedModel {
  constructor(
    /** The architecture: ids to logits, KV cache, named Linear layers. */
    readonly lm: CausalLM,
    /** Undefined when the folder has no tokenizer.json. */
    readonly tokenizer: Tokenizer | undefined,
    /** config.json as loaded. */
    readonly config: HfConfig,
    /** generation_config.json, if any. */
    readonly generationConfig: HfConfig,
    /** Where it came from, for messages. */
    readonly source: string,
    /** The source's files, for copying the tokenizer when saving. */
    readonly files?: ModelFiles,
  ) {}

  get dims(): ModelDims {
    return this.lm.dims;
  }

  /** Every projection by Hugging Face module name, e.g. "model.layers.0.self_attn.q_proj". */
  linears(): Linear[] {
    return this.lm.linears();
  }

  /** ids [B, T] -> logits [B, T, V] */
  logits(ids: number[][]): tf.Tensor3D {
    return this.lm.logits(ids);
  }

  /** Mean next-token cross-entropy of ids [B, T] (labels of -100 ignored). */
  loss(ids: number[][], labels?: number[][]): tf.Scalar {
    return this.lm.loss(ids, labels);
  }

  /**
   * Continues a prompt (text, or token ids) with a KV cache.
   *
   * @example
   * ```ts
   * const { text } = await model.generate("The capital of France is", { maxNewTokens: 20 });
   * ```
   */
  generate(
    prompt: string | number[],
    options: GenerateOptions = {},
  ): Promise<GenerateResult> {
    const ids =
      typeof prompt === "string"
        ? this.requireTokenizer().encode(prompt)
        : prompt;
    const eos = options.eosTokenIds ?? this.eosTokenIds();
    return generate(this.lm, ids, this.tokenizer, {
      ...options,
      eosTokenIds: eos,
    });
  }

  /**
   * Greedy continuations of many prompts (token ids), batched: the same tokens as {@link generate} with
   * temperature 0 for each, far faster for evaluation. Each row stops at EOS or at its own budget.
   *
   * @example
   * ```ts
   * const [a, b] = await model.greedyBatch([tok.encode("Date: 2024-03-05\nWritten out:"), ...], [12, 12]);
   * ```
   */
  async greedyBatch(
    prompts: number[][],
    maxNewTokens: number[],
    options: Pick<GenerateOptions, "signal" | "decodePath"> = {},
  ): Promise<GenerateResult[]> {
    const rows = await greedyBatch(
      this.lm,
      prompts,
      maxNewTokens,
      this.eosTokenIds(),
      undefined,
      options.signal,
      options.decodePath,
    );
    return rows.map((r) => ({
      ...r,
      text: this.tokenizer?.decode(r.ids, { skipSpecialTokens: true }) ?? "",
    }));
  }

  /**
   * Each label's summed NLL after each prompt (token ids), every prompt run once and the labels as short
   * continuations of its KV cache; undefined where the compiled decoder is not available (not WebGPU, or a
   * classification head).
   *
   * @example
   * ```ts
   * const eos = [model.tokenizer!.eosTokenId!];
   * const labels = ["positive", "negative"].map((l) => [...tok.encode(` ${l}`, { addSpecialTokens: false }), ...eos]);
   * const scores = await model.labelNlls([tok.encode("Review: great film\nSentiment:")], labels);
   * ```
   */
  labelNlls(
    prompts: number[][],
    labels: number[][],
    signal?: AbortSignal,
  ): Promise<LabelScores | undefined> {
    return prefixLabelNlls(this.lm, prompts, labels, signal);
  }

  private eosTokenIds(): number[] {
    const fromGeneration = this.generationConfig["eos_token_id"];
    const ids = new Set(this.lm.dims.eosTokenIds);
    for (const id of Array.isArray(fromGeneration)
      ? fromGeneration
      : [fromGeneration]) {
      if (typeof id === "number") ids.add(id);
    }
    for (const id of this.tokenizer?.stopTokenIds ?? []) ids.add(id);
    return [...ids];
  }

  private requireTokenizer(): Tokenizer {
    if (!this.tokenizer) {
      throw new FormatError(
        `${this.source} has no tokenizer.json: pass token ids instead of text.`,
      );
    }
    return this.tokenizer;
  }

  dispose(): void {
    this.lm.dispose();
  }
}

/**
 * Loads a Hugging Face model folder: config.json, model.safetensors (or a sharded index), tokenizer.json,
 * tokenizer_config.json and generation_config.json. The config is read and checked before any weight is
 * downloaded; weights are read one tensor at a time.
 *
 * @example
 * ```ts
 * await initRuntime();
 * const model = await loadModel("HuggingFaceTB/SmolLM2-135M", { onProgress: (e) => console.log(e) });
 * const { text } = await model.generate("Once upon a time", { maxNewTokens: 30 });
 * // QLoRA-style: projections in NF4 with double-quantized scales, embeddings in f16 (about 4.1 bits per weight).
 * const small = await loadModel("Qwen/Qwen2.5-0.5B", { dtype: "float16", quantize: "nf4", doubleQuant: true });
 * ```
 */
export async function loadModel(
  source: ModelSource,
  options: LoadOptions & WeightOptions = {},
): Promise<PretrainedModel> {
  checkWeightOptions(options);
  const files = await openModelFiles(source, options);
  const config = await files.json<HfConfig>("config.json");
  const resolved = resolveConfig(config, `${files.source}/config.json`);
  const generationConfig = (await files.has("generation_config.json"))
    ? await files.json<HfConfig>("generation_config.json")
    : {};
  const tokenizer = await loadTokenizer(files, generationConfig);
  const reader = await openModelWeights(files);
  const task = headTaskOf(config);
  const headName = task && headModuleName(resolved.modelType, task);
  const headKeys = headName
    ? reader.names.filter((n) => n.startsWith(`${headName}.`))
    : [];
  // The decoder is loaded as ever; a classification checkpoint's head (saved by savePretrained, or by
  // transformers' *ForSequenceClassification) is read apart, and its tensors are not "unused".
  const weights = weightSourceOf(reader);
  const lm = await resolved.load(
    {
      ...weights,
      names: () => weights.names().filter((n) => !headKeys.includes(n)),
    },
    maxBindingBytes(),
    {
      trainable: options.trainable,
      dtype: options.dtype,
      quantize: options.quantize,
      doubleQuant: options.doubleQuant,
    },
  );
  if (task && headKeys.length > 0) {
    try {
      lm.taskHead = await readHead(lm, task, config, reader, files.source);
    } catch (error) {
      lm.dispose();
      throw error;
    }
  }
  return new PretrainedModel(
    lm,
    tokenizer,
    config,
    generationConfig,
    files.source,
    files,
  );
}

async function loadTokenizer(
  files: ModelFiles,
  generationConfig: HfConfig,
): Promise<Tokenizer | undefined> {
  if (!(await files.has("tokenizer.json"))) return undefined;
  const optional = async (file: string) =>
    (await files.has(file)) ? files.text(file) : undefined;
  return Tokenizer.fromFiles(
    {
      tokenizerJson: await files.text("tokenizer.json"),
      tokenizerConfig: (await optional("tokenizer_config.json")) ?? {},
      generationConfig,
      chatTemplate: await optional("chat_template.jinja"),
    },
    { source: files.source },
  );
}

/** The model layer's view of a safetensors checkpoint: f32 values, converted from F16/BF16 on load. */
export function weightSourceOf(reader: SafetensorsReader): WeightSource {
  return {
    description: reader.source,
    names: () => reader.names,
    shape: async (name) =>
      reader.has(name) ? (await reader.info(name)).shape : undefined,
    read: async (name) => {
      const t = await reader.read(name);
      if (!(t.data instanceof Float32Array)) {
        throw new FormatError(
          `${reader.source}: weight "${name}" is ${t.dtype}; expected a floating-point dtype.`,
        );
      }
      return t.data;
    },
  };
}

/** The largest tensor one storage binding holds on the running device (no limit on the CPU backend). */
function maxBindingBytes(): number {
  const info = gpuInfo();
  return info.limits["maxStorageBufferBindingSize"] ?? 2 ** 31 - 1;
}

/** The head a config.json names in `architectures` (transformers' *ForSequenceClassification or ...Token...). */
function headTaskOf(config: HfConfig): HeadTask | undefined {
  const arch = Array.isArray(config["architectures"])
    ? String(config["architectures"][0])
    : "";
  if (arch.endsWith("ForSequenceClassification")) return "seq-cls";
  if (arch.endsWith("ForTokenClassification")) return "token-cls";
  return undefined;
}

/** A classification checkpoint's head, its labels from config.json's id2label (LABEL_i where it has none). */
async function readHead(
  lm: CausalLM,
  task: HeadTask,
  config: HfConfig,
  reader: SafetensorsReader,
  source: string,
): Promise<ClassificationHead> {
  const name = headModuleName(lm.dims.modelType, task);
  const weight = await reader.read(`${name}.weight`);
  const bias = reader.has(`${name}.bias`)
    ? await reader.read(`${name}.bias`)
    : undefined;
  const L = weight.shape[0]!;
  const id2label = (config["id2label"] ?? {}) as Record<string, unknown>;
  const labels = Array.from({ length: L }, (_, i) =>
    typeof id2label[String(i)] === "string"
      ? (id2label[String(i)] as string)
      : `LABEL_${i}`,
  );
  const pad = config["pad_token_id"];
  return ClassificationHead.fromValues(
    lm.dims.modelType,
    lm.dims.hiddenSize,
    {
      task,
      labels,
      padTokenId: typeof pad === "number" ? pad : undefined,
    },
    {
      weight: weight.data as Float32Array,
      weightShape: weight.shape,
      bias: bias?.data as Float32Array | undefined,
    },
    `${source}/model.safetensors`,
  );
}

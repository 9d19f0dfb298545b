/**
 * Turning a checkpoint's named tensors into frozen GPU tensors, checked against the shapes an architecture
 * expects. If anything fails, everything already uploaded is disposed: no half-loaded model stays on the GPU.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, FormatError, ShapeError } from "../errors.js";
import { packMatrix } from "../kernels/quant/codec.js";
import {
  isPacked,
  matrixBytes,
  matrixTensors,
  type Matrix,
  type PackedMatrix,
} from "../kernels/quant/packed.js";
import { tagMemory } from "../runtime/memory.js";
import { gpuInfo } from "../runtime/runtime.js";
import { Embedding } from "./embedding.js";
import { Linear } from "./layers.js";
import type { CausalLM } from "./causal_lm.js";

/** A checkpoint as the model layer sees it: names, shapes, and f32 values read one tensor at a time. */
export interface WeightSource {
  /** For messages: the file or folder the weights come from. */
  readonly description: string;
  names(): readonly string[];
  /** Shape from the header, without reading data; undefined when the checkpoint lacks the tensor. */
  shape(name: string): Promise<number[] | undefined>;
  read(name: string): Promise<Float32Array>;
}

/** What the running device binds at once; no limit on the CPU backend. */
function deviceBindingLimit(): number {
  const info = gpuInfo();
  return info.backend === "webgpu"
    ? (info.limits["maxStorageBufferBindingSize"] ?? Infinity)
    : Infinity;
}

/** Buffers some checkpoints carry that are not weights (GPT-2's causal-mask buffers). */
const IGNORED = [
  /\.attn\.bias$/,
  /\.attn\.masked_bias$/,
  /rotary_emb\.inv_freq$/,
];

/**
 * How the frozen base is stored on the GPU. Compute stays f32 whatever the storage, and so do adapters and the
 * optimizer; the kernels unpack f16 and dequantize int8/NF4 inside their tile loads.
 */
export interface WeightOptions {
  /** Load every weight as a trainable f32 variable, for full fine-tuning. */
  trainable?: boolean;
  /** Storage of the embeddings, LM head and (unless `quantize` is set) projections. Default "float32". */
  dtype?: "float32" | "float16";
  /**
   * Blockwise quantization of the projections (every Linear), as bitsandbytes does for QLoRA: 64-value blocks
   * with an absmax each. Embeddings and the head stay in `dtype`; norms and biases stay f32.
   */
  quantize?: "int8" | "nf4";
  /** Quantize the block absmax values too (QLoRA's double quantization), saving about 0.37 bits per weight. */
  doubleQuant?: boolean;
}

/** Checks storage options at the edge, before anything is read. */
export function checkWeightOptions(o: WeightOptions): void {
  if (o.dtype !== undefined && o.dtype !== "float32" && o.dtype !== "float16")
    throw new ConfigError(
      `dtype must be "float32" or "float16", got ${JSON.stringify(o.dtype)}.`,
    );
  if (o.quantize !== undefined && o.quantize !== "int8" && o.quantize !== "nf4")
    throw new ConfigError(
      `quantize must be "int8" or "nf4", got ${JSON.stringify(o.quantize)}.`,
    );
  if (o.doubleQuant && o.quantize === undefined)
    throw new ConfigError(
      `doubleQuant quantizes the block scales of int8 or NF4 weights: set quantize: "nf4" (or "int8") too.`,
    );
  if (o.trainable && (o.quantize !== undefined || o.dtype === "float16"))
    throw new ConfigError(
      `Full fine-tuning (trainable: true) updates every weight in f32; it cannot use dtype "float16" or quantize ` +
        `"${o.quantize ?? "float16"}". Train a LoRA adapter on the compact base instead (QLoRA), or load in float32.`,
    );
}

/** One checkpoint tensor of a loaded model: its name, its live value (row chunks of it), and how to save it. */
export interface ParameterEntry {
  name: string;
  /** Its live value: one tensor or packed matrix, or the row chunks of an embedding. */
  get: () => (tf.Tensor | PackedMatrix)[];
  /** Applied to each value when saving (Gemma stores norms as 1 + w). */
  unmap?: (v: number) => number;
}

export class WeightLoader {
  private readonly made: (Matrix | tf.Tensor)[] = [];
  /** Checkpoint keys read or knowingly skipped, as stored. */
  private readonly used = new Set<string>();
  /** The same tensors by their canonical (LM-head model) names. */
  private readonly readNames = new Set<string>();
  private readonly entries: ParameterEntry[] = [];
  private readonly keys: ReadonlySet<string>;

  constructor(
    readonly source: WeightSource,
    /**
     * Largest embedding chunk, in bytes: the device's storage-binding limit (tests pass less, to force chunks).
     * Projections are checked against the running device's own limit.
     */
    private readonly maxBindingBytes: number,
    private readonly options: WeightOptions = {},
    /**
     * HF's base_model_prefix with its dot ("transformer." for GPT-2, "model." for the decoders). The architecture
     * asks for every tensor by its LM-head model name; a checkpoint saved from the base model alone (the hub's
     * gpt2, stored as "h.0.attn.c_attn.weight") holds the same tensors without the prefix, and is read as if it
     * had it, so module names, adapters and saved files are PEFT's whatever the key layout.
     */
    private readonly basePrefix = "",
  ) {
    checkWeightOptions(options);
    this.keys = new Set(source.names());
  }

  /** The checkpoint's key for a canonical name: the name itself, or the name without the base model's prefix. */
  private stored(name: string): string {
    if (
      this.keys.has(name) ||
      !this.basePrefix ||
      !name.startsWith(this.basePrefix)
    )
      return name;
    const bare = name.slice(this.basePrefix.length);
    return this.keys.has(bare) ? bare : name;
  }

  private get trainable(): boolean {
    return this.options.trainable ?? false;
  }

  /** Marks a tensor the architecture knowingly does not read (a tied head stored twice). */
  ignore(name: string): void {
    this.used.add(this.stored(name));
  }

  has(name: string): boolean {
    return this.keys.has(this.stored(name));
  }

  private async read(name: string, expected: number[]): Promise<Float32Array> {
    const key = this.stored(name);
    const shape = await this.source.shape(key);
    if (shape === undefined) {
      throw new FormatError(
        `${this.source.description}: tensor "${name}" is missing${this.basePrefix && name.startsWith(this.basePrefix) ? ` (also as "${name.slice(this.basePrefix.length)}")` : ""}. ` +
          `Is this checkpoint for the architecture its ` +
          `config.json names? It has ${this.source.names().length} tensors, e.g. ${this.source.names().slice(0, 4).join(", ")}.`,
      );
    }
    if (
      shape.length !== expected.length ||
      shape.some((d, i) => d !== expected[i])
    ) {
      throw new ShapeError(
        `${this.source.description}: tensor "${key}" is [${shape.join(", ")}], but config.json implies ` +
          `[${expected.join(", ")}]. The config and the weights disagree.`,
      );
    }
    this.used.add(key);
    this.readNames.add(name);
    return this.source.read(key);
  }

  /**
   * A projection is one storage binding in every kernel that reads it: one over the device's limit cannot be
   * used, so it fails here, naming what would fit. (Embeddings are split into row chunks instead.)
   */
  private fitting(name: string, m: Matrix): Matrix {
    const bytes = matrixBytes(m);
    const limit = deviceBindingLimit();
    if (bytes <= limit) return m;
    const format = isPacked(m) ? m.format : "float32";
    throw new ShapeError(
      `${this.source.description}: "${name}" [${m.shape.join(", ")}] takes ${bytes} bytes as ${format}, over this ` +
        `device's maxStorageBufferBindingSize (${limit} bytes). Load the model with ` +
        `{ dtype: "float16" } (half the bytes) or { quantize: "nf4" } (about an eighth), or use a GPU that binds more.`,
    );
  }

  /** Registers a new weight: as a trainable tf.Variable for full fine-tuning, else as a frozen tensor. */
  private keep<T extends tf.Tensor>(t: T): T {
    const out = this.trainable ? (tf.variable(t, true) as unknown as T) : t;
    if (out !== t) t.dispose();
    return this.track(out);
  }

  private track<M extends Matrix | tf.Tensor>(m: M): M {
    this.made.push(m);
    tagMemory("baseWeights", matrixTensors(m));
    return m;
  }

  /**
   * A frozen matrix in the requested storage: f32 (a variable when training every weight), f16, or quantized.
   * `quantized` says whether `quantize` applies (projections) or only `dtype` (embeddings).
   */
  private matrix(
    name: string,
    values: Float32Array,
    shape: [number, number],
    quantized: boolean,
  ): Matrix {
    const { quantize, doubleQuant, dtype } = this.options;
    const format = quantized && quantize ? quantize : dtype;
    if (format === undefined || format === "float32")
      return this.keep(tf.tensor2d(values, shape));
    return this.track(
      packMatrix(values, shape, format, {
        doubleQuant: format !== "float16" && (doubleQuant ?? false),
        name: `${this.source.description}: ${name}`,
      }),
    );
  }

  /** Records how a checkpoint tensor maps back from the model's live tensors, for saving. */
  private record(
    name: string,
    get: () => (tf.Tensor | PackedMatrix)[],
    unmap?: (v: number) => number,
  ): void {
    this.entries.push({ name, get, unmap });
  }

  /** Every loaded checkpoint tensor and where its current value lives. */
  parameters(): ParameterEntry[] {
    return this.entries;
  }

  async tensor1d(name: string, size: number): Promise<tf.Tensor1D> {
    const t = this.keep(tf.tensor1d(await this.read(name, [size])));
    this.record(name, () => [t]);
    return t;
  }

  /** A 1-D weight transformed on the CPU before upload (Gemma's 1 + w norm scale). */
  async tensor1dMapped(
    name: string,
    size: number,
    f: (v: number) => number,
    /** The inverse of `f`, for saving. */
    inverse: (v: number) => number,
  ): Promise<tf.Tensor1D> {
    const t = this.keep(tf.tensor1d((await this.read(name, [size])).map(f)));
    this.record(name, () => [t], inverse);
    return t;
  }

  async tensor2d(name: string, shape: [number, number]): Promise<tf.Tensor2D> {
    const t = this.keep(tf.tensor2d(await this.read(name, shape), shape));
    this.record(name, () => [t]);
    return t;
  }

  /** A projection named by its HF module name, read from `${module}.weight` (and `.bias`) in its stored layout. */
  async linear(
    module: string,
    layout: "in_out" | "out_in",
    inFeatures: number,
    outFeatures: number,
    bias: boolean,
  ): Promise<Linear> {
    const shape: [number, number] =
      layout === "in_out"
        ? [inFeatures, outFeatures]
        : [outFeatures, inFeatures];
    const weight = this.fitting(
      `${module}.weight`,
      this.matrix(
        `${module}.weight`,
        await this.read(`${module}.weight`, shape),
        shape,
        true,
      ),
    );
    const b = bias
      ? this.keep(tf.tensor1d(await this.read(`${module}.bias`, [outFeatures])))
      : null;
    const linear = new Linear(module, weight, b, layout);
    // The live weight: merging an adapter replaces it, and a merged model saves the merged values.
    this.record(`${module}.weight`, () => [linear.weight]);
    if (b) this.record(`${module}.bias`, () => [b]);
    return linear;
  }

  /** A [V, C] table split into row chunks that each fit one binding. */
  async embedding(
    name: string,
    vocab: number,
    dim: number,
    scale = 1,
  ): Promise<Embedding> {
    const data = await this.read(name, [vocab, dim]);
    const rows = Embedding.rowsPerChunk(dim, this.maxBindingBytes);
    const chunks: Matrix[] = [];
    for (let start = 0; start < vocab; start += rows) {
      const end = Math.min(vocab, start + rows);
      const slice = data.subarray(start * dim, end * dim);
      chunks.push(
        this.matrix(
          `${name} rows ${start}..${end - 1}`,
          scale === 1 ? slice : slice.map((v) => v * scale),
          [end - start, dim],
          false,
        ),
      );
    }
    this.record(name, () => chunks);
    return new Embedding(name, chunks, this.maxBindingBytes);
  }

  /** Checkpoint tensors the architecture read. */
  usedNames(): string[] {
    return [...this.readNames];
  }

  /** Checkpoint tensors nothing read (apart from known buffers): a sign of a config/weights mismatch. */
  unused(): string[] {
    return [...this.keys].filter(
      (n) => !this.used.has(n) && !IGNORED.some((re) => re.test(n)),
    );
  }

  /** Frees every tensor made so far; called when loading fails part-way. */
  disposeAll(): void {
    for (const m of this.made) m.dispose();
    this.made.length = 0;
  }
}

/**
 * Runs `build` with a loader; on failure disposes every tensor it had uploaded and rethrows. On success, warns
 * once about checkpoint tensors the architecture did not use.
 */
export async function loadWeights<M extends CausalLM>(
  source: WeightSource,
  maxBindingBytes: number,
  build: (loader: WeightLoader) => Promise<M>,
  options: WeightOptions = {},
  basePrefix = "",
): Promise<M> {
  const loader = new WeightLoader(source, maxBindingBytes, options, basePrefix);
  try {
    const model = await build(loader);
    model.recordModules(loader.usedNames());
    model.recordParameters(loader.parameters());
    const unused = loader.unused();
    if (unused.length > 0) {
      console.warn(
        `webtune: ${source.description}: ${unused.length} checkpoint tensor(s) were not used, e.g. ${unused.slice(0, 5).join(", ")}.`,
      );
    }
    return model;
  } catch (error) {
    loader.disposeAll();
    throw error;
  }
}

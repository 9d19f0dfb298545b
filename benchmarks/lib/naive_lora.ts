/**
 * The benchmark's "naive baseline": LoRA on a frozen Llama (SmolLM2, Qwen2) or GPT-2, written the way a tfjs user
 * would write it from HF's modeling_llama.py and modeling_gpt2.py. Frozen weights are plain tf.Tensors, LoRA is
 * x·Aᵀ·Bᵀ·(alpha/r) with tf.matMul, attention is matMul + causal mask + tf.softmax, the loss is
 * tf.losses.softmaxCrossEntropy, and gradients come from tf.variableGrads. No custom kernels and nothing from
 * webtune's model code: only core's WeightSource type and its runtime (for the device's limits).
 *
 * One concession to the device: a storage binding holds at most maxStorageBufferBindingSize bytes (128 MiB on
 * lavapipe), and tfjs does not check it: a bigger tensor silently reads wrong values. So a vocabulary table over
 * the limit (GPT-2's [50257, 768] is 154 MB) is kept as row chunks, and the LM head and the loss run over blocks
 * of token rows whose [rows, V] logits fit one binding (full logits at 1024 tokens are 201 MB for SmolLM2).
 *
 * Letters: B batch, T tokens, N = B·T, C hidden size, H query heads, G kv heads, D head dim, F MLP size,
 * V vocabulary, R rank.
 */
import * as tf from "@tensorflow/tfjs";
import { gpuInfo, type WeightSource } from "@webtune/core";

export interface NaiveLoraOptions {
  r: number;
  alpha: number;
  /** Module-name suffixes, as PEFT's target_modules list: "q_proj", "c_attn", "mlp.c_proj". */
  targetModules: string[];
  /** B starts at zero (PEFT's default) or uniform in ±1/√r, so the adapter changes the output from step 0. */
  initB?: "zeros" | "random";
  /** Seed of the random A (and B) values. Default 0. */
  seed?: number;
  /** Largest tensor one storage binding holds, in bytes. Default: the running device's limit. */
  maxBindingBytes?: number;
}

/** One adapted projection: PEFT's shapes, A: [R, IN], B: [OUT, R]. */
export interface NaiveAdapter {
  /** The HF module name, e.g. "model.layers.0.self_attn.q_proj". */
  module: string;
  A: tf.Variable;
  B: tf.Variable;
}

export interface NaiveLoraModel {
  /** Mean next-token cross-entropy: position t predicts labels[t + 1]; labels of -100 are ignored. */
  loss(inputIds: number[][], labels: number[][]): tf.Scalar;
  /** Every A and B, in module order. */
  readonly trainableVariables: tf.Variable[];
  readonly adapters: NaiveAdapter[];
  /** One optimizer step on the LoRA weights; returns the loss (the caller disposes it). */
  step(
    inputIds: number[][],
    labels: number[][],
    optimizer: tf.Optimizer,
  ): tf.Scalar;
  dispose(): void;
}

const IGNORE_INDEX = -100;

/** A projection y = x·W (+ b) (+ s·x·Aᵀ·Bᵀ). nn.Linear stores W as [OUT, IN], GPT-2's Conv1D as [IN, OUT]. */
class Projection {
  lora: { A: tf.Variable; B: tf.Variable } | undefined;

  constructor(
    readonly module: string,
    readonly W: tf.Tensor2D,
    readonly bias: tf.Tensor1D | undefined,
    readonly conv1d: boolean,
    readonly scale: number,
  ) {}

  /** x: [N, IN] -> [N, OUT] */
  apply(x: tf.Tensor): tf.Tensor {
    let y = tf.matMul(x, this.W, false, !this.conv1d);
    if (this.bias) y = y.add(this.bias);
    if (this.lora) {
      const { A, B } = this.lora;
      // x: [N, IN], A: [R, IN] -> [N, R]; B: [OUT, R] -> [N, OUT]
      const low = tf.matMul(tf.matMul(x, A, false, true), B, false, true);
      y = y.add(low.mul(this.scale));
    }
    return y;
  }

  get inFeatures(): number {
    return this.W.shape[this.conv1d ? 0 : 1];
  }

  get outFeatures(): number {
    return this.W.shape[this.conv1d ? 1 : 0];
  }
}

/** A [V, C] table as row chunks of at most one binding each (one chunk unless it is over the limit). */
class VocabTable {
  constructor(readonly chunks: { start: number; rows: tf.Tensor2D }[]) {}

  static fromValues(
    values: Float32Array,
    V: number,
    C: number,
    maxBytes: number,
  ): VocabTable {
    const rowsPerChunk = Math.max(1, Math.floor(maxBytes / (C * 4)));
    const chunks = [];
    for (let start = 0; start < V; start += rowsPerChunk) {
      const end = Math.min(V, start + rowsPerChunk);
      const rows = tf.tensor2d(values.subarray(start * C, end * C), [
        end - start,
        C,
      ]);
      chunks.push({ start, rows });
    }
    return new VocabTable(chunks);
  }

  /** ids: int32 [N] -> [N, C]. With chunks, each gathers the ids in its rows and zeroes the others. */
  lookup(ids: tf.Tensor1D): tf.Tensor {
    if (this.chunks.length === 1) return tf.gather(this.chunks[0]!.rows, ids);
    const parts = this.chunks.map(({ start, rows }) => {
      const local = ids.sub(tf.scalar(start, "int32"));
      const inside = local
        .greaterEqual(0)
        .logicalAnd(local.less(rows.shape[0]));
      const gathered = tf.gather(rows, local.clipByValue(0, rows.shape[0] - 1));
      return gathered.mul(inside.cast("float32").expandDims(1));
    });
    return tf.addN(parts);
  }

  /** The tied LM head: h [N, C] -> logits [N, V]. */
  logits(h: tf.Tensor): tf.Tensor {
    const parts = this.chunks.map(({ rows }) =>
      tf.matMul(h, rows, false, true),
    );
    return parts.length === 1 ? parts[0]! : tf.concat(parts, 1);
  }

  tensors(): tf.Tensor[] {
    return this.chunks.map((c) => c.rows);
  }
}

interface Dims {
  type: "llama" | "qwen2" | "gpt2";
  V: number;
  C: number;
  layers: number;
  H: number;
  G: number;
  D: number;
  F: number;
  eps: number;
  ropeTheta: number;
  maxPositions: number;
  /** Llama's attention_bias covers q, k, v and o; Qwen2 has q, k, v biases only; GPT-2 biases everything. */
  bias: { qkv: boolean; o: boolean; mlp: boolean };
  tied: boolean;
}

function dimsOf(config: Record<string, unknown>): Dims {
  const num = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== "number")
      throw new Error(`naive_lora: config.json needs a number "${key}".`);
    return v;
  };
  const type = config["model_type"];
  if (type === "gpt2") {
    const act = config["activation_function"] ?? "gelu_new";
    if (act !== "gelu_new")
      throw new Error(`naive_lora: gpt2 activation ${String(act)}.`);
    const [C, H] = [num("n_embd"), num("n_head")];
    const F = (config["n_inner"] as number | null | undefined) ?? 4 * C;
    return {
      type,
      V: num("vocab_size"),
      C,
      layers: num("n_layer"),
      H,
      G: H,
      D: C / H,
      F,
      eps: num("layer_norm_epsilon", 1e-5),
      ropeTheta: 0,
      maxPositions: num("n_positions", 1024),
      bias: { qkv: true, o: true, mlp: true },
      tied: true,
    };
  }
  if (type !== "llama" && type !== "qwen2")
    throw new Error(
      `naive_lora: model_type ${String(type)}; only llama, qwen2, gpt2.`,
    );
  if (config["rope_scaling"] !== undefined && config["rope_scaling"] !== null)
    throw new Error("naive_lora: rope_scaling is not supported.");
  const [C, H] = [num("hidden_size"), num("num_attention_heads")];
  const attentionBias = config["attention_bias"] === true;
  return {
    type,
    V: num("vocab_size"),
    C,
    layers: num("num_hidden_layers"),
    H,
    G: num("num_key_value_heads", H),
    D: num("head_dim", C / H),
    F: num("intermediate_size"),
    eps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 10000),
    maxPositions: num("max_position_embeddings", 2048),
    bias: {
      qkv: type === "qwen2" || attentionBias,
      o: attentionBias,
      mlp: config["mlp_bias"] === true,
    },
    tied: config["tie_word_embeddings"] === true,
  };
}

interface Norm {
  w: tf.Tensor1D;
  /** LayerNorm's bias; absent for RMSNorm. */
  b?: tf.Tensor1D;
}

interface Layer {
  norm1: Norm;
  norm2: Norm;
  /** llama: q, k, v, o, gate, up, down; gpt2: c_attn, attn_proj, c_fc, mlp_proj. */
  proj: Record<string, Projection>;
}

/** The frozen model: every weight a plain tf.Tensor, uploaded once. */
interface Frozen {
  layers: Layer[];
  embed: VocabTable;
  /** The LM head: the embedding itself when tied. */
  head: VocabTable;
  /** GPT-2's learned positions [maxPositions, C]. */
  wpe?: tf.Tensor2D;
  finalNorm: Norm;
  tensors: tf.Tensor[];
}

/** Reads a checkpoint by HF module names, as transformers' from_pretrained would, into frozen tensors. */
async function loadFrozen(
  d: Dims,
  source: WeightSource,
  maxBytes: number,
  scale: number,
): Promise<Frozen> {
  const names = new Set(source.names());
  const gpt2 = d.type === "gpt2";
  // Some GPT-2 checkpoints store the names without "transformer.".
  const bare = gpt2 && !names.has("transformer.wte.weight");
  const read = (name: string) =>
    source.read(bare ? name.replace(/^transformer\./, "") : name);
  const tensors: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    tensors.push(t);
    return t;
  };
  const vec = async (name: string) => keep(tf.tensor1d(await read(name)));
  const norm = async (name: string): Promise<Norm> =>
    gpt2
      ? { w: await vec(`${name}.weight`), b: await vec(`${name}.bias`) }
      : { w: await vec(`${name}.weight`) };
  const proj = async (
    module: string,
    IN: number,
    OUT: number,
    bias: boolean,
  ) => {
    // nn.Linear stores [OUT, IN]; GPT-2's Conv1D stores [IN, OUT].
    const shape: [number, number] = gpt2 ? [IN, OUT] : [OUT, IN];
    const W = keep(tf.tensor2d(await read(`${module}.weight`), shape));
    const b = bias ? await vec(`${module}.bias`) : undefined;
    return new Projection(module, W, b, gpt2, scale);
  };
  const table = async (name: string) => {
    const t = VocabTable.fromValues(await read(name), d.V, d.C, maxBytes);
    tensors.push(...t.tensors());
    return t;
  };

  const { C, H, G, D, F, bias } = d;
  const layers: Layer[] = [];
  for (let i = 0; i < d.layers; i++) {
    const p = gpt2 ? `transformer.h.${i}` : `model.layers.${i}`;
    layers.push(
      gpt2
        ? {
            norm1: await norm(`${p}.ln_1`),
            norm2: await norm(`${p}.ln_2`),
            proj: {
              c_attn: await proj(`${p}.attn.c_attn`, C, 3 * C, true),
              attn_proj: await proj(`${p}.attn.c_proj`, C, C, true),
              c_fc: await proj(`${p}.mlp.c_fc`, C, F, true),
              mlp_proj: await proj(`${p}.mlp.c_proj`, F, C, true),
            },
          }
        : {
            norm1: await norm(`${p}.input_layernorm`),
            norm2: await norm(`${p}.post_attention_layernorm`),
            proj: {
              q: await proj(`${p}.self_attn.q_proj`, C, H * D, bias.qkv),
              k: await proj(`${p}.self_attn.k_proj`, C, G * D, bias.qkv),
              v: await proj(`${p}.self_attn.v_proj`, C, G * D, bias.qkv),
              o: await proj(`${p}.self_attn.o_proj`, H * D, C, bias.o),
              gate: await proj(`${p}.mlp.gate_proj`, C, F, bias.mlp),
              up: await proj(`${p}.mlp.up_proj`, C, F, bias.mlp),
              down: await proj(`${p}.mlp.down_proj`, F, C, bias.mlp),
            },
          },
    );
  }
  const embed = await table(
    gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight",
  );
  const untied = !d.tied && names.has("lm_head.weight");
  return {
    layers,
    embed,
    head: untied ? await table("lm_head.weight") : embed,
    wpe: gpt2
      ? keep(
          tf.tensor2d(await read("transformer.wpe.weight"), [
            d.maxPositions,
            C,
          ]),
        )
      : undefined,
    finalNorm: await norm(gpt2 ? "transformer.ln_f" : "model.norm"),
    tensors,
  };
}

/**
 * Loads a frozen checkpoint and attaches LoRA A/B variables to the target projections.
 *
 * @example
 * ```ts
 * const m = await buildNaiveLoraModel(config, weights, { r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"] });
 * const loss = m.step(ids, labels, tf.train.adam(1e-3));
 * ```
 */
export async function buildNaiveLoraModel(
  config: Record<string, unknown>,
  weights: WeightSource,
  lora: NaiveLoraOptions,
): Promise<NaiveLoraModel> {
  const d = dimsOf(config);
  const maxBytes =
    lora.maxBindingBytes ??
    gpuInfo().limits["maxStorageBufferBindingSize"] ??
    2 ** 31 - 1;
  const frozen = await loadFrozen(d, weights, maxBytes, lora.alpha / lora.r);
  return new NaiveLora(d, frozen, attachLora(frozen.layers, lora), maxBytes);
}

class NaiveLora implements NaiveLoraModel {
  readonly trainableVariables: tf.Variable[];

  constructor(
    private readonly d: Dims,
    private readonly m: Frozen,
    readonly adapters: NaiveAdapter[],
    /** Largest tensor one storage binding holds: the logits of one loss block stay within it. */
    private readonly maxBytes: number,
  ) {
    this.trainableVariables = adapters.flatMap((a) => [a.A, a.B]);
  }

  /** ids [B, T] -> final hidden states [N, C] */
  private hidden(ids: number[][]): tf.Tensor {
    const { d, m } = this;
    const [B, T] = [ids.length, ids[0]!.length];
    let x = m.embed.lookup(tf.tensor1d(ids.flat(), "int32")); // [N, C]
    if (m.wpe) {
      const positions = ids.flatMap(() => [...Array(T).keys()]);
      x = x.add(tf.gather(m.wpe, tf.tensor1d(positions, "int32")));
    }
    const mask = causalMask(T); // [T, T]
    if (d.type === "gpt2") {
      for (const layer of m.layers) x = gpt2Block(x, layer, d, B, T, mask);
    } else {
      const rope = ropeTables(T, d.D, d.ropeTheta);
      for (const layer of m.layers)
        x = llamaBlock(x, layer, d, B, T, mask, rope);
    }
    return norm(x, m.finalNorm, d);
  }

  loss(inputIds: number[][], labels: number[][]): tf.Scalar {
    const V = this.d.V;
    const bad = labels
      .flat()
      .find((t) => t !== IGNORE_INDEX && !(t >= 0 && t < V));
    if (labels.length !== inputIds.length || bad !== undefined)
      throw new Error(
        `naive_lora: labels must be [B, T] ids in [0, ${V}) or -100; found ${bad}.`,
      );
    return tf.tidy(() => {
      const { d, m } = this;
      const h = this.hidden(inputIds); // [N, C]
      // HF's shift: labels padded with -100 on the right, minus the first; position t predicts label t + 1.
      const targets = labels.flatMap((row) => [...row.slice(1), IGNORE_INDEX]);
      const count = targets.filter((t) => t !== IGNORE_INDEX).length;
      // Full logits [N, V] overflow one storage binding (201 MB for SmolLM2 at N = 1024): blocks of rows that fit.
      const rowsPerBlock = Math.max(1, Math.floor(this.maxBytes / (d.V * 4)));
      let total = tf.scalar(0);
      for (let start = 0; start < targets.length; start += rowsPerBlock) {
        const t = targets.slice(start, start + rowsPerBlock);
        const logits = m.head.logits(h.slice([start, 0], [t.length, d.C])); // [rows, V]
        const ids = tf.tensor1d(
          t.map((v) => Math.max(v, 0)),
          "int32",
        );
        const oneHot = tf.oneHot(ids, d.V).cast("float32"); // [rows, V]
        const weights = tf.tensor1d(t.map((v) => (v === IGNORE_INDEX ? 0 : 1)));
        const sum = tf.losses.softmaxCrossEntropy(
          oneHot,
          logits,
          weights,
          0,
          tf.Reduction.SUM,
        );
        total = total.add(sum);
      }
      return total.div(Math.max(count, 1));
    });
  }

  step(
    inputIds: number[][],
    labels: number[][],
    optimizer: tf.Optimizer,
  ): tf.Scalar {
    const f = () => this.loss(inputIds, labels);
    return optimizer.minimize(f, true, this.trainableVariables)!;
  }

  dispose(): void {
    tf.dispose([...this.m.tensors, ...this.trainableVariables]);
  }
}

/** A: uniform ±1/√IN (PEFT's kaiming-uniform bound); B: zeros or uniform ±1/√R. */
function attachLora(layers: Layer[], o: NaiveLoraOptions): NaiveAdapter[] {
  const matches = (module: string) =>
    o.targetModules.some((t) => module === t || module.endsWith(`.${t}`));
  const adapters: NaiveAdapter[] = [];
  let seed = o.seed ?? 0;
  for (const layer of layers) {
    for (const p of Object.values(layer.proj)) {
      if (!matches(p.module)) continue;
      const [IN, OUT, R] = [p.inFeatures, p.outFeatures, o.r];
      const a = 1 / Math.sqrt(IN);
      const b = 1 / Math.sqrt(R);
      // tf.variable keeps its own reference: the initial values are tidied away.
      const A = tf.tidy(() =>
        tf.variable(tf.randomUniform([R, IN], -a, a, "float32", seed++)),
      );
      const B = tf.tidy(() =>
        tf.variable(
          o.initB === "random"
            ? tf.randomUniform([OUT, R], -b, b, "float32", seed++)
            : tf.zeros([OUT, R]),
        ),
      );
      p.lora = { A, B };
      adapters.push({ module: p.module, A, B });
    }
  }
  if (adapters.length === 0)
    throw new Error(
      `naive_lora: targetModules ${o.targetModules.join(", ")} match no projection.`,
    );
  return adapters;
}

/** Additive causal mask [T, T]: 0 where key j ≤ query i, -1e9 above the diagonal. */
function causalMask(T: number): tf.Tensor2D {
  const lower = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
  return tf.sub(1, lower).mul(-1e9) as tf.Tensor2D;
}

/** RoPE tables cos, sin [T, D] of HF's default rotary embedding: freqs repeated over both halves. */
function ropeTables(
  T: number,
  D: number,
  theta: number,
): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const cos = new Float32Array(T * D);
  const sin = new Float32Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = t / Math.pow(theta, (2 * i) / D);
      cos[t * D + i] = cos[t * D + i + D / 2] = Math.cos(angle);
      sin[t * D + i] = sin[t * D + i + D / 2] = Math.sin(angle);
    }
  }
  return { cos: tf.tensor2d(cos, [T, D]), sin: tf.tensor2d(sin, [T, D]) };
}

/** x: [B, heads, T, D] -> x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1]. */
function applyRope(
  x: tf.Tensor,
  rope: { cos: tf.Tensor2D; sin: tf.Tensor2D },
): tf.Tensor {
  const [x1, x2] = tf.split(x, 2, 3);
  const rotated = tf.concat([x2!.neg(), x1!], 3);
  return x.mul(rope.cos).add(rotated.mul(rope.sin));
}

/** x: [N, C] -> RMSNorm (llama) or LayerNorm (gpt2) over C. */
function norm(
  x: tf.Tensor,
  n: { w: tf.Tensor1D; b?: tf.Tensor1D },
  d: Dims,
): tf.Tensor {
  if (!n.b) {
    const variance = x.square().mean(-1, true);
    return x.mul(tf.rsqrt(variance.add(d.eps))).mul(n.w);
  }
  const { mean, variance } = tf.moments(x, -1, true);
  return x
    .sub(mean)
    .mul(tf.rsqrt(variance.add(d.eps)))
    .mul(n.w)
    .add(n.b);
}

/** [N, heads·D] -> [B, heads, T, D] */
function heads(x: tf.Tensor, B: number, T: number, n: number, D: number) {
  return x.reshape([B, T, n, D]).transpose([0, 2, 1, 3]);
}

/** softmax(q·kᵀ/√D + mask)·v, with q, k, v: [B, H, T, D] -> [N, H·D] */
function attend(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  mask: tf.Tensor2D,
): tf.Tensor {
  const [B, H, T, D] = q.shape as [number, number, number, number];
  const scores = tf
    .matMul(q, k, false, true)
    .mul(1 / Math.sqrt(D))
    .add(mask);
  const y = tf.matMul(tf.softmax(scores), v); // [B, H, T, D]
  return y.transpose([0, 2, 1, 3]).reshape([B * T, H * D]);
}

/**
 * HF's repeat_kv: [B, G, T, D] -> [B, H, T, D], each kv head serving H/G query heads. Tiled at rank 3: tfjs's
 * WebGPU Tile reads rank-5 tensors back to the CPU synchronously (which throws in Node).
 */
function repeatKv(x: tf.Tensor, nRep: number): tf.Tensor {
  if (nRep === 1) return x;
  const [B, G, T, D] = x.shape as [number, number, number, number];
  return x
    .reshape([B * G, 1, T * D])
    .tile([1, nRep, 1])
    .reshape([B, G * nRep, T, D]);
}

/** One Llama/Qwen2 decoder layer, x: [N, C] -> [N, C]. */
function llamaBlock(
  x: tf.Tensor,
  l: Layer,
  d: Dims,
  B: number,
  T: number,
  mask: tf.Tensor2D,
  rope?: { cos: tf.Tensor2D; sin: tf.Tensor2D },
): tf.Tensor {
  const p = l.proj;
  const h = norm(x, l.norm1, d);
  const q = applyRope(heads(p["q"]!.apply(h), B, T, d.H, d.D), rope!);
  const k = applyRope(heads(p["k"]!.apply(h), B, T, d.G, d.D), rope!);
  const v = heads(p["v"]!.apply(h), B, T, d.G, d.D);
  const nRep = d.H / d.G;
  const y = attend(q, repeatKv(k, nRep), repeatKv(v, nRep), mask);
  x = x.add(p["o"]!.apply(y));
  const m = norm(x, l.norm2, d);
  const gate = p["gate"]!.apply(m);
  const act = gate.mul(tf.sigmoid(gate)); // SiLU
  return x.add(p["down"]!.apply(act.mul(p["up"]!.apply(m))));
}

/** One GPT-2 block, x: [N, C] -> [N, C]. */
function gpt2Block(
  x: tf.Tensor,
  l: Layer,
  d: Dims,
  B: number,
  T: number,
  mask: tf.Tensor2D,
): tf.Tensor {
  const p = l.proj;
  const h = norm(x, l.norm1, d);
  const [q, k, v] = tf.split(p["c_attn"]!.apply(h), 3, 1); // [N, C] each
  const y = attend(
    heads(q!, B, T, d.H, d.D),
    heads(k!, B, T, d.H, d.D),
    heads(v!, B, T, d.H, d.D),
    mask,
  );
  x = x.add(p["attn_proj"]!.apply(y));
  const m = norm(x, l.norm2, d);
  const f = p["c_fc"]!.apply(m);
  // gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
  const inner = f.add(f.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
  const act = f.mul(0.5).mul(inner.tanh().add(1));
  return x.add(p["mlp_proj"]!.apply(act));
}

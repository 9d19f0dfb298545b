/**
 * Token decoders: what generation and batched greedy evaluation call once per step, feeding each row's new tokens
 * and getting each row's next-token logits. Two paths give the same numbers:
 * - the engine path: a compiled decoding graph per new-token count (the prompt's prefill, then one token), replayed
 *   every step over a KV cache written in place; one writeBuffer of ids, one of the position, one submit;
 * - the tape path: tfjs ops and a cache that grows by concatenation (`CausalLM.nextTokenLogits`), for backends
 *   other than WebGPU, a classification head, and as the oracle of the engine path's tests.
 *
 * Letters: B rows, T new tokens, V vocabulary, S positions the cache holds.
 */
import * as tf from "@tensorflow/tfjs";
import type { CompiledGraph } from "../engine/executor.js";
import { Engine, type BufferCopy } from "../engine/engine.js";
import { StepBuilder } from "../engine/builder.js";
import { graphLimits, StepGraph, type GraphTensor } from "../engine/graph.js";
import { KvCache } from "../engine/kv_cache.js";
import { ConfigError, ShapeError } from "../errors.js";
import { decodeStepParams } from "../kernels/step_params.js";
import { gpuDevice, isSoftwareGpu } from "../runtime/runtime.js";
import type { CausalLM } from "./causal_lm.js";
import { pickChunks } from "../kernels/argmax/program.js";
import {
  recordDecode,
  type DecodeIO,
  type DecodeOutput,
} from "./decode_step.js";
import { argmax } from "./sampling.js";
import type { StepArchitecture } from "./step.js";

export interface TokenDecoder {
  /** "engine" or "tape": which path computes the logits. */
  readonly path: "engine" | "tape";
  /** Tokens already in the cache. */
  readonly position: number;
  /**
   * Feeds each row's next tokens (rows of equal length: the prompt, then one token a step) and resolves with each
   * row's logits after its last one: [B·V], row-major.
   */
  next(ids: number[][]): Promise<Float32Array>;
  /** As `next`, but only each row's most likely token (the first maximum): B ids. */
  nextGreedy(ids: number[][]): Promise<number[]>;
  /** Frees the cache (and the engine path's graphs). */
  dispose(): void;
}

function checkRows(ids: number[][], B: number): number {
  const T = ids[0]?.length ?? 0;
  if (ids.length !== B || T === 0 || ids.some((r) => r.length !== T))
    throw new ShapeError(
      `decoder: expected ${B} rows of equal, non-zero length, got ${ids.length} rows of lengths ` +
        `${[...new Set(ids.map((r) => r.length))].join(", ")}.`,
    );
  return T;
}

class TapeDecoder implements TokenDecoder {
  readonly path = "tape";
  private readonly cache;

  constructor(
    private readonly lm: CausalLM,
    private readonly B: number,
  ) {
    this.cache = lm.newCache();
  }

  get position(): number {
    return this.cache.length;
  }

  async next(ids: number[][]): Promise<Float32Array> {
    checkRows(ids, this.B);
    const logits = this.lm.nextTokenLogits(ids, this.cache);
    try {
      return (await logits.data()) as Float32Array;
    } finally {
      logits.dispose();
    }
  }

  async nextGreedy(ids: number[][]): Promise<number[]> {
    const all = await this.next(ids);
    const V = this.lm.dims.vocabSize;
    return ids.map((_, b) => argmax(all.subarray(b * V, (b + 1) * V)));
  }

  dispose(): void {
    this.cache.dispose();
  }
}

/** The most compiled graphs a decode engine keeps (one per new-token count, cache shape and output). */
const MAX_PLANS = 8;
/** The most shared caches a decode engine keeps (see `shared`). */
const MAX_SHARED = 4;

/**
 * Compiled decoding graphs on one engine, over the KV caches it makes: a graph per (cache, new-token count,
 * whether every row's logits are read), compiled on first use and replayed.
 */
export class DecodeEngine {
  private readonly engine: Engine;
  private readonly caches = new Set<KvCache>();
  private readonly plans = new Map<
    string,
    { graph: CompiledGraph; io: DecodeIO }
  >();
  private readonly ids = new WeakMap<KvCache, number>();
  private nextId = 0;

  constructor(
    private readonly arch: StepArchitecture,
    private readonly layers: number,
    readonly vocabSize: number,
  ) {
    this.engine = new Engine(gpuDevice());
  }

  private readonly pool = new Map<string, KvCache>();

  /**
   * A cache of B rows and S positions kept for reuse (with its graphs) by later calls of the same shape; the
   * least recently asked for is released past a few shapes.
   */
  shared(B: number, S: number): KvCache {
    const key = `${B}x${S}`;
    let cache = this.pool.get(key);
    if (cache) this.pool.delete(key);
    else cache = this.cache(B, S);
    this.pool.set(key, cache);
    if (this.pool.size > MAX_SHARED) {
      const [oldest, evicted] = this.pool.entries().next().value!;
      this.pool.delete(oldest);
      this.release(evicted);
    }
    return cache;
  }

  /** A cache of B rows and S positions, freed with the engine (or by `release`). */
  cache(B: number, S: number): KvCache {
    const { kvHeads: G, headDim: D } = this.arch.decoding!;
    const cache = new KvCache(this.engine.device, {
      layers: this.layers,
      B,
      G,
      S,
      D,
    });
    this.caches.add(cache);
    this.ids.set(cache, this.nextId++);
    return cache;
  }

  /** Frees a cache and the graphs bound to it. */
  release(cache: KvCache): void {
    const prefix = `${this.ids.get(cache)}:`;
    for (const [key, plan] of this.plans)
      if (key.startsWith(prefix)) {
        this.engine.release(plan.graph);
        this.plans.delete(key);
      }
    cache.dispose();
    this.caches.delete(cache);
  }

  private plan(cache: KvCache, T: number, output: DecodeOutput) {
    const key = `${this.ids.get(cache)}:${T}:${output}`;
    let plan = this.plans.get(key);
    if (plan) {
      this.plans.delete(key); // re-inserted below: most recently used last
    } else {
      const g = new StepGraph(graphLimits(this.engine.device));
      const s = new StepBuilder(g, isSoftwareGpu(), "eval");
      const io = recordDecode(s, this.arch, cache.shape.B, T, cache, output);
      plan = { graph: this.engine.compile(g), io };
    }
    this.plans.set(key, plan);
    if (this.plans.size > MAX_PLANS) {
      const [oldest, evicted] = this.plans.entries().next().value!;
      this.engine.release(evicted.graph);
      this.plans.delete(oldest);
    }
    return plan;
  }

  /**
   * Runs `ids` (B rows of T new tokens) at `position` over `cache`, after `copies`; resolves with each row's last
   * logits [B·V], or with `allRows` every new token's [B·T·V].
   */
  async run(
    cache: KvCache,
    ids: number[][],
    position: number,
    options: { allRows?: boolean; copies?: BufferCopy[] } = {},
  ): Promise<Float32Array> {
    const allRows = options.allRows ?? false;
    const values = await this.launch(
      cache,
      ids,
      position,
      allRows ? "all" : "last",
      options.copies,
    );
    return this.assemble(
      values,
      allRows ? ids.length * (ids[0]?.length ?? 0) : cache.shape.B,
    );
  }

  /** As `run`, but resolves with each row's most likely next token (the first maximum), found on the GPU. */
  async runGreedy(
    cache: KvCache,
    ids: number[][],
    position: number,
  ): Promise<number[]> {
    const parts = await this.launch(cache, ids, position, "greedy");
    return pickChunks(parts, cache.shape.B);
  }

  private async launch(
    cache: KvCache,
    ids: number[][],
    position: number,
    output: DecodeOutput,
    copies?: BufferCopy[],
  ): Promise<Float32Array[]> {
    const { B, S } = cache.shape;
    const T = checkRows(ids, B);
    if (position + T > S)
      throw new ShapeError(
        `decoder: ${position} cached + ${T} new tokens is over the cache's ${S} positions.`,
      );
    const { graph, io } = this.plan(cache, T, output);
    const inputs: [CompiledGraph, GraphTensor, Int32Array][] = [
      [graph, io.ids, Int32Array.from(ids.flat())],
    ];
    if (io.last)
      inputs.push([
        graph,
        io.last,
        Int32Array.from({ length: B }, (_, b) => b * T + T - 1),
      ]);
    return this.engine.run({
      graphs: [graph],
      inputs,
      params: decodeStepParams(position),
      readback: io.logits.map((z) => [graph, z]),
      copies,
    });
  }

  /** [rows, V] from the chunks' [rows, Vc] blocks, softcapped as the LM head is. */
  private assemble(chunks: Float32Array[], rows: number): Float32Array {
    const V = this.vocabSize;
    const out = new Float32Array(rows * V);
    let v0 = 0;
    for (const z of chunks) {
      const Vc = z.length / rows;
      for (let r = 0; r < rows; r++)
        out.set(z.subarray(r * Vc, (r + 1) * Vc), r * V + v0);
      v0 += Vc;
    }
    const cap = this.arch.logitSoftcap;
    if (cap !== undefined)
      for (let i = 0; i < out.length; i++)
        out[i] = cap * Math.tanh(out[i]! / cap);
    return out;
  }

  dispose(): void {
    this.engine.dispose();
    for (const c of this.caches) c.dispose();
    this.caches.clear();
    this.plans.clear();
    this.pool.clear();
  }
}

class EngineDecoder implements TokenDecoder {
  readonly path = "engine";
  position = 0;
  private readonly cache: KvCache;

  constructor(
    private readonly decode: DecodeEngine,
    B: number,
    S: number,
  ) {
    try {
      this.cache = decode.cache(B, S);
    } catch (error) {
      decode.dispose();
      throw error;
    }
  }

  async next(ids: number[][]): Promise<Float32Array> {
    const logits = await this.decode.run(this.cache, ids, this.position);
    this.position += ids[0]!.length;
    return logits;
  }

  async nextGreedy(ids: number[][]): Promise<number[]> {
    const next = await this.decode.runGreedy(this.cache, ids, this.position);
    this.position += ids[0]!.length;
    return next;
  }

  dispose(): void {
    this.decode.dispose();
  }
}

/** The decode engine of `lm` where the engine path is available (WebGPU, a compiled decoding graph, no head). */
export function decodeEngine(lm: CausalLM): DecodeEngine | undefined {
  const arch = lm.taskHead ? undefined : lm.stepArchitecture();
  if (arch?.decoding === undefined || tf.getBackend() !== "webgpu")
    return undefined;
  return new DecodeEngine(arch, lm.dims.numLayers, lm.dims.vocabSize);
}

/**
 * A decoder for B rows that will reach at most S positions: the engine path when the backend is WebGPU and the
 * architecture decodes in a compiled graph, else the tape path. `path` forces one ("engine" throws where it is not
 * available).
 */
export function tokenDecoder(
  lm: CausalLM,
  B: number,
  S: number,
  path?: "engine" | "tape",
): TokenDecoder {
  if (!Number.isInteger(B) || B < 1 || !Number.isInteger(S) || S < 1)
    throw new ConfigError(
      `decoder: ${B} rows and ${S} positions; expected positive integers.`,
    );
  if (S > lm.dims.maxPositions)
    throw new ShapeError(
      `decoder: ${S} positions is over the model's ${lm.dims.maxPositions}; shorten the prompt or the generation.`,
    );
  const engine = path === "tape" ? undefined : decodeEngine(lm);
  if (path === "engine" && !engine)
    throw new ConfigError(
      "decoder: the engine path needs the WebGPU backend, an architecture with a compiled decoding graph and no " +
        "classification head.",
    );
  return engine ? new EngineDecoder(engine, B, S) : new TapeDecoder(lm, B);
}

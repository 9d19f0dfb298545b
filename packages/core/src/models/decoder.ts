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
import { Engine } from "../engine/engine.js";
import { StepBuilder } from "../engine/builder.js";
import { graphLimits, StepGraph } from "../engine/graph.js";
import { KvCache } from "../engine/kv_cache.js";
import { ConfigError, ShapeError } from "../errors.js";
import { decodeStepParams } from "../kernels/step_params.js";
import { gpuDevice, isSoftwareGpu } from "../runtime/runtime.js";
import type { CausalLM } from "./causal_lm.js";
import { recordDecode, type DecodeIO } from "./decode_step.js";
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

  dispose(): void {
    this.cache.dispose();
  }
}

class EngineDecoder implements TokenDecoder {
  readonly path = "engine";
  position = 0;
  private readonly engine: Engine;
  private readonly cache: KvCache;
  private readonly plans = new Map<
    number,
    { graph: CompiledGraph; io: DecodeIO }
  >();

  constructor(
    private readonly arch: StepArchitecture,
    layers: number,
    private readonly B: number,
    private readonly S: number,
    private readonly vocabSize: number,
  ) {
    const device = gpuDevice();
    const { kvHeads: G, headDim: D } = arch.decoding!;
    this.engine = new Engine(device);
    try {
      this.cache = new KvCache(device, { layers, B, G, S, D });
    } catch (error) {
      this.engine.dispose();
      throw error;
    }
  }

  /** The graph of T new tokens a row, recorded and compiled on first use. */
  private plan(T: number) {
    let plan = this.plans.get(T);
    if (!plan) {
      const g = new StepGraph(graphLimits(this.engine.device));
      const s = new StepBuilder(g, isSoftwareGpu(), "eval");
      const io = recordDecode(s, this.arch, this.B, T, this.cache);
      plan = { graph: this.engine.compile(g), io };
      this.plans.set(T, plan);
    }
    return plan;
  }

  async next(ids: number[][]): Promise<Float32Array> {
    const { B, S } = this;
    const T = checkRows(ids, B);
    if (this.position + T > S)
      throw new ShapeError(
        `decoder: ${this.position} cached + ${T} new tokens is over the cache's ${S} positions.`,
      );
    const { graph, io } = this.plan(T);
    const flat = Int32Array.from(ids.flat());
    const inputs: [CompiledGraph, typeof io.ids, Int32Array][] = [
      [graph, io.ids, flat],
    ];
    if (io.last)
      inputs.push([
        graph,
        io.last,
        Int32Array.from({ length: B }, (_, b) => b * T + T - 1),
      ]);
    const values = await this.engine.run({
      graphs: [graph],
      inputs,
      params: decodeStepParams(this.position),
      readback: io.logits.map((z) => [graph, z]),
    });
    this.position += T;
    return this.assemble(values);
  }

  /** [B, V] from the chunks' [B, Vc] blocks, softcapped as the LM head is. */
  private assemble(chunks: Float32Array[]): Float32Array {
    const { B, vocabSize: V } = this;
    const out = new Float32Array(B * V);
    let v0 = 0;
    for (const z of chunks) {
      const Vc = z.length / B;
      for (let b = 0; b < B; b++)
        out.set(z.subarray(b * Vc, (b + 1) * Vc), b * V + v0);
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
    this.cache.dispose();
    this.plans.clear();
  }
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
  const arch = lm.taskHead ? undefined : lm.stepArchitecture();
  const available =
    arch?.decoding !== undefined && tf.getBackend() === "webgpu";
  if (path === "engine" && !available)
    throw new ConfigError(
      "decoder: the engine path needs the WebGPU backend, an architecture with a compiled decoding graph and no " +
        "classification head.",
    );
  if (path === "tape" || !available) return new TapeDecoder(lm, B);
  return new EngineDecoder(arch!, lm.dims.numLayers, B, S, lm.dims.vocabSize);
}

/**
 * Decoding in a compiled graph (kernels/kv_cache/program.ts): a run's new keys and values written into a layer's
 * KV cache at the step's position, and attention of the run's queries over the cache. The cache is two external
 * tensors [B, G, S, D] that outlive the run (engine/kv_cache.ts); the position is a step parameter, so one graph
 * serves every token.
 *
 * Letters: B batch, T new tokens, H query heads, G kv heads, D head dim, S cache rows.
 */
import {
  cacheWrite,
  decodeAttention,
  ropeQkv,
  type CacheView,
  type DecodeOptions,
} from "../../kernels/kv_cache/program.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";
import type { Heads } from "./attention.js";
import type { RopeTables } from "./rope.js";

/** One layer's cache as a graph binds it: keys (after RoPE) and values, each [B, G, S, D]. */
export interface LayerCache {
  k: GraphTensor;
  v: GraphTensor;
  /** Rows: the most positions a sequence may reach. */
  S: number;
}

const viewOf = (h: Heads): CacheView => ({
  offset: h.offset,
  sB: h.sB,
  sH: h.sH,
  sT: h.sT,
});

/** Writes the heads of `src` ([B, G, T, D], a projection's view) into `cache` at rows p..p+T−1. */
export function writeCache(
  s: StepBuilder,
  label: string,
  src: Heads,
  cache: GraphTensor,
  S: number,
): void {
  s.g.dispatch(
    `${label} cache write`,
    cacheWrite({ B: src.B, G: src.heads, T: src.T, D: src.D, S }, viewOf(src)),
    [cache, src.tensor],
  );
}

/** o (its heads) = attention of q's T rows at positions p..p+T−1 over the cache's rows 0..p+t. */
export function attendCache(
  s: StepBuilder,
  label: string,
  io: { q: Heads; o: Heads },
  cache: LayerCache,
  G: number,
  options: DecodeOptions,
): void {
  const { q, o } = io;
  s.g.dispatch(
    label,
    decodeAttention(
      { B: q.B, T: q.T, H: q.heads, G, D: q.D, S: cache.S },
      viewOf(q),
      viewOf(o),
      options,
      s.g.limits.maxComputeWorkgroupsPerDimension,
    ),
    [o.tensor, q.tensor, cache.k, cache.v],
  );
}

/**
 * A RoPE model's attention inputs for a decoding run, in one dispatch: q rotated at its positions into a new
 * [B, H, T, D], k rotated into the cache and v copied into it, at rows p..p+T−1 (tables of every position).
 * Returns q's output.
 */
export function ropeIntoCache(
  s: StepBuilder,
  label: string,
  io: { q: Heads; k: Heads; v: Heads },
  tables: RopeTables,
  cache: LayerCache,
): GraphTensor {
  const { q, k, v } = io;
  const { B, T, heads: H, D } = q;
  const fused = q.tensor === k.tensor && k.tensor === v.tensor;
  const qOut = s.g.activation(`${label}.q_rope`, [B, H, T, D]);
  s.g.dispatch(
    `${label} rope q, k; cache k, v`,
    ropeQkv(
      { B, T, H, G: k.heads, D, S: cache.S },
      { q: viewOf(q), k: viewOf(k), v: viewOf(v) },
      fused,
    ),
    [
      qOut,
      cache.k,
      cache.v,
      ...(fused ? [q.tensor] : [q.tensor, k.tensor, v.tensor]),
      tables.cos,
      tables.sin,
    ],
  );
  return qOut;
}

/**
 * Choosing the next token from one row of logits, on the CPU, in HF's order: repetition penalty, temperature,
 * top-k, top-p, then a draw from a seeded generator (or the argmax when temperature is 0).
 */
import { ConfigError } from "../errors.js";

export interface SamplingOptions {
  /** 0 means greedy. Default 0. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  topP?: number;
  /** HF's CTRL-style penalty on tokens already present: > 1 discourages repeats. Default 1. */
  repetitionPenalty?: number;
}

export function validateSampling(
  o: SamplingOptions,
): Required<SamplingOptions> {
  const temperature = o.temperature ?? 0;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  if (!(temperature >= 0) || !Number.isFinite(temperature))
    throw new ConfigError(
      `generate: temperature must be >= 0, got ${temperature}.`,
    );
  if (!Number.isInteger(topK) || topK < 0)
    throw new ConfigError(
      `generate: topK must be an integer >= 0, got ${topK}.`,
    );
  if (!(topP > 0 && topP <= 1))
    throw new ConfigError(`generate: topP must be in (0, 1], got ${topP}.`);
  if (!(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) {
    throw new ConfigError(
      `generate: repetitionPenalty must be > 0, got ${repetitionPenalty}.`,
    );
  }
  return { temperature, topK, topP, repetitionPenalty };
}

/** mulberry32: a small, fast, seedable generator of uniforms in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Picks the next token id from `logits` (one row, length V) given the ids seen so far. */
export function sampleNext(
  logits: Float32Array,
  seen: Iterable<number>,
  o: Required<SamplingOptions>,
  random: () => number,
): number {
  const scores = Float64Array.from(logits);
  if (o.repetitionPenalty !== 1) {
    for (const id of new Set(seen)) {
      const s = scores[id]!;
      scores[id] = s > 0 ? s / o.repetitionPenalty : s * o.repetitionPenalty;
    }
  }
  if (o.temperature === 0) return argmax(scores);
  // Candidates sorted by score, cut by top-k, then softmax and the top-p nucleus.
  let order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!);
  if (o.topK > 0) order = order.slice(0, o.topK);
  const max = scores[order[0]!]!;
  const weights = order.map((id) =>
    Math.exp((scores[id]! - max) / o.temperature),
  );
  const total = weights.reduce((a, b) => a + b, 0);
  let keep = order.length;
  if (o.topP < 1) {
    let cumulative = 0;
    for (let i = 0; i < order.length; i++) {
      cumulative += weights[i]! / total;
      if (cumulative >= o.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  const kept = weights.slice(0, keep);
  let r = random() * kept.reduce((a, b) => a + b, 0);
  for (let i = 0; i < keep; i++) {
    r -= kept[i]!;
    if (r < 0) return order[i]!;
  }
  return order[keep - 1]!;
}

export function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

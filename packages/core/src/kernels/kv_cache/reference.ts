/**
 * Float64 CPU references of the decoding programs (`program.ts`): the cache write, and attention of new query
 * rows at positions p + t over a cache's rows 0..p+t (a sliding window and a softcap as the training kernels
 * have them, `kernels/attention/reference.ts`).
 *
 * Letters: B batch, G kv heads, H query heads, S cache rows, T new tokens, D head dim.
 */
import type { CacheView, DecodeDims, DecodeOptions } from "./program.js";

const at = (v: CacheView, b: number, h: number, t: number) =>
  v.offset + b * v.sB + h * v.sH + t * v.sT;

/** cache [B, G, S, D] with src's heads written at rows position..position+T−1. */
export function cacheWriteReference(
  cache: ArrayLike<number>,
  src: ArrayLike<number>,
  view: CacheView,
  dims: Pick<DecodeDims, "B" | "G" | "T" | "D" | "S">,
  position: number,
): Float64Array {
  const { B, G, T, D, S } = dims;
  const out = Float64Array.from(cache);
  for (let b = 0; b < B; b++)
    for (let g = 0; g < G; g++)
      for (let t = 0; t < T && position + t < S; t++)
        for (let d = 0; d < D; d++)
          out[((b * G + g) * S + position + t) * D + d] =
            src[at(view, b, g, t) + d]!;
  return out;
}

/** o [B, H, T, D] (dense) of queries at positions position + t over the caches' visible rows. */
export function decodeAttentionReference(
  q: ArrayLike<number>,
  qView: CacheView,
  kCache: ArrayLike<number>,
  vCache: ArrayLike<number>,
  dims: DecodeDims,
  options: DecodeOptions,
  position: number,
): Float64Array {
  const { B, T, H, G, D, S } = dims;
  const o = new Float64Array(B * H * T * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let t = 0; t < T; t++) {
        const pos = position + t;
        const lo =
          options.window === undefined
            ? 0
            : Math.max(0, pos - options.window + 1);
        const scores: number[] = [];
        for (let j = lo; j <= pos; j++) {
          let s = 0;
          for (let d = 0; d < D; d++)
            s +=
              q[at(qView, b, h, t) + d]! *
              kCache[((b * G + g) * S + j) * D + d]!;
          s *= options.scale;
          if (options.softcap !== undefined)
            s = options.softcap * Math.tanh(s / options.softcap);
          scores.push(s);
        }
        const max = Math.max(...scores);
        const p = scores.map((s) => Math.exp(s - max));
        const sum = p.reduce((a, x) => a + x, 0);
        const row = ((b * H + h) * T + t) * D;
        p.forEach((w, c) => {
          for (let d = 0; d < D; d++)
            o[row + d] =
              o[row + d]! +
              (w / sum) * vCache[((b * G + g) * S + lo + c) * D + d]!;
        });
      }
    }
  return o;
}

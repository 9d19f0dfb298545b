/**
 * CPU reference of the fused attention programs: plain float64 loops over the same strided views, the oracle of
 * their tests. It follows `attention()` in models/layers.ts: s = q·kᵀ·scale, optional cap·tanh(s / cap) before
 * the mask, key j visible from query i iff j ≤ i (and i − j < window), query head h reads kv head ⌊h / (H/G)⌋.
 *
 * Letters: B batch, T tokens, H query heads, G kv heads, D head dim.
 * Outputs are dense: o, dq [B, H, T, D]; dk, dv [B, G, T, D]; lse [B, H, T].
 */
import type {
  AttentionDims,
  AttentionOptions,
  AttentionView,
} from "./program.js";

/** The elements of a view, dense: [B, heads, T, D]. */
export function readView(
  data: ArrayLike<number>,
  view: AttentionView,
  dims: AttentionDims,
  heads: number,
): Float64Array {
  const { B, T, D } = dims;
  const [sB, sH, sT] = view.strides;
  const out = new Float64Array(B * heads * T * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < heads; h++)
      for (let t = 0; t < T; t++)
        for (let d = 0; d < D; d++)
          out[((b * heads + h) * T + t) * D + d] =
            data[view.offset + b * sB + h * sH + t * sT + d]!;
  return out;
}

export interface AttentionInputs {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
}

/**
 * The probabilities of query row (b, h, i) over keys 0..T-1 (zero where masked), and what the backward pass needs:
 * the capped scores' tanh (for the chain rule) and the row's log-sum-exp.
 */
function rowProbabilities(
  x: AttentionInputs,
  dims: AttentionDims,
  options: AttentionOptions,
  b: number,
  h: number,
  i: number,
): { p: Float64Array; tanh: Float64Array; lse: number } {
  const { T, H, G, D } = dims;
  const g = Math.floor(h / (H / G));
  const qRow = ((b * H + h) * T + i) * D;
  const p = new Float64Array(T);
  const tanh = new Float64Array(T);
  const visible = (j: number) =>
    j <= i && (options.window === undefined || i - j < options.window);
  let max = -Infinity;
  for (let j = 0; j < T; j++) {
    if (!visible(j)) continue;
    const kRow = ((b * G + g) * T + j) * D;
    let s = 0;
    for (let d = 0; d < D; d++) s += x.q[qRow + d]! * x.k[kRow + d]!;
    s *= options.scale;
    if (options.softcap !== undefined) {
      tanh[j] = Math.tanh(s / options.softcap);
      s = options.softcap * tanh[j]!;
    }
    p[j] = s;
    max = Math.max(max, s);
  }
  let sum = 0;
  for (let j = 0; j < T; j++) {
    p[j] = visible(j) ? Math.exp(p[j]! - max) : 0;
    sum += p[j]!;
  }
  for (let j = 0; j < T; j++) p[j] = p[j]! / sum;
  return { p, tanh, lse: max + Math.log(sum) };
}

/** o = softmax(s)·v and lse = log Σ_j exp(s_j), per query row. q: [B, H, T, D], k, v: [B, G, T, D]. */
export function attentionForwardReference(
  x: AttentionInputs,
  dims: AttentionDims,
  options: AttentionOptions,
): { o: Float64Array; lse: Float64Array } {
  const { B, T, H, G, D } = dims;
  const o = new Float64Array(B * H * T * D);
  const lse = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let i = 0; i < T; i++) {
        const row = rowProbabilities(x, dims, options, b, h, i);
        lse[(b * H + h) * T + i] = row.lse;
        const oRow = ((b * H + h) * T + i) * D;
        for (let j = 0; j < T; j++) {
          const vRow = ((b * G + g) * T + j) * D;
          for (let d = 0; d < D; d++)
            o[oRow + d] = o[oRow + d]! + row.p[j]! * x.v[vRow + d]!;
        }
      }
    }
  return { o, lse };
}

/**
 * The gradients of the forward's o given dO [B, H, T, D]:
 *   dP = dO·vᵀ,  dS = P ∘ (dP − Σ_j P∘dP) (∘ (1 − tanh²) with a softcap) · scale,
 *   dq = dS·k,  dk = dSᵀ·q,  dv = Pᵀ·dO   (dk, dv summed over the H/G query heads of each kv head).
 */
export function attentionBackwardReference(
  x: AttentionInputs,
  dO: Float64Array,
  dims: AttentionDims,
  options: AttentionOptions,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, T, H, G, D } = dims;
  const dq = new Float64Array(B * H * T * D);
  const dk = new Float64Array(B * G * T * D);
  const dv = new Float64Array(B * G * T * D);
  const dP = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let i = 0; i < T; i++) {
        const { p, tanh } = rowProbabilities(x, dims, options, b, h, i);
        const qRow = ((b * H + h) * T + i) * D;
        let delta = 0;
        for (let j = 0; j < T; j++) {
          const vRow = ((b * G + g) * T + j) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += dO[qRow + d]! * x.v[vRow + d]!;
          dP[j] = s;
          delta += p[j]! * s;
        }
        for (let j = 0; j < T; j++) {
          if (p[j] === 0) continue;
          const kRow = ((b * G + g) * T + j) * D;
          let dS = p[j]! * (dP[j]! - delta);
          if (options.softcap !== undefined) dS *= 1 - tanh[j]! * tanh[j]!;
          dS *= options.scale;
          for (let d = 0; d < D; d++) {
            dq[qRow + d] = dq[qRow + d]! + dS * x.k[kRow + d]!;
            dk[kRow + d] = dk[kRow + d]! + dS * x.q[qRow + d]!;
            dv[kRow + d] = dv[kRow + d]! + p[j]! * dO[qRow + d]!;
          }
        }
      }
    }
  return { dq, dk, dv };
}

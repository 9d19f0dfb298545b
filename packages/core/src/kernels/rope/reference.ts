/**
 * Float64 CPU references of the query/key preparation (`program.ts`): heads read from a strided view, an
 * optional per-head RMSNorm over D, rotate_half RoPE with [T, D] tables; and the backward to the view.
 *
 * Letters: B batch, H heads, T tokens, D head dim.
 */
import type { HeadView } from "./program.js";

/** The optional per-head RMSNorm: weight [D] (already 1 + w for Gemma), eps. */
export interface HeadNorm {
  weight: ArrayLike<number>;
  eps: number;
}

/** Calls `visit(row, src)` for each head row (b, h, t) in [B, H, T] order, with its first element in the view. */
function eachRow(v: HeadView, visit: (row: number, src: number) => void) {
  let row = 0;
  for (let b = 0; b < v.B; b++)
    for (let h = 0; h < v.H; h++)
      for (let t = 0; t < v.T; t++)
        visit(row++, v.offset + b * v.sB + h * v.sH + t * v.sT);
}

/** rsqrt(mean(x²) + eps) of the D values at x[src..]. */
function rowRstd(x: ArrayLike<number>, src: number, D: number, eps: number) {
  let sq = 0;
  for (let d = 0; d < D; d++) sq += x[src + d]! ** 2;
  return 1 / Math.sqrt(sq / D + eps);
}

/**
 * x (the view's array) -> out [B, H, T, D], rstd [B, H, T] (ones without the norm):
 * out = n·cos + rotate_half(n)·sin, n = x·rstd·weight (or x).
 */
export function qkRopeForwardReference(
  x: ArrayLike<number>,
  v: HeadView,
  cos: ArrayLike<number>,
  sin: ArrayLike<number>,
  norm?: HeadNorm,
): { out: Float64Array; rstd: Float64Array } {
  const { D } = v;
  const half = D / 2;
  const out = new Float64Array(v.B * v.H * v.T * D);
  const rstd = new Float64Array(v.B * v.H * v.T).fill(1);
  const n = new Float64Array(D);
  eachRow(v, (row, src) => {
    const t = row % v.T;
    if (norm) rstd[row] = rowRstd(x, src, D, norm.eps);
    for (let d = 0; d < D; d++)
      n[d] = norm ? x[src + d]! * rstd[row]! * norm.weight[d]! : x[src + d]!;
    for (let d = 0; d < D; d++) {
      const rotated = d < half ? -n[d + half]! : n[d - half]!;
      out[row * D + d] = n[d]! * cos[t * D + d]! + rotated * sin[t * D + d]!;
    }
  });
  return { out, rstd };
}

/**
 * dOut [B, H, T, D] -> the gradient of the view's elements, written into a copy of `into` (the view's array;
 * elements outside the view keep their values). The exact transpose of the forward: no assumption on the tables.
 */
export function qkRopeBackwardReference(
  dOut: ArrayLike<number>,
  x: ArrayLike<number>,
  v: HeadView,
  cos: ArrayLike<number>,
  sin: ArrayLike<number>,
  norm: HeadNorm | undefined,
  into: ArrayLike<number>,
): Float64Array {
  const { D } = v;
  const half = D / 2;
  const dx = Float64Array.from(into);
  const g = new Float64Array(D);
  eachRow(v, (row, src) => {
    const t = row % v.T;
    const dy = (d: number) => dOut[row * D + d]!;
    // dn = Rᵀ·dy: y[d] takes n[d]·cos[d] and, through rotate_half, ±n[d ∓ half]·sin[d].
    for (let d = 0; d < D; d++) {
      const other =
        d < half
          ? dy(d + half) * sin[t * D + d + half]!
          : -dy(d - half) * sin[t * D + d - half]!;
      g[d] = dy(d) * cos[t * D + d]! + other;
    }
    if (!norm) {
      for (let d = 0; d < D; d++) dx[src + d] = g[d]!;
      return;
    }
    const r = rowRstd(x, src, D, norm.eps);
    let sumGX = 0;
    for (let d = 0; d < D; d++) {
      g[d] = g[d]! * norm.weight[d]!;
      sumGX += g[d]! * x[src + d]!;
    }
    const k = (r ** 3 * sumGX) / D;
    for (let d = 0; d < D; d++) dx[src + d] = r * g[d]! - x[src + d]! * k;
  });
  return dx;
}

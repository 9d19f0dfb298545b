/**
 * CPU references of the LoRA linear kernels: plain loops over Float32Arrays, accumulated in float64.
 * They are the oracle of the kernel tests and the implementation on tfjs's CPU backend.
 *
 * Letters: T tokens (batch × sequence), IN input features, OUT output features, R rank.
 * x: [T, IN], W: [IN, OUT] ('in_out') or [OUT, IN] ('out_in'), b: [OUT], A: [R, IN], B: [OUT, R].
 */
import type { LoraDims as Dims, LoraKernelAttrs } from "./attrs.js";
import { dropoutKeep, dropoutUniforms } from "./dropout.js";
import type { MatmulLayout } from "./shader.wgsl.js";

/** W(i, o) for either layout. */
function weightAt(
  W: Float32Array,
  i: number,
  o: number,
  d: Dims,
  layout: LoraKernelAttrs["weightLayout"],
): number {
  return layout === "in_out" ? W[i * d.OUT + o]! : W[o * d.IN + i]!;
}

/** drop(x)[t, i] / (1 - p), as a dense array: the dropout mask of the forward pass, applied to x. */
export function droppedInputReference(
  x: Float32Array,
  d: Dims,
  a: LoraKernelAttrs,
): Float64Array {
  const { seedHash, threshold } = dropoutUniforms(a.dropout, a.seed);
  const keep = 1 / (1 - a.dropout);
  const out = new Float64Array(d.T * d.IN);
  for (let e = 0; e < out.length; e++) {
    out[e] =
      a.dropout > 0
        ? x[e]! * dropoutKeep(e, seedHash, threshold) * keep
        : x[e]!;
  }
  return out;
}

/** h[T, R] = drop(x)·Aᵀ (with 1/(1-p) folded in). */
export function projectDownReference(
  x: Float32Array,
  A: Float32Array,
  d: Dims,
  a: LoraKernelAttrs,
): Float64Array {
  const xd = droppedInputReference(x, d, a);
  const h = new Float64Array(d.T * d.R);
  for (let t = 0; t < d.T; t++) {
    for (let r = 0; r < d.R; r++) {
      let sum = 0;
      for (let i = 0; i < d.IN; i++)
        sum += xd[t * d.IN + i]! * A[r * d.IN + i]!;
      h[t * d.R + r] = sum;
    }
  }
  return h;
}

/** y[T, OUT] = x·W + b + s · h·Bᵀ. */
export function loraForwardReference(
  x: Float32Array,
  W: Float32Array,
  bias: Float32Array | undefined,
  A: Float32Array,
  B: Float32Array,
  d: Dims,
  a: LoraKernelAttrs,
): Float32Array {
  const h = projectDownReference(x, A, d, a);
  const y = new Float32Array(d.T * d.OUT);
  for (let t = 0; t < d.T; t++) {
    for (let o = 0; o < d.OUT; o++) {
      let base = bias ? bias[o]! : 0;
      for (let i = 0; i < d.IN; i++)
        base += x[t * d.IN + i]! * weightAt(W, i, o, d, a.weightLayout);
      let low = 0;
      for (let r = 0; r < d.R; r++) low += h[t * d.R + r]! * B[o * d.R + r]!;
      y[t * d.OUT + o] = base + a.scale * low;
    }
  }
  return y;
}

/** g[T, R] = dy·B. */
export function projectGradReference(
  dy: Float32Array,
  B: Float32Array,
  d: Dims,
): Float32Array {
  const g = new Float32Array(d.T * d.R);
  for (let t = 0; t < d.T; t++) {
    for (let r = 0; r < d.R; r++) {
      let sum = 0;
      for (let o = 0; o < d.OUT; o++)
        sum += dy[t * d.OUT + o]! * B[o * d.R + r]!;
      g[t * d.R + r] = sum;
    }
  }
  return g;
}

/** dx[T, IN] = dy·Wᵀ + s/(1-p) · mask ∘ (g·A). */
export function loraGradXReference(
  dy: Float32Array,
  W: Float32Array,
  g: Float32Array,
  A: Float32Array,
  d: Dims,
  a: LoraKernelAttrs,
): Float32Array {
  const { seedHash, threshold } = dropoutUniforms(a.dropout, a.seed);
  const keep = 1 / (1 - a.dropout);
  const dx = new Float32Array(d.T * d.IN);
  for (let t = 0; t < d.T; t++) {
    for (let i = 0; i < d.IN; i++) {
      let base = 0;
      for (let o = 0; o < d.OUT; o++)
        base += dy[t * d.OUT + o]! * weightAt(W, i, o, d, a.weightLayout);
      let low = 0;
      for (let r = 0; r < d.R; r++) low += g[t * d.R + r]! * A[r * d.IN + i]!;
      const e = t * d.IN + i;
      const mask =
        a.dropout > 0 ? dropoutKeep(e, seedHash, threshold) * keep : 1;
      dx[e] = base + a.scale * mask * low;
    }
  }
  return dx;
}

/** dA[R, IN] = s · gᵀ·drop(x). */
export function loraGradAReference(
  g: Float32Array,
  x: Float32Array,
  d: Dims,
  a: LoraKernelAttrs,
): Float32Array {
  const xd = droppedInputReference(x, d, a);
  const dA = new Float32Array(d.R * d.IN);
  for (let r = 0; r < d.R; r++) {
    for (let i = 0; i < d.IN; i++) {
      let sum = 0;
      for (let t = 0; t < d.T; t++) sum += g[t * d.R + r]! * xd[t * d.IN + i]!;
      dA[r * d.IN + i] = a.scale * sum;
    }
  }
  return dA;
}

/** dB[OUT, R] = s · dyᵀ·h, with h recomputed from x and A. */
export function loraGradBReference(
  dy: Float32Array,
  x: Float32Array,
  A: Float32Array,
  d: Dims,
  a: LoraKernelAttrs,
): Float32Array {
  const h = projectDownReference(x, A, d, a);
  const dB = new Float32Array(d.OUT * d.R);
  for (let o = 0; o < d.OUT; o++) {
    for (let r = 0; r < d.R; r++) {
      let sum = 0;
      for (let t = 0; t < d.T; t++) sum += dy[t * d.OUT + o]! * h[t * d.R + r]!;
      dB[o * d.R + r] = a.scale * sum;
    }
  }
  return dB;
}

/** The inputs of one configured matmul (`shader.wgsl.ts`), each stored as the program reads it; W decoded to f32. */
export interface MatmulReferenceInputs {
  X: Float32Array;
  W: Float32Array;
  H?: Float32Array;
  U?: Float32Array;
  bias?: Float32Array;
  residual?: Float32Array;
  /** The output's value before the call, added where the layout accumulates. */
  initial?: Float32Array;
}

/**
 * The configured matmul itself, the oracle of every tile variant: out[M, N] = outScale · Σ_k X(m, k)·W(k, n)
 * (+ bias[n]) (+ loraScale · keep(m, n) · Σ_r H[m, r]·U(r, n)) (+ residual[m, n]) (+ initial[m, n]), with the
 * dropout mask (seedHash, threshold as `dropoutUniforms` gives them) on the operand the layout names.
 */
export function matmulReference(
  layout: MatmulLayout,
  shape: { M: number; N: number; K: number; R?: number },
  inputs: MatmulReferenceInputs,
  s: {
    outScale?: number;
    loraScale?: number;
    seedHash?: number;
    threshold?: number;
  } = {},
): Float32Array {
  const { M, N, K } = shape;
  const R = shape.R ?? 0;
  const { X, W, H, U } = inputs;
  const keep = (i: number) => dropoutKeep(i, s.seedHash ?? 0, s.threshold ?? 0);
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) {
        const xi = layout.xLayout === "mk" ? m * K + k : k * M + m;
        const wi = layout.wLayout === "kn" ? k * N + n : n * K + k;
        const x = X[xi]! * (layout.dropout === "x" ? keep(xi) : 1);
        sum += x * W[wi]! * (layout.dropout === "w" ? keep(wi) : 1);
      }
      let v = (s.outScale ?? 1) * sum;
      if (layout.bias) v += inputs.bias![n]!;
      if (layout.lowRank !== "none") {
        let low = 0;
        for (let r = 0; r < R; r++)
          low +=
            H![m * R + r]! *
            (layout.lowRank === "rn" ? U![r * N + n]! : U![n * R + r]!);
        const mask = layout.lowRankMask ? keep(m * N + n) : 1;
        v += (s.loraScale ?? 0) * mask * low;
      }
      if (layout.residual) v += inputs.residual![m * N + n]!;
      if (layout.accumulate && layout.accumulate !== "none")
        v += inputs.initial?.[m * N + n] ?? 0;
      out[m * N + n] = v;
    }
  return out;
}

/**
 * Float64 CPU references of DoRA's programs (`program.ts`), and the whole DoRA layer written directly from
 * lora/layer.ts's formula, the oracle of the kernel tests:
 *
 *   z = x·W + s·x·Aᵀ·Bᵀ,  norm_o = ‖W_o + s·(B·A)_o‖,  y = (m / norm) ∘ z + b
 *
 * Letters: N rows, IN and OUT features, R rank. x [N, IN], W [IN, OUT] ('in_out') or [OUT, IN] ('out_in'),
 * A [R, IN], B [OUT, R], m and b [OUT], z and y [N, OUT].
 */
import type { LoraKernelAttrs } from "../lora_linear/attrs.js";

type Values = ArrayLike<number>;
type WeightLayout = LoraKernelAttrs["weightLayout"];

export interface DoraShape {
  N: number;
  IN: number;
  OUT: number;
  R: number;
}

/** W(i, o) for either layout. */
function weightAt(
  W: Values,
  i: number,
  o: number,
  { IN, OUT }: DoraShape,
  layout: WeightLayout,
): number {
  return layout === "in_out" ? W[i * OUT + o]! : W[o * IN + i]!;
}

/** What `doraNorm` reads of the frozen weight and A: ‖W_o‖² [OUT], A·Wᵀ [R, OUT] and A·Aᵀ [R, R]. */
export function doraNormInputsReference(
  W: Values,
  layout: WeightLayout,
  A: Values,
  shape: DoraShape,
): { rowNormSq: Float64Array; WAt: Float64Array; AAt: Float64Array } {
  const { IN, OUT, R } = shape;
  const rowNormSq = new Float64Array(OUT);
  const WAt = new Float64Array(R * OUT);
  const AAt = new Float64Array(R * R);
  for (let o = 0; o < OUT; o++) {
    let sq = 0;
    for (let i = 0; i < IN; i++) sq += weightAt(W, i, o, shape, layout) ** 2;
    rowNormSq[o] = sq;
    for (let r = 0; r < R; r++) {
      let dot = 0;
      for (let i = 0; i < IN; i++)
        dot += A[r * IN + i]! * weightAt(W, i, o, shape, layout);
      WAt[r * OUT + o] = dot;
    }
  }
  for (let r = 0; r < R; r++)
    for (let q = 0; q < R; q++) {
      let dot = 0;
      for (let i = 0; i < IN; i++) dot += A[r * IN + i]! * A[q * IN + i]!;
      AAt[r * R + q] = dot;
    }
  return { rowNormSq, WAt, AAt };
}

/** norm_o = sqrt(‖W_o‖² + 2s·⟨B_o, (W·Aᵀ)_o⟩ + s²·B_o·AAt·B_oᵀ), ratio = m / norm: `doraNorm`. */
export function doraNormReference(
  rowNormSq: Values,
  B: Values,
  WAt: Values,
  AAt: Values,
  magnitude: Values,
  { OUT, R }: Pick<DoraShape, "OUT" | "R">,
  scale: number,
): { norm: Float64Array; ratio: Float64Array } {
  const norm = new Float64Array(OUT);
  const ratio = new Float64Array(OUT);
  for (let o = 0; o < OUT; o++) {
    let cross = 0;
    let own = 0;
    for (let r = 0; r < R; r++) {
      cross += B[o * R + r]! * WAt[r * OUT + o]!;
      for (let q = 0; q < R; q++)
        own += B[o * R + r]! * AAt[r * R + q]! * B[o * R + q]!;
    }
    norm[o] = Math.sqrt(rowNormSq[o]! + 2 * scale * cross + scale ** 2 * own);
    ratio[o] = magnitude[o]! / norm[o]!;
  }
  return { norm, ratio };
}

/** y [N, OUT] = ratio ∘ z (+ bias) (+ residual): `doraScaleForward`. */
export function doraScaleForwardReference(
  z: Values,
  ratio: Values,
  bias: Values | undefined,
  { N, OUT }: Pick<DoraShape, "N" | "OUT">,
  residual?: Values,
): Float64Array {
  const y = new Float64Array(N * OUT);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OUT; o++) {
      const i = n * OUT + o;
      y[i] = ratio[o]! * z[i]! + (bias ? bias[o]! : 0) + (residual?.[i] ?? 0);
    }
  return y;
}

/** dz [N, OUT] = dy ∘ ratio, dm [OUT] = Σ_n dy·z / norm (the norm detached): `doraBackward`. */
export function doraBackwardReference(
  dy: Values,
  z: Values,
  ratio: Values,
  norm: Values,
  { N, OUT }: Pick<DoraShape, "N" | "OUT">,
): { dz: Float64Array; dm: Float64Array } {
  const dz = new Float64Array(N * OUT);
  const dm = new Float64Array(OUT);
  for (let o = 0; o < OUT; o++) {
    let sum = 0;
    for (let n = 0; n < N; n++) {
      const i = n * OUT + o;
      dz[i] = dy[i]! * ratio[o]!;
      sum += dy[i]! * z[i]!;
    }
    dm[o] = sum / norm[o]!;
  }
  return { dz, dm };
}

/** The DoRA layer's tensors, without dropout. */
export interface DoraLayer {
  x: Values;
  W: Values;
  layout: WeightLayout;
  A: Values;
  B: Values;
  magnitude: Values;
  bias?: Values;
  scale: number;
}

/**
 * The DoRA forward, directly: z from the two matmuls, the norm from the merged rows W_o + s·(B·A)_o (not the
 * expansion `doraNorm` uses). `detachedNorm` replaces the norm with given values: the forward as PEFT
 * differentiates it, where the norm is a constant.
 */
export function doraLinearReference(
  layer: DoraLayer,
  shape: DoraShape,
  detachedNorm?: Values,
): { z: Float64Array; norm: Float64Array; y: Float64Array } {
  const { x, W, layout, A, B, magnitude, bias, scale } = layer;
  const { N, IN, OUT, R } = shape;
  const h = new Float64Array(N * R); // x·Aᵀ [N, R]
  for (let n = 0; n < N; n++)
    for (let r = 0; r < R; r++) {
      let dot = 0;
      for (let i = 0; i < IN; i++) dot += x[n * IN + i]! * A[r * IN + i]!;
      h[n * R + r] = dot;
    }
  const z = new Float64Array(N * OUT);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OUT; o++) {
      let v = 0;
      for (let i = 0; i < IN; i++)
        v += x[n * IN + i]! * weightAt(W, i, o, shape, layout);
      for (let r = 0; r < R; r++) v += scale * h[n * R + r]! * B[o * R + r]!;
      z[n * OUT + o] = v;
    }
  const norm = new Float64Array(OUT);
  for (let o = 0; o < OUT; o++) {
    if (detachedNorm) {
      norm[o] = detachedNorm[o]!;
      continue;
    }
    let sq = 0;
    for (let i = 0; i < IN; i++) {
      let v = weightAt(W, i, o, shape, layout);
      for (let r = 0; r < R; r++) v += scale * B[o * R + r]! * A[r * IN + i]!;
      sq += v * v;
    }
    norm[o] = Math.sqrt(sq);
  }
  const ratio = Float64Array.from(norm, (v, o) => magnitude[o]! / v);
  return { z, norm, y: doraScaleForwardReference(z, ratio, bias, shape) };
}

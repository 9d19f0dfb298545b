/**
 * The frozen linear op's kernels. They reuse the LoRA linear's tiled matmul (`runLoraMatmul`) with no low-rank
 * epilogue: tfjs's own MatMulPacked reads a transposed weight ([out, in], nn.Linear) strided, and measured
 * here it ran at about 3 GFLOP/s against 5.6–7 for the tiled kernel on the same shapes.
 */
import type { WeightAttrs } from "../quant/inputs.js";

/** How the weight is read: 'kn' is [in, out] (GPT-2 Conv1D), 'nk' is [out, in] (nn.Linear). */
export type WeightRead = "kn" | "nk";

/** tfjs kernel names, registered for 'webgpu' only; other backends compose tf.matMul instead. */
export const LINEAR_KERNELS = {
  /** {x [T, IN], W, bias? [OUT]} -> y [T, OUT]; attrs { wLayout } */
  forward: "WebtuneLinear",
  /**
   * The same program for an f32 W that is frozen (under LoRA): its backward needs only W, so unlike `forward` it
   * keeps no x for the backward pass, one [T, IN] activation less per projection.
   */
  forwardFrozen: "WebtuneLinearFrozen",
  /**
   * {x [T, IN], W (int32 words), WScales, WSuper, bias? [OUT]} -> y [T, OUT]: W packed (see `quant/inputs.ts`);
   * attrs { wLayout, wShape, wFormat, doubleQuant, wOffset }.
   */
  forwardPacked: "WebtuneLinearPacked",
  /** {a [T, M], b [T, N]} -> aᵀ·b [M, N]: the weight gradient of a full fine-tune */
  transposedProduct: "WebtuneLinearTransposedProduct",
} as const;

export interface LinearAttrs extends WeightAttrs {
  wLayout: WeightRead;
  /** W's logical [rows, cols]: a packed W's words do not carry it. */
  wShape: [number, number];
}

/** Reads the attrs tfjs hands a linear kernel. */
export function readLinearAttrs(attrs: Record<string, unknown>): LinearAttrs {
  return {
    wLayout: attrs["wLayout"] as WeightRead,
    wShape: attrs["wShape"] as [number, number],
    wFormat:
      (attrs["wFormat"] as LinearAttrs["wFormat"] | undefined) ?? "float32",
    doubleQuant: (attrs["doubleQuant"] as boolean | undefined) ?? false,
    wOffset: (attrs["wOffset"] as number | undefined) ?? 0,
  };
}

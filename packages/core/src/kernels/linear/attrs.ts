/**
 * The frozen linear op's kernels. They reuse the LoRA linear's tiled matmul (`runLoraMatmul`) with no low-rank
 * epilogue: tfjs's own MatMulPacked reads a transposed weight ([out, in], nn.Linear) strided, and measured
 * here it ran at about 3 GFLOP/s against 5.6–7 for the tiled kernel on the same shapes.
 */

/** How the weight is read: 'kn' is [in, out] (GPT-2 Conv1D), 'nk' is [out, in] (nn.Linear). */
export type WeightRead = "kn" | "nk";

/** tfjs kernel names, registered for 'webgpu' only; other backends compose tf.matMul instead. */
export const LINEAR_KERNELS = {
  /** {x [T, IN], W, bias? [OUT]} -> y [T, OUT]; attrs { wLayout } */
  forward: "WebtuneLinear",
  /** {a [T, M], b [T, N]} -> aᵀ·b [M, N]: the weight gradient of a full fine-tune */
  transposedProduct: "WebtuneLinearTransposedProduct",
} as const;

export interface LinearAttrs {
  wLayout: WeightRead;
}

/** Attributes every LoRA linear kernel receives; validated by `op.ts` before any GPU work. */
export interface LoraKernelAttrs {
  /** s = lora_alpha / r (or / √r with rsLoRA). */
  scale: number;
  /** 'in_out': W is [IN, OUT] (GPT-2 Conv1D); 'out_in': W is [OUT, IN] (nn.Linear). */
  weightLayout: "in_out" | "out_in";
  /** Dropout probability on LoRA's input, in [0, 1). */
  dropout: number;
  /** Seed of the dropout mask; the backward pass recomputes the same mask from it. */
  seed: number;
}

/** tfjs kernel names; each is registered for 'webgpu' (WGSL) and 'cpu' (the reference). */
export const KERNELS = {
  /** {x [T, IN], W, A [R, IN], B [OUT, R], bias? [OUT]} -> y [T, OUT] */
  forward: "WebtuneLoraLinear",
  /**
   * The same with a packed W: {x, W (int32 words), WScales, WSuper, A, B, bias?} and the weight attrs
   * {wFormat, doubleQuant, wOffset} (see `quant/inputs.ts`). 'webgpu' only: other backends dequantize first.
   */
  forwardPacked: "WebtuneLoraLinearPacked",
  /** {dy [T, OUT], B} -> g [T, R] */
  projectGrad: "WebtuneLoraProjectGrad",
  /** {dy, W, g, A} (+ WScales, WSuper and the weight attrs for a packed W) -> dx [T, IN] */
  gradX: "WebtuneLoraGradX",
  /** {g, x} -> dA [R, IN] */
  gradA: "WebtuneLoraGradA",
  /** {dy, x, A} -> dB [OUT, R] */
  gradB: "WebtuneLoraGradB",
} as const;

/** Reads the attrs tfjs hands a kernel back into their typed form. */
export function readAttrs(attrs: Record<string, unknown>): LoraKernelAttrs {
  return {
    scale: attrs["scale"] as number,
    weightLayout: attrs["weightLayout"] as LoraKernelAttrs["weightLayout"],
    dropout: attrs["dropout"] as number,
    seed: attrs["seed"] as number,
  };
}

/** Sizes of one LoRA linear call. T: tokens (batch × sequence), IN/OUT: features, R: rank. */
export interface LoraDims {
  T: number;
  IN: number;
  OUT: number;
  R: number;
}

/** Reads the dims from whichever of a kernel's inputs carry them (names as in `KERNELS`). */
export function dimsOf(
  inputs: Partial<Record<string, { shape: number[] } | undefined>>,
): LoraDims {
  const { x, dy, g, A, B } = inputs;
  const rows = x ?? dy ?? g;
  return {
    T: rows?.shape[0] ?? 0,
    IN: x?.shape[1] ?? A?.shape[1] ?? 0,
    OUT: B?.shape[0] ?? dy?.shape[1] ?? 0,
    R: A?.shape[0] ?? B?.shape[1] ?? g?.shape[1] ?? 0,
  };
}

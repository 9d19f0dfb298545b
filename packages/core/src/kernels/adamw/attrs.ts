/** What the fused AdamW kernel receives besides its tensors; computed by `train/optimizer.ts` in float64. */
export interface AdamWScalars {
  /** β1 and β2: decay rates of the first and second moments. */
  beta1: number;
  beta2: number;
  /** Added to √v / √(1 − β2^t). */
  eps: number;
  /** lr / (1 − β1^t), with lr the group's learning rate. */
  stepSize: number;
  /** √(1 − β2^t). */
  bias2Sqrt: number;
  /** 1 − lr · weightDecay (decoupled decay), 1 without decay. */
  decay: number;
}

/**
 * The tfjs kernel, registered for 'webgpu' (WGSL) and 'cpu' (the reference):
 * {param, grad, expAvg, expAvgSq} (all the same shape) -> [param', expAvg', expAvgSq'].
 */
export const ADAMW_KERNEL = "WebtuneAdamW";

/** Reads the attrs tfjs hands a kernel back into their typed form. */
export function readScalars(attrs: Record<string, unknown>): AdamWScalars {
  return {
    beta1: attrs["beta1"] as number,
    beta2: attrs["beta2"] as number,
    eps: attrs["eps"] as number,
    stepSize: attrs["stepSize"] as number,
    bias2Sqrt: attrs["bias2Sqrt"] as number,
    decay: attrs["decay"] as number,
  };
}

/**
 * The float32 constants both kernels compute with, in the order of the WGSL `Uniforms` struct after `n`.
 * 1 − β is formed in float64 before rounding, as `tensor.mul(1 - beta)` did in the composed update.
 */
export function f32Constants(s: AdamWScalars): number[] {
  return [
    s.beta1,
    1 - s.beta1,
    s.beta2,
    1 - s.beta2,
    s.bias2Sqrt,
    s.eps,
    s.stepSize,
    s.decay,
  ].map(Math.fround);
}

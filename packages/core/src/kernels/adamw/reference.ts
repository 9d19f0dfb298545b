/**
 * The CPU reference of the fused AdamW update: the oracle of the kernel test and the implementation on tfjs's
 * CPU backend. Every operation is rounded to float32 (Math.fround of a float64 result is the correctly rounded
 * float32 result for +, −, ×, ÷ and √), in the order the WGSL kernel and the composed tfjs update used, so this
 * reproduces what the composed update computed on the CPU backend, bit for bit.
 *
 * Letters: N elements of one variable. param, grad, expAvg (m), expAvgSq (v): [N].
 */
import { f32Constants, type AdamWScalars } from "./attrs.js";

export interface AdamWTensors {
  param: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** One AdamW update of one variable; returns new arrays and leaves its inputs untouched. */
export function adamwReference(
  state: AdamWTensors,
  grad: Float32Array,
  scalars: AdamWScalars,
): AdamWTensors {
  const f = Math.fround;
  const [beta1, c1, beta2, c2, bias2Sqrt, eps, stepSize, decay] = f32Constants(
    scalars,
  ) as [number, number, number, number, number, number, number, number];
  const n = state.param.length;
  const out: AdamWTensors = {
    param: new Float32Array(n),
    expAvg: new Float32Array(n),
    expAvgSq: new Float32Array(n),
  };
  for (let i = 0; i < n; i++) {
    const g = grad[i]!;
    const m = f(f(beta1 * state.expAvg[i]!) + f(c1 * g));
    const v = f(f(beta2 * state.expAvgSq[i]!) + f(c2 * f(g * g)));
    const denom = f(f(f(Math.sqrt(v)) / bias2Sqrt) + eps);
    out.expAvg[i] = m;
    out.expAvgSq[i] = v;
    out.param[i] = f(state.param[i]! * decay) - f(f(m / denom) * stepSize);
  }
  return out;
}

/**
 * CPU references of the frozen linear kernels: plain loops accumulated in float64, the oracle of their tests.
 */
import type { WeightRead } from "./attrs.js";

/** y[T, OUT] = x·W (+ b); W is [IN, OUT] ('kn') or [OUT, IN] ('nk'). */
export function linearReference(
  x: Float32Array,
  W: Float32Array,
  bias: Float32Array | undefined,
  dims: { T: number; IN: number; OUT: number },
  wLayout: WeightRead,
): Float32Array {
  const { T, IN, OUT } = dims;
  const y = new Float32Array(T * OUT);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OUT; o++) {
      let sum = bias ? bias[o]! : 0;
      for (let i = 0; i < IN; i++) {
        const w = wLayout === "kn" ? W[i * OUT + o]! : W[o * IN + i]!;
        sum += x[t * IN + i]! * w;
      }
      y[t * OUT + o] = sum;
    }
  }
  return y;
}

/** aᵀ·b for a [T, M] and b [T, N]: [M, N]. */
export function transposedProductReference(
  a: Float32Array,
  b: Float32Array,
  dims: { T: number; M: number; N: number },
): Float32Array {
  const { T, M, N } = dims;
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let t = 0; t < T; t++) sum += a[t * M + m]! * b[t * N + n]!;
      out[m * N + n] = sum;
    }
  }
  return out;
}

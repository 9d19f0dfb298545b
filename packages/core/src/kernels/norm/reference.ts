/**
 * Float64 CPU references of the row norms (`program.ts`): forward with the saved statistics, and the backward to
 * x, for the kernel tests. Each row is normalised over its C features.
 *
 * Letters: N rows, C features.
 */

export interface NormShape {
  N: number;
  C: number;
  eps: number;
}

/** x [N, C], weight [C], bias [C] -> y [N, C], mean [N], rstd [N] (biased variance). */
export function layerNormForwardReference(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  { N, C, eps }: NormShape,
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(N * C);
  const mean = new Float64Array(N);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const base = n * C;
    let sum = 0;
    for (let c = 0; c < C; c++) sum += x[base + c]!;
    const m = sum / C;
    let sq = 0;
    for (let c = 0; c < C; c++) sq += (x[base + c]! - m) ** 2;
    const r = 1 / Math.sqrt(sq / C + eps);
    for (let c = 0; c < C; c++)
      y[base + c] = (x[base + c]! - m) * r * weight[c]! + bias[c]!;
    mean[n] = m;
    rstd[n] = r;
  }
  return { y, mean, rstd };
}

/** dy [N, C], x [N, C], weight [C] -> dx [N, C] = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·weight. */
export function layerNormBackwardReference(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  shape: NormShape,
): Float64Array {
  const { N, C } = shape;
  const { mean, rstd } = layerNormForwardReference(x, weight, weight, shape);
  const dx = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    const base = n * C;
    const [m, r] = [mean[n]!, rstd[n]!];
    let sumG = 0;
    let sumGX = 0;
    for (let c = 0; c < C; c++) {
      const g = dy[base + c]! * weight[c]!;
      sumG += g;
      sumGX += g * (x[base + c]! - m) * r;
    }
    for (let c = 0; c < C; c++) {
      const g = dy[base + c]! * weight[c]!;
      const xhat = (x[base + c]! - m) * r;
      dx[base + c] = r * (g - sumG / C - (xhat * sumGX) / C);
    }
  }
  return dx;
}

/** x [N, C], scale [C] -> y [N, C] = x·rstd·scale, rstd [N] = rsqrt(mean(x²) + eps). */
export function rmsNormForwardReference(
  x: ArrayLike<number>,
  scale: ArrayLike<number>,
  { N, C, eps }: NormShape,
): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(N * C);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const base = n * C;
    let sq = 0;
    for (let c = 0; c < C; c++) sq += x[base + c]! ** 2;
    const r = 1 / Math.sqrt(sq / C + eps);
    for (let c = 0; c < C; c++) y[base + c] = x[base + c]! * r * scale[c]!;
    rstd[n] = r;
  }
  return { y, rstd };
}

/** dy [N, C], x [N, C], scale [C] -> dx [N, C] = rstd·g − x·rstd³·mean(g·x), g = dy·scale. */
export function rmsNormBackwardReference(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  scale: ArrayLike<number>,
  shape: NormShape,
): Float64Array {
  const { N, C } = shape;
  const { rstd } = rmsNormForwardReference(x, scale, shape);
  const dx = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    const base = n * C;
    const r = rstd[n]!;
    let sumGX = 0;
    for (let c = 0; c < C; c++)
      sumGX += dy[base + c]! * scale[c]! * x[base + c]!;
    const k = (r ** 3 * sumGX) / C;
    for (let c = 0; c < C; c++)
      dx[base + c] = r * dy[base + c]! * scale[c]! - x[base + c]! * k;
  }
  return dx;
}

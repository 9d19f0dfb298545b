/**
 * WGSL of the fused row norms. One workgroup normalises one row of C features: each of its 64 invocations sums a
 * strided slice of the row, a tree reduction in workgroup memory combines the partial sums, then every
 * invocation writes its slice. One dispatch replaces tfjs's five or six (square, mean, add, rsqrt, mul, mul),
 * each of which read and wrote the whole activation.
 *
 * RMSNorm:   y = x · rsqrt(mean(x²) + eps) · scale
 * LayerNorm: y = (x − mean(x)) · rsqrt(var(x) + eps) · weight + bias   (biased variance, as torch)
 * The statistics are accumulated in f32 (as torch does for f32 inputs). tfjs calls main with a flat index, which
 * the row kernels ignore: the workgroup is the row, the invocation its slice.
 */

export const NORM_WORKGROUP = 64;

export const NORM_UNIFORMS = "C : i32, eps : f32,";

/**
 * `fn segmentSum(value, tid) -> f32`: the sum of `value` over the aligned segment of `lanes` invocations (a power of
 * two dividing `workgroup`) that holds invocation `tid`, on every invocation of it; `lanes == workgroup` sums
 * over the whole workgroup. A tree in workgroup memory: call it from uniform control flow (it has barriers).
 */
export function segmentSumWGSL(workgroup: number, lanes: number): string {
  return `
var<workgroup> partial : array<f32, ${workgroup}>;

fn segmentSum(value : f32, tid : i32) -> f32 {
  partial[tid] = value;
  workgroupBarrier();
  let lane = tid & ${lanes - 1};
  for (var stride = ${lanes >> 1}; stride > 0; stride = stride >> 1) {
    if (lane < stride) {
      partial[tid] = partial[tid] + partial[tid + stride];
    }
    workgroupBarrier();
  }
  let total = partial[tid - lane];
  // Everyone has read its total before the next call overwrites it.
  workgroupBarrier();
  return total;
}
`;
}

/**
 * The statistics of the row X[base .. base + C), reduced over the workgroup (every invocation gets them):
 *   fn rmsNormRstd(base, C, tid, eps) -> f32          rsqrt(mean(x²) + eps)
 *   fn layerNormStats(base, C, tid, eps) -> vec2<f32>  (mean, rsqrt(var + eps)), two passes
 * Shared by the tfjs kernels below and the compiled step's programs (`program.ts`).
 */
export const ROW_STATS_WGSL = `${segmentSumWGSL(NORM_WORKGROUP, NORM_WORKGROUP)}
fn rmsNormRstd(base : i32, C : i32, tid : i32, eps : f32) -> f32 {
  var sumSq = 0.0;
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    let v = X[base + c];
    sumSq = sumSq + v * v;
  }
  return inverseSqrt(segmentSum(sumSq, tid) / f32(C) + eps);
}

fn layerNormStats(base : i32, C : i32, tid : i32, eps : f32) -> vec2<f32> {
  var sum = 0.0;
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    sum = sum + X[base + c];
  }
  let mean = segmentSum(sum, tid) / f32(C);
  var sumSq = 0.0;
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    let d = X[base + c] - mean;
    sumSq = sumSq + d * d;
  }
  return vec2<f32>(mean, inverseSqrt(segmentSum(sumSq, tid) / f32(C) + eps));
}
`;

/** Bindings (tfjs order): result, X [rows, C], scale [C]. */
export const RMS_NORM_WGSL = `${ROW_STATS_WGSL}
fn main(_index : i32) {
  let row = i32(workgroupId.x);
  let tid = i32(localId.x);
  let C = uniforms.C;
  let base = row * C;
  let inv = rmsNormRstd(base, C, tid, uniforms.eps);
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    result[base + c] = X[base + c] * inv * scale[c];
  }
}
`;

/** Bindings (tfjs order): result, X [rows, C], weight [C], bias [C]. Two passes: the mean, then the variance. */
export const LAYER_NORM_WGSL = `${ROW_STATS_WGSL}
fn main(_index : i32) {
  let row = i32(workgroupId.x);
  let tid = i32(localId.x);
  let C = uniforms.C;
  let base = row * C;
  let stats = layerNormStats(base, C, tid, uniforms.eps);
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    result[base + c] = (X[base + c] - stats.x) * stats.y * weight[c] + bias[c];
  }
}
`;

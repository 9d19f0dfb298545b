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

/** Sums `value` over the workgroup; every invocation gets the total. */
const REDUCE_WGSL = `
var<workgroup> partial : array<f32, ${NORM_WORKGROUP}>;

fn workgroupSum(value : f32, tid : i32) -> f32 {
  partial[tid] = value;
  workgroupBarrier();
  for (var stride = ${NORM_WORKGROUP / 2}; stride > 0; stride = stride >> 1) {
    if (tid < stride) {
      partial[tid] = partial[tid] + partial[tid + stride];
    }
    workgroupBarrier();
  }
  let total = partial[0];
  // Everyone has read partial[0] before the next call overwrites it.
  workgroupBarrier();
  return total;
}
`;

/** Bindings (tfjs order): result, X [rows, C], scale [C]. */
export const RMS_NORM_WGSL = `${REDUCE_WGSL}
fn main(_index : i32) {
  let row = i32(workgroupId.x);
  let tid = i32(localId.x);
  let C = uniforms.C;
  let base = row * C;
  var sumSq = 0.0;
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    let v = X[base + c];
    sumSq = sumSq + v * v;
  }
  let inv = inverseSqrt(workgroupSum(sumSq, tid) / f32(C) + uniforms.eps);
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    result[base + c] = X[base + c] * inv * scale[c];
  }
}
`;

/** Bindings (tfjs order): result, X [rows, C], weight [C], bias [C]. Two passes: the mean, then the variance. */
export const LAYER_NORM_WGSL = `${REDUCE_WGSL}
fn main(_index : i32) {
  let row = i32(workgroupId.x);
  let tid = i32(localId.x);
  let C = uniforms.C;
  let base = row * C;
  var sum = 0.0;
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    sum = sum + X[base + c];
  }
  let mean = workgroupSum(sum, tid) / f32(C);
  var sumSq = 0.0;
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    let d = X[base + c] - mean;
    sumSq = sumSq + d * d;
  }
  let inv = inverseSqrt(workgroupSum(sumSq, tid) / f32(C) + uniforms.eps);
  for (var c = tid; c < C; c = c + ${NORM_WORKGROUP}) {
    result[base + c] = (X[base + c] - mean) * inv * weight[c] + bias[c];
  }
}
`;

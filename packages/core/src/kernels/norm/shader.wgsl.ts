/**
 * WGSL of the fused row norms. One workgroup normalises one row of C features: each of its 64 invocations sums a
 * strided slice of the row, a tree reduction in workgroup memory combines the partial sums, then every
 * invocation writes its slice. One dispatch replaces tfjs's five or six (square, mean, add, rsqrt, mul, mul),
 * each of which read and wrote the whole activation.
 *
 * RMSNorm:   y = x · rsqrt(mean(x²) + eps) · scale
 * LayerNorm: y = (x − mean(x)) · rsqrt(var(x) + eps) · weight + bias   (biased variance, as torch)
 * The statistics are accumulated in f32 (as torch does for f32 inputs). The workgroup is the row, the invocation
 * its slice. The sums reduce in workgroup memory, or with subgroups on devices that have them (kernels/subgroups.ts).
 */
import { workgroupReduceWGSL } from "../subgroups.js";

export const NORM_WORKGROUP = 64;

/**
 * `fn segmentSum(value, tid) -> f32`: the sum of `value` over the aligned segment of `lanes` invocations (a power of
 * two dividing `workgroup`) that holds invocation `tid`, on every invocation of it; `lanes == workgroup` sums
 * over the whole workgroup. A tree in workgroup memory, or with `subgroups` (whole workgroups only) subgroup
 * operations (kernels/subgroups.ts): call it from uniform control flow (it has barriers).
 */
export function segmentSumWGSL(
  workgroup: number,
  lanes: number,
  subgroups = false,
): string {
  if (subgroups) {
    if (lanes !== workgroup)
      throw new Error(
        `segmentSumWGSL: subgroup reductions sum whole workgroups, got segments of ${lanes} of ${workgroup}.`,
      );
    return `${workgroupReduceWGSL(workgroup, true)}
fn segmentSum(value : f32, tid : i32) -> f32 {
  return workgroupSum(value);
}
`;
  }
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
 * Shared by the tfjs kernels below and the compiled step's programs (`program.ts`), so that both paths normalise
 * a row to the same bits.
 */
export const rowStatsWGSL = (subgroups: boolean) =>
  `${segmentSumWGSL(NORM_WORKGROUP, NORM_WORKGROUP, subgroups)}
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

/** The forward of the tfjs kernels (webgpu.ts). Bindings: X [rows, C], scale [C], result [rows, C]. */
export const rmsNormWGSL = (subgroups: boolean) => `${rowStatsWGSL(subgroups)}
fn main() {
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

/** As `rmsNormWGSL`, for LayerNorm. Bindings: X [rows, C], weight [C], bias [C], result [rows, C]. */
export const layerNormWGSL = (subgroups: boolean) => `${rowStatsWGSL(subgroups)}
fn main() {
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

/**
 * LayerNorm and RMSNorm as plain programs for the compiled step, forward and backward side by side. One workgroup
 * of NORM_WORKGROUP invocations per row, as the tfjs kernels (`shader.wgsl.ts`, whose row statistics these share);
 * rows past 65535 wrap into y. The forward saves its statistics for the backward. Each program reduces its rows in
 * workgroup memory, or with subgroups on devices that have them (kernels/subgroups.ts).
 *
 * LayerNorm: y = x̂·w + b,  x̂ = (x − mean)·rstd,  rstd = rsqrt(var + eps)   (biased variance, f32, as torch)
 *            dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),  g = dy·w
 * RMSNorm:   y = x·rstd·scale,  rstd = rsqrt(mean(x²) + eps)
 *            dx = rstd·g − x·rstd³·mean(g·x),  g = dy·scale
 * With `accumulate`, the backward adds dx into its output (the residual stream's gradient) instead of writing it.
 *
 * Letters: N rows, C features.
 */
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
} from "../program.js";
import { reductionSuffix, withSubgroupVariant } from "../subgroups.js";
import { NORM_WORKGROUP, rowStatsWGSL } from "./shader.wgsl.js";

const W = NORM_WORKGROUP;

function storage(names: string[], outputs: number): StorageBinding[] {
  return names.map((name, i) => ({
    name,
    element: "f32",
    access: i < outputs ? "read_write" : "read",
  }));
}

/**
 * The row of this workgroup. A workgroup past the end (the wrapped grid's last row of groups) recomputes row
 * N − 1, so that every invocation reaches the barriers, and writes nothing.
 */
const ROW_WGSL = `
  let slot = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let live = slot < uniforms.N;
  let row = min(slot, uniforms.N - 1);
  let tid = i32(localId.x);
  let C = uniforms.C;
  let base = row * C;`;

/** `dX[i] = v` or `dX[i] += v`. */
const store = (accumulate: boolean, i: string, v: string) =>
  accumulate ? `dX[${i}] = dX[${i}] + ${v};` : `dX[${i}] = ${v};`;

function program(
  name: string,
  bindings: StorageBinding[],
  uniforms: Program["uniforms"],
  body: string,
): Program {
  return withSubgroupVariant((subgroups) => ({
    key: `webtuneEngine_${name}_w${W}${reductionSuffix(subgroups)}`,
    storage: bindings,
    uniforms,
    stepParams: false,
    workgroupSize: [W, 1, 1],
    body: `${rowStatsWGSL(subgroups)}\n${body}`,
    flat: false,
    subgroups,
  }));
}

const FORWARD_UNIFORMS: Program["uniforms"] = [
  { name: "N", type: "i32" },
  { name: "C", type: "i32" },
  { name: "eps", type: "f32" },
];
const BACKWARD_UNIFORMS: Program["uniforms"] = [
  { name: "N", type: "i32" },
  { name: "C", type: "i32" },
];

/**
 * LayerNorm forward. Bindings: Y [N, C], mean [N], rstd [N], X [N, C], weight [C], bias [C].
 * Uniforms: N, C, eps.
 */
export function layerNormForward(
  N: number,
  C: number,
  eps: number,
): ProgramCall {
  const body = `
fn main() {${ROW_WGSL}
  let stats = layerNormStats(base, C, tid, uniforms.eps);
  if (!live) { return; }
  for (var c = tid; c < C; c = c + ${W}) {
    Y[base + c] = (X[base + c] - stats.x) * stats.y * weight[c] + bias[c];
  }
  if (tid == 0) {
    mean[row] = stats.x;
    rstd[row] = stats.y;
  }
}`;
  return {
    program: program(
      "layerNormForward",
      storage(["Y", "mean", "rstd", "X", "weight", "bias"], 3),
      FORWARD_UNIFORMS,
      body,
    ),
    uniforms: [N, C, eps],
    workgroups: flatGrid(N),
  };
}

/**
 * LayerNorm backward to x (dweight and dbias are not computed). Bindings: dX [N, C], dY [N, C], X [N, C],
 * mean [N], rstd [N], weight [C]. Uniforms: N, C. `accumulate`: dX += the gradient.
 */
export function layerNormBackward(
  N: number,
  C: number,
  accumulate: boolean,
): ProgramCall {
  const body = `
fn main() {${ROW_WGSL}
  let m = mean[row];
  let r = rstd[row];
  var sumG = 0.0;
  var sumGX = 0.0;
  for (var c = tid; c < C; c = c + ${W}) {
    let g = dY[base + c] * weight[c];
    sumG = sumG + g;
    sumGX = sumGX + g * (X[base + c] - m) * r;
  }
  let meanG = segmentSum(sumG, tid) / f32(C);
  let meanGX = segmentSum(sumGX, tid) / f32(C);
  if (!live) { return; }
  for (var c = tid; c < C; c = c + ${W}) {
    let g = dY[base + c] * weight[c];
    let xhat = (X[base + c] - m) * r;
    ${store(accumulate, "base + c", "r * (g - meanG - xhat * meanGX)")}
  }
}`;
  return {
    program: program(
      `layerNormBackward_${accumulate ? "add" : "set"}`,
      storage(["dX", "dY", "X", "mean", "rstd", "weight"], 1),
      BACKWARD_UNIFORMS,
      body,
    ),
    uniforms: [N, C],
    workgroups: flatGrid(N),
  };
}

/**
 * RMSNorm forward. Bindings: Y [N, C], rstd [N], X [N, C], scale [C], then R [N, C] with `residual`, which is
 * added to the normalised row (Gemma's norms after the attention and MLP outputs: y = r + rmsnorm(x)).
 * Uniforms: N, C, eps.
 */
export function rmsNormForward(
  N: number,
  C: number,
  eps: number,
  residual = false,
): ProgramCall {
  const value = `X[base + c] * r * scale[c]`;
  const body = `
fn main() {${ROW_WGSL}
  let r = rmsNormRstd(base, C, tid, uniforms.eps);
  if (!live) { return; }
  for (var c = tid; c < C; c = c + ${W}) {
    Y[base + c] = ${residual ? `R[base + c] + ${value}` : value};
  }
  if (tid == 0) {
    rstd[row] = r;
  }
}`;
  return {
    program: program(
      `rmsNormForward${residual ? "_residual" : ""}`,
      storage(["Y", "rstd", "X", "scale", ...(residual ? ["R"] : [])], 2),
      FORWARD_UNIFORMS,
      body,
    ),
    uniforms: [N, C, eps],
    workgroups: flatGrid(N),
  };
}

/**
 * RMSNorm backward to x (dscale is not computed). Bindings: dX [N, C], dY [N, C], X [N, C], rstd [N], scale [C].
 * Uniforms: N, C. `accumulate`: dX += the gradient.
 */
export function rmsNormBackward(
  N: number,
  C: number,
  accumulate: boolean,
): ProgramCall {
  const body = `
fn main() {${ROW_WGSL}
  let r = rstd[row];
  var sumGX = 0.0;
  for (var c = tid; c < C; c = c + ${W}) {
    sumGX = sumGX + dY[base + c] * scale[c] * X[base + c];
  }
  let k = r * r * r * (segmentSum(sumGX, tid) / f32(C));
  if (!live) { return; }
  for (var c = tid; c < C; c = c + ${W}) {
    ${store(accumulate, "base + c", "r * (dY[base + c] * scale[c]) - X[base + c] * k")}
  }
}`;
  return {
    program: program(
      `rmsNormBackward_${accumulate ? "add" : "set"}`,
      storage(["dX", "dY", "X", "rstd", "scale"], 1),
      BACKWARD_UNIFORMS,
      body,
    ),
    uniforms: [N, C],
    workgroups: flatGrid(N),
  };
}

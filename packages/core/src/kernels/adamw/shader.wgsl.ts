/**
 * WGSL of the fused AdamW update: one dispatch reads p, g, m, v of one variable and writes p', m', v'.
 *
 *   m' = β1 · m + (1 − β1) · g
 *   v' = β2 · v + (1 − β2) · g²
 *   p' = p · decay − stepSize · m' / (√v' / √(1 − β2^t) + eps)
 *
 * Letters: N elements of the variable; every binding below is [N] float32.
 *
 * Why not a tfjs WebGPUProgram: tfjs binds one writable output per program and its inputs read-only, so p, m and
 * v would take three dispatches (or one into a packed [3N] buffer plus copies out of it, since tfjs's slice is a
 * copy). This is a plain pipeline with three writable outputs, recorded into tfjs's own command encoder by
 * `recordDispatch` (backend/programs.ts). The outputs are fresh buffers, not the inputs updated in place:
 * tfjs shares one buffer between tensors (`clone()`, `tf.variable(t)`, `assign`) and caches read-back values,
 * so writing into a variable's buffer would change other tensors and leave stale reads. Seven storage bindings
 * fit the 8 per stage that every WebGPU device has; one dispatch over several variables would not.
 *
 * Only the workgroup size is spliced into the source; N and the constants are uniforms.
 */

/** Invocations per workgroup; each handles one element per stride of the grid. */
export const WORKGROUP_SIZE = 256;

/**
 * At most this many workgroups (262,144 invocations, enough to fill an H100/H200); larger variables loop. The cap
 * keeps any N within maxComputeWorkgroupsPerDimension, and lets tests reach the loop with 300,000 elements.
 */
export const MAX_WORKGROUPS = 1024;

export const ADAMW_SHADER_KEY = `webtuneAdamW_${WORKGROUP_SIZE}`;

/** Bindings in order: inputs (read-only), then outputs (read_write), then the uniforms. */
export const ADAMW_INPUTS = ["param", "grad", "expAvg", "expAvgSq"] as const;
export const ADAMW_OUTPUTS = ["paramOut", "expAvgOut", "expAvgSqOut"] as const;

export const ADAMW_WGSL = /* wgsl */ `
// Field order matches f32Constants() in attrs.ts, after n.
struct Uniforms {
  n : u32,
  beta1 : f32,
  oneMinusBeta1 : f32,
  beta2 : f32,
  oneMinusBeta2 : f32,
  bias2Sqrt : f32,
  eps : f32,
  stepSize : f32,
  decay : f32,
}

${[...ADAMW_INPUTS, ...ADAMW_OUTPUTS]
  .map(
    (name, i) =>
      `@group(0) @binding(${i}) var<storage, ${i < ADAMW_INPUTS.length ? "read" : "read_write"}> ${name} : array<f32>;`,
  )
  .join("\n")}
@group(0) @binding(${ADAMW_INPUTS.length + ADAMW_OUTPUTS.length}) var<uniform> u : Uniforms;

// A grid-stride loop: the dispatch is capped at MAX_WORKGROUPS, so any N fits in one.
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(global_invocation_id) gid : vec3<u32>,
        @builtin(num_workgroups) groups : vec3<u32>) {
  let stride = groups.x * ${WORKGROUP_SIZE}u;
  for (var i = gid.x; i < u.n; i = i + stride) {
    let g = grad[i];
    let m = u.beta1 * expAvg[i] + u.oneMinusBeta1 * g;
    let v = u.beta2 * expAvgSq[i] + u.oneMinusBeta2 * (g * g);
    let denom = sqrt(v) / u.bias2Sqrt + u.eps;
    expAvgOut[i] = m;
    expAvgSqOut[i] = v;
    paramOut[i] = param[i] * u.decay - (m / denom) * u.stepSize;
  }
}
`;

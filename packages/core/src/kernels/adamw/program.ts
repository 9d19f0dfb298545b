/**
 * Multi-tensor AdamW with global-norm clipping, as two plain programs for the compiled step. Every trainable
 * tensor lives in one flat f32 buffer per role (params p, grads g, first moments m, second moments v), each
 * tensor's region starting at a multiple of BLOCK elements with zeros between regions; a u32 table gives each
 * BLOCK-element block its parameter group, whose (stepSize, bias2Sqrt, decay) the step parameters hold.
 *
 *   gradNormPartials: partials[w] = Σ g² over workgroup w's grid-stride share of the buffer
 *   adamwStep:        total = √Σ_w partials[w], coef = min(maxGradNorm / (total + 1e-6), 1) (1 when maxGradNorm
 *                     is 0), then for every element, with ĝ = g·coef and its group's scalars:
 *                       m ← β1 m + (1 − β1) ĝ,  v ← β2 v + (1 − β2) ĝ²,
 *                       p ← p·decay − stepSize · m / (√v / bias2Sqrt + eps)
 *
 * which is torch's clip_grad_norm_ followed by torch's AdamW (see kernels/adamw/shader.wgsl.ts for the per-element
 * update and train/clip.ts for the clipping). When the total is not finite (a NaN or Inf gradient, or a sum of
 * squares past f32's range) the step is skipped: params, m and v keep their values, as torch's GradScaler skips
 * optimizer.step on found infs, so a diverging run never writes a non-finite weight. The norm is still reported,
 * and the Trainer stops on it. Every workgroup of adamwStep re-sums the W ≤ 256 partials itself, so
 * no third dispatch and no grid-wide barrier is needed; the first workgroup writes the norm before clipping.
 *
 * Padding stays exactly zero as long as the gradient padding is zero: m = v = 0 there, so the update is 0 / eps.
 * With eps = 0 that would be 0 / 0 (torch's result for a zero gradient); the update is 0 instead.
 *
 * Both sums reduce over the workgroup in workgroup memory, or with subgroups on devices that have them
 * (kernels/subgroups.ts); the two add in different orders, so their norms differ in the last bits.
 *
 * Letters: P elements of each flat buffer (a multiple of BLOCK), W partial sums, P / BLOCK table entries.
 * The arrays are read as vec4 (P is a multiple of 4); shapes and β, eps are uniforms, only workgroup constants
 * and the kind of reduction are spliced into the source.
 */
import { ShapeError } from "../../errors.js";
import { MAX_PARAM_GROUPS } from "../step_params.js";
import type { Program, ProgramCall, StorageBinding } from "../program.js";
import {
  reductionSuffix,
  withSubgroupVariant,
  workgroupReduceWGSL,
} from "../subgroups.js";
import type { AdamWScalars } from "./attrs.js";

/** Elements per block of the group table; each tensor's region starts at a multiple of it. */
export const BLOCK = 256;

/** Invocations per workgroup of both programs; each handles one vec4 per stride of the grid. */
export const ADAMW_WORKGROUP = 256;

/**
 * The most workgroups (and so partial sums W) of either program; larger buffers loop. adamwStep sums the W
 * partials with one invocation each, so W may not exceed the workgroup size.
 */
export const MAX_ADAMW_WORKGROUPS = 256;

const VEC4_PER_BLOCK = BLOCK / 4;

const vec4Array = (
  name: string,
  access: StorageBinding["access"],
): StorageBinding => ({ name, element: "vec4<f32>", access });

const GRID_STRIDE = `let stride = numWorkgroups.x * ${ADAMW_WORKGROUP}u;
  for (var i = workgroupId.x * ${ADAMW_WORKGROUP}u + localIndex; i < uniforms.P / 4u; i = i + stride)`;

function gradNormProgram(subgroups: boolean): Program {
  return {
    key: `adamwGradNormPartials_${ADAMW_WORKGROUP}${reductionSuffix(subgroups)}`,
    subgroups,
    storage: [
      { name: "partials", element: "f32", access: "read_write" },
      vec4Array("grads", "read"),
    ],
    uniforms: [{ name: "P", type: "u32" }],
    stepParams: false,
    workgroupSize: [ADAMW_WORKGROUP, 1, 1],
    flat: false,
    body: /* wgsl */ `${workgroupReduceWGSL(ADAMW_WORKGROUP, subgroups)}
fn main() {
  var sumSq = 0.0;
  ${GRID_STRIDE} {
    let x = grads[i];
    sumSq = sumSq + dot(x, x);
  }
  let total = workgroupSum(sumSq);
  if (localIndex == 0u) {
    partials[workgroupId.x] = total;
  }
}
`,
  };
}

function adamwStepProgram(subgroups: boolean): Program {
  return {
    key: `adamwStepFlat_${ADAMW_WORKGROUP}_${BLOCK}${reductionSuffix(subgroups)}`,
    subgroups,
    storage: [
      vec4Array("params", "read_write"),
      vec4Array("expAvg", "read_write"),
      vec4Array("expAvgSq", "read_write"),
      { name: "norm", element: "f32", access: "read_write" },
      vec4Array("grads", "read"),
      { name: "groupOf", element: "u32", access: "read" },
      { name: "partials", element: "f32", access: "read" },
    ],
    uniforms: [
      { name: "P", type: "u32" },
      { name: "W", type: "u32" },
      { name: "beta1", type: "f32" },
      { name: "oneMinusBeta1", type: "f32" },
      { name: "beta2", type: "f32" },
      { name: "oneMinusBeta2", type: "f32" },
      { name: "eps", type: "f32" },
    ],
    stepParams: true,
    workgroupSize: [ADAMW_WORKGROUP, 1, 1],
    flat: false,
    body: /* wgsl */ `${workgroupReduceWGSL(ADAMW_WORKGROUP, subgroups)}
// By the bits, since WGSL has no isnan and compilers may fold x != x away: an all-ones exponent is Inf or NaN.
fn isFinite(x : f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn main() {
  var mine = 0.0;
  if (localIndex < uniforms.W) {
    mine = partials[localIndex];
  }
  let total = sqrt(workgroupSum(mine));
  var coef = 1.0;
  if (step.maxGradNorm > 0.0) {
    coef = min(step.maxGradNorm / (total + 1e-6), 1.0);
  }
  if (workgroupId.x == 0u && localIndex == 0u) {
    norm[0] = total;
  }
  // Every workgroup sums the same partials in the same order, so all of them skip, or none.
  if (!isFinite(total)) {
    return;
  }
  ${GRID_STRIDE} {
    // (stepSize, bias2Sqrt, decay, unused) of this block's group
    let s = step.adam[min(groupOf[i / ${VEC4_PER_BLOCK}u], ${MAX_PARAM_GROUPS - 1}u)];
    let g = grads[i] * coef;
    let m = uniforms.beta1 * expAvg[i] + uniforms.oneMinusBeta1 * g;
    let v = uniforms.beta2 * expAvgSq[i] + uniforms.oneMinusBeta2 * (g * g);
    let denom = sqrt(v) / s.y + uniforms.eps;
    let ratio = select(m / denom, vec4<f32>(0.0), denom == vec4<f32>(0.0));
    expAvg[i] = m;
    expAvgSq[i] = v;
    params[i] = params[i] * s.z - ratio * s.x;
  }
}
`,
  };
}

function checkP(what: string, P: number): void {
  if (!(Number.isInteger(P) && P > 0 && P % BLOCK === 0))
    throw new ShapeError(
      `${what}: the flat buffers must hold a positive multiple of ${BLOCK} elements, got ${P}; lay them out with flatLayout().`,
    );
}

/** W: the workgroups of gradNormPartials, and so the length of its partials array, for P elements. */
export function gradNormWorkgroups(P: number): number {
  checkP("gradNormWorkgroups", P);
  return Math.min(Math.ceil(P / 4 / ADAMW_WORKGROUP), MAX_ADAMW_WORKGROUPS);
}

/**
 * Σ g² in W partial sums (W = gradNormWorkgroups(P)).
 *
 * Bindings, in order: partials [W] (written), grads [P] (vec4).
 * Uniforms: P.
 */
export function gradNormPartialsCall(P: number): ProgramCall {
  return {
    program: withSubgroupVariant(gradNormProgram),
    uniforms: [P],
    workgroups: [gradNormWorkgroups(P), 1, 1],
  };
}

/**
 * Clips by the global norm of the W partials and applies AdamW to every element, in place; the first workgroup
 * writes the norm before clipping to norm[0]. A non-finite norm leaves every element as it was.
 *
 * Bindings, in order: params [P], expAvg [P], expAvgSq [P] (vec4, updated in place), norm [1] (written),
 * grads [P] (vec4), groupOf [P / 256] (u32), partials [W].
 * Uniforms: P, W, β1, 1 − β1, β2, 1 − β2, eps (1 − β formed in float64 before rounding, as attrs.ts does);
 * step parameters: maxGradNorm and adam[group] = (stepSize, bias2Sqrt, decay).
 */
export function adamwStepCall(
  P: number,
  W: number,
  { beta1, beta2, eps }: Pick<AdamWScalars, "beta1" | "beta2" | "eps">,
): ProgramCall {
  checkP("adamwStep", P);
  if (!(Number.isInteger(W) && W > 0 && W <= MAX_ADAMW_WORKGROUPS))
    throw new ShapeError(
      `adamwStep: expected 1 to ${MAX_ADAMW_WORKGROUPS} partial sums, got ${W}; use gradNormWorkgroups(P).`,
    );
  return {
    program: withSubgroupVariant(adamwStepProgram),
    uniforms: [P, W, beta1, 1 - beta1, beta2, 1 - beta2, eps],
    workgroups: [
      Math.min(Math.ceil(P / 4 / ADAMW_WORKGROUP), MAX_ADAMW_WORKGROUPS),
      1,
      1,
    ],
  };
}

/** Where each tensor sits in the flat buffers, their length, and the group of every block. */
export interface FlatLayout {
  /** First element of each tensor's region, a multiple of BLOCK. */
  offsets: number[];
  /** Elements of each flat buffer. */
  P: number;
  /** [P / BLOCK]: the parameter group of each block. */
  groupOf: Uint32Array;
}

/**
 * Lays tensors of `sizes` elements out one after another, each region rounded up to whole blocks, the blocks of
 * tensor i belonging to group `groups[i]`.
 *
 * @example
 * ```ts
 * const { offsets, P, groupOf } = flatLayout([300, 1030, 7], [0, 1, 0]); // offsets [0, 512, 1792], P 2048
 * ```
 */
export function flatLayout(sizes: number[], groups: number[]): FlatLayout {
  if (sizes.length === 0 || sizes.length !== groups.length)
    throw new ShapeError(
      `flatLayout: expected one group per tensor and at least one tensor, got ${sizes.length} sizes and ${groups.length} groups.`,
    );
  const offsets: number[] = [];
  const blockGroups: number[] = [];
  sizes.forEach((size, i) => {
    const group = groups[i]!;
    if (!(Number.isInteger(size) && size > 0))
      throw new ShapeError(
        `flatLayout: tensor ${i} has ${size} elements; expected a positive integer.`,
      );
    if (!(Number.isInteger(group) && group >= 0 && group < MAX_PARAM_GROUPS))
      throw new ShapeError(
        `flatLayout: tensor ${i} is in group ${group}; expected 0 to ${MAX_PARAM_GROUPS - 1}.`,
      );
    offsets.push(blockGroups.length * BLOCK);
    for (let b = 0; b < Math.ceil(size / BLOCK); b++) blockGroups.push(group);
  });
  return {
    offsets,
    P: blockGroups.length * BLOCK,
    groupOf: Uint32Array.from(blockGroups),
  };
}

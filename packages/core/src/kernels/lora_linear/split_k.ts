/**
 * Split-K for skinny reductions: LoRA's dA = gᵀ·x [R, IN] and dB = dyᵀ·h [OUT, R] (and a full fine-tune's dW)
 * reduce over K = tokens, often thousands, into an output with one side of rank R ≤ 64. Tiled over M and N alone
 * that is a handful of workgroups, each looping over all of K. Split-K cuts K into S chunks (grid z):
 *
 *   pass 1  P[s, m, n] = Σ_{k in chunk s} X(m, k)·W(k, n)        the tiled matmul, tile.splits = S (tiles.wgsl.ts)
 *   pass 2  out[m, n]  = epilogue(Σ_s P[s, m, n])                this file: one invocation per output element
 *
 * WGSL has no f32 atomics, hence two passes (as `grads/column_grads.ts` does for column sums). The epilogue (scale,
 * bias, low-rank term, residual, accumulation) runs in pass 2 only, on the finished sum, so it means what it means
 * in one pass; dropout on an operand's loads stays in pass 1. Summation order differs from one pass (S partial sums
 * of chunk length, then their sum) but stays within f32 rounding of it.
 *
 * Letters: M, N the output, K the reduction, S splits, kChunk the rows of K per split (a multiple of 4, so vec4 loads
 * along K stay aligned). The scratch P [S, M, N] is an activation of the step (the engine plans it like any other).
 */
import type { Program, StorageBinding, UniformField } from "../program.js";
import { dropoutWGSL, STEP_SEED_HASH_WGSL } from "./dropout.js";
import { epilogueWGSL, type MatmulLayout } from "./shader.wgsl.js";

/** Invocations per workgroup of the sum pass: one output element each. */
export const SPLIT_SUM_WORKGROUP = 256;

/** The uniforms split-K adds to the matmul's own, in both passes. */
export const SPLIT_UNIFORMS: UniformField[] = [
  { name: "kChunk", type: "i32" },
  { name: "S", type: "i32" },
];

/** Rows of K per split: a multiple of 4, such that S splits cover K and the last is not empty. */
export function splitChunk(K: number, S: number): number {
  return Math.ceil(Math.ceil(K / S) / 4) * 4;
}

/** The layout of pass 1: the loads (operands, formats, dropout) without any epilogue. */
export function partialLayout(layout: MatmulLayout): MatmulLayout {
  return {
    ...layout,
    lowRank: "none",
    lowRankMask: false,
    bias: false,
    residual: false,
    accumulate: "none",
  };
}

/** The names of pass 2's storage bindings, in order: result, the partials P, then the epilogue's inputs. */
export function splitSumBindingNames(layout: MatmulLayout): string[] {
  return [
    "result",
    "P",
    ...(layout.lowRank !== "none" ? ["H", "U"] : []),
    ...(layout.bias ? ["bias"] : []),
    ...(layout.residual ? ["residual"] : []),
  ];
}

/** Pass 2: out[m, n] = epilogue(Σ_s P[s, m, n]); `uniforms` are the matmul's, then SPLIT_UNIFORMS. */
export function splitSumProgram(
  layout: MatmulLayout,
  uniforms: UniformField[],
): Program {
  const masked = layout.lowRankMask;
  const storage: StorageBinding[] = splitSumBindingNames(layout).map(
    (name) => ({
      name,
      element: "f32",
      access: name === "result" ? "read_write" : "read",
    }),
  );
  const W = SPLIT_SUM_WORKGROUP;
  return {
    key: [
      "webtuneLoraMatmulSplitSum",
      layout.lowRank,
      masked ? "lrmask" : "",
      layout.bias ? "bias" : "",
      layout.residual ? "res" : "",
      layout.accumulate && layout.accumulate !== "none"
        ? `acc${layout.accumulate}`
        : "",
      `w${W}`,
    ].join("_"),
    storage,
    uniforms,
    stepParams: masked || layout.accumulate === "step",
    workgroupSize: [W, 1, 1],
    flat: true,
    privates: masked ? "var<private> seedHash : u32;" : undefined,
    init: masked ? STEP_SEED_HASH_WGSL : undefined,
    body: /* wgsl */ `${masked ? dropoutWGSL("seedHash") : ""}${epilogueWGSL(layout)}

fn main(index : i32) {
  let MN = uniforms.M * uniforms.N;
  if (index >= MN) { return; }
  // Partials of one element are MN apart: consecutive invocations read consecutive words of each split.
  var sum = 0.0;
  for (var s = 0; s < uniforms.S; s++) { sum = sum + P[s * MN + index]; }
  storeOne(index / uniforms.N, index % uniforms.N, sum);
}`,
  };
}

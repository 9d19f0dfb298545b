/**
 * DoRA's own programs for the compiled step: A·Aᵀ, the per-output norm of the adapted weight, the column scaling
 * of the LoRA matmul's output, and its backward. The matmuls around them (z = x·W + s·drop(x)·Aᵀ·Bᵀ without
 * bias, A·Wᵀ, and the LoRA backward from dz) are the engine's LoRA and linear ops. See `reference.ts` for the
 * float64 oracle and lora/layer.ts for the tape path these follow (PEFT; DoRA paper §4.3: the norm is detached). *
 *   gram:     AAt = A·Aᵀ
 *   norm:     norm_o = sqrt(‖W_o‖² + 2s·⟨B_o, (W·Aᵀ)_o⟩ + s²·⟨B_o, (B·A·Aᵀ)_o⟩),  ratio_o = m_o / norm_o
 *   forward:  y = ratio ∘ z + b (+ residual)                  (ratio and b broadcast over rows, per column o)
 *   backward: dz = dy ∘ ratio,  dm_o (+)= Σ_n dy[n, o]·z[n, o] / norm_o
 *
 * Letters: N rows (tokens), IN and OUT features, R rank. z, y, dy, dz [N, OUT]; A [R, IN]; B [OUT, R];
 * A·Wᵀ [R, OUT]; A·Aᵀ [R, R]; ‖W_o‖², m, b, norm, ratio, dm [OUT].
 * Shapes and the LoRA scale are uniforms; only workgroup sizes and which optional arrays are bound are spliced
 * into the source, and they are in each key.
 */
import { ShapeError } from "../../errors.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
} from "../program.js";

/** Invocations per workgroup of `doraNorm`: one output each. */
export const DORA_NORM_WORKGROUP = 64;

/** Invocations per workgroup of `doraGram`: one entry of A·Aᵀ per workgroup, its IN products split among them. */
export const DORA_GRAM_WORKGROUP = 64;

/** Invocations per workgroup of `doraScaleForward`: one element each. */
export const DORA_SCALE_WORKGROUP = 256;

/**
 * `doraBackward`'s workgroup: DORA_COLUMNS adjacent columns (one row of them is one coalesced read) by
 * DORA_ROW_LANES invocations that stride over the rows; the lanes' column sums meet in workgroup memory.
 */
export const DORA_COLUMNS = 32;
export const DORA_ROW_LANES = 8;

/** The first `outputs` arrays are written, the rest read. */
function storage(names: string[], outputs: number): StorageBinding[] {
  return names.map((name, i) => ({
    name,
    element: "f32",
    access: i < outputs ? "read_write" : "read",
  }));
}

function checkShape(what: string, dims: Record<string, number>): void {
  for (const [name, d] of Object.entries(dims))
    if (!(Number.isInteger(d) && d > 0))
      throw new ShapeError(
        `${what}: ${name} must be an integer > 0, got ${d}; pass the layer's shape.`,
      );
}

/**
 * AAt [R, R] = A·Aᵀ, one workgroup per entry. The engine's matmul would bind A twice (as x and as W), and two
 * bindings of one buffer's overlapping ranges in one dispatch are refused; this binds it once.
 *
 * Bindings, in order: AAt [R, R] (written), A [R, IN].
 * Uniforms: R, IN.
 */
export function doraGram(R: number, IN: number): ProgramCall {
  checkShape("doraGram", { R, IN });
  const W = DORA_GRAM_WORKGROUP;
  const program: Program = {
    key: `webtuneEngine_doraGram_w${W}`,
    storage: storage(["AAt", "A"], 1),
    uniforms: [
      { name: "R", type: "i32" },
      { name: "IN", type: "i32" },
    ],
    stepParams: false,
    workgroupSize: [W, 1, 1],
    flat: false,
    body: /* wgsl */ `
var<workgroup> partial : array<f32, ${W}>;

fn main() {
  // Entries past 65535 wrap into y (flatGrid); one past the last entry only reaches the barriers.
  let entry = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let R = uniforms.R;
  let IN = uniforms.IN;
  let live = entry < R * R;
  let r = entry / R;
  let q = entry - r * R;
  let tid = i32(localIndex);
  var sum = 0.0;
  if (live) {
    for (var i = tid; i < IN; i = i + ${W}) {
      sum = sum + A[r * IN + i] * A[q * IN + i];
    }
  }
  partial[tid] = sum;
  workgroupBarrier();
  for (var stride = ${W / 2}; stride > 0; stride = stride >> 1u) {
    if (tid < stride) {
      partial[tid] = partial[tid] + partial[tid + stride];
    }
    workgroupBarrier();
  }
  if (live && tid == 0) {
    AAt[entry] = partial[0];
  }
}`,
  };
  return {
    program,
    uniforms: [R, IN],
    workgroups: flatGrid(R * R),
  };
}

/**
 * norm [OUT] and ratio [OUT] = m / norm, one invocation per output o. The quadratic term reads A·Aᵀ whole for
 * every o (the same address across a workgroup at a time, so it is a broadcast): O(OUT·R²), as B·(A·Aᵀ) would
 * be, with no limit on R. The norm is not clamped: a zero row of W + s·B·A gives an infinite ratio, as in PEFT.
 *
 * Bindings, in order: norm [OUT] (written), ratio [OUT] (written), rowNormSq [OUT] (‖W_o‖²), B [OUT, R],
 * WAt [R, OUT] (A·Wᵀ: column o is (W·Aᵀ)_o), AAt [R, R] (A·Aᵀ), magnitude [OUT].
 * Uniforms: OUT, R, scale (s).
 */
export function doraNorm(OUT: number, R: number, scale: number): ProgramCall {
  checkShape("doraNorm", { OUT, R });
  if (!Number.isFinite(scale))
    throw new ShapeError(
      `doraNorm: the LoRA scale must be finite, got ${scale}.`,
    );
  const W = DORA_NORM_WORKGROUP;
  const program: Program = {
    key: `webtuneEngine_doraNorm_w${W}`,
    storage: storage(
      ["norm", "ratio", "rowNormSq", "B", "WAt", "AAt", "magnitude"],
      2,
    ),
    uniforms: [
      { name: "OUT", type: "i32" },
      { name: "R", type: "i32" },
      { name: "scale", type: "f32" },
    ],
    stepParams: false,
    workgroupSize: [W, 1, 1],
    flat: true,
    body: /* wgsl */ `
fn main(o : i32) {
  let OUT = uniforms.OUT;
  let R = uniforms.R;
  if (o >= OUT) { return; }
  let s = uniforms.scale;
  var cross = 0.0; // ⟨B_o, (W·Aᵀ)_o⟩
  var own = 0.0;   // ⟨B_o, (B·A·Aᵀ)_o⟩ = Σ_r B[o, r] · Σ_q AAt[r, q]·B[o, q]
  for (var r = 0; r < R; r = r + 1) {
    let b = B[o * R + r];
    cross = cross + b * WAt[r * OUT + o];
    var v = 0.0;
    for (var q = 0; q < R; q = q + 1) {
      v = v + AAt[r * R + q] * B[o * R + q];
    }
    own = own + b * v;
  }
  let n = sqrt(rowNormSq[o] + 2.0 * s * cross + s * s * own);
  norm[o] = n;
  ratio[o] = magnitude[o] / n;
}`,
  };
  return {
    program,
    uniforms: [OUT, R, scale],
    workgroups: flatGrid(Math.ceil(OUT / W)),
  };
}

/**
 * y [N, OUT] = ratio ∘ z (+ bias) (+ residual), one invocation per element. y must be its own tensor: z is kept
 * for the backward. `residual` adds the block's skip connection, which cannot ride in the LoRA matmul's epilogue
 * under DoRA (it would be scaled).
 *
 * Bindings, in order: Y [N, OUT] (written), Z [N, OUT], ratio [OUT], then bias [OUT] with `bias`, then
 * residual [N, OUT] with `residual`.
 * Uniforms: N, OUT.
 */
export function doraScaleForward(
  N: number,
  OUT: number,
  bias: boolean,
  residual = false,
): ProgramCall {
  checkShape("doraScaleForward", { N, OUT });
  const W = DORA_SCALE_WORKGROUP;
  const value = [
    "ratio[o] * Z[i]",
    ...(bias ? ["bias[o]"] : []),
    ...(residual ? ["residual[i]"] : []),
  ].join(" + ");
  const program: Program = {
    key: `webtuneEngine_doraScaleForward_w${W}${bias ? "_bias" : ""}${residual ? "_residual" : ""}`,
    storage: storage(
      [
        "Y",
        "Z",
        "ratio",
        ...(bias ? ["bias"] : []),
        ...(residual ? ["residual"] : []),
      ],
      1,
    ),
    uniforms: [
      { name: "N", type: "i32" },
      { name: "OUT", type: "i32" },
    ],
    stepParams: false,
    workgroupSize: [W, 1, 1],
    flat: true,
    body: /* wgsl */ `
fn main(i : i32) {
  if (i >= uniforms.N * uniforms.OUT) { return; }
  let o = i % uniforms.OUT;
  Y[i] = ${value};
}`,
  };
  return {
    program,
    uniforms: [N, OUT],
    workgroups: flatGrid(Math.ceil((N * OUT) / W)),
  };
}

/**
 * dz [N, OUT] = dy ∘ ratio and dm [OUT] = Σ_n dy·z / norm, in one dispatch: one workgroup per block of
 * DORA_COLUMNS columns, whose DORA_ROW_LANES lanes each walk every DORA_ROW_LANES-th row (writing dz as they go)
 * and sum dy·z, then add their sums in workgroup memory. Reads and writes each element once; ceil(OUT / 32)
 * workgroups, each looping N / 8 rows.
 *
 * dm is a range of the training state's gradient buffer: written on an optimizer step's first micro-batch
 * (step.accumulate = 0), added to after (gradient accumulation).
 *
 * Bindings, in order: dZ [N, OUT] (written), dM [OUT] (written or added to), dY [N, OUT], Z [N, OUT],
 * ratio [OUT], norm [OUT].
 * Uniforms: N, OUT; step parameters: accumulate.
 */
export function doraBackward(N: number, OUT: number): ProgramCall {
  checkShape("doraBackward", { N, OUT });
  const [C, L] = [DORA_COLUMNS, DORA_ROW_LANES];
  const program: Program = {
    key: `webtuneEngine_doraBackward_c${C}_l${L}`,
    storage: storage(["dZ", "dM", "dY", "Z", "ratio", "norm"], 2),
    uniforms: [
      { name: "N", type: "i32" },
      { name: "OUT", type: "i32" },
    ],
    stepParams: true,
    workgroupSize: [C, L, 1],
    flat: false,
    body: /* wgsl */ `
var<workgroup> partial : array<f32, ${C * L}>;

fn main() {
  // Blocks past 65535 wrap into y (flatGrid); a block past the last column only reaches the barrier.
  let block = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let column = i32(localId.x);
  let lane = i32(localId.y);
  let OUT = uniforms.OUT;
  let o = block * ${C} + column;
  let live = o < OUT;
  var sum = 0.0;
  if (live) {
    let r = ratio[o];
    for (var n = lane; n < uniforms.N; n = n + ${L}) {
      let at = n * OUT + o;
      let g = dY[at];
      dZ[at] = g * r;
      sum = sum + g * Z[at];
    }
  }
  partial[lane * ${C} + column] = sum;
  workgroupBarrier();
  if (live && lane == 0) {
    var total = 0.0;
    for (var k = 0; k < ${L}; k = k + 1) {
      total = total + partial[k * ${C} + column];
    }
    let d = total / norm[o];
    if (step.accumulate == 0u) {
      dM[o] = d;
    } else {
      dM[o] = dM[o] + d;
    }
  }
}`,
  };
  return {
    program,
    uniforms: [N, OUT],
    workgroups: flatGrid(Math.ceil(OUT / C)),
  };
}

/**
 * Parameter gradients that are sums over rows, as plain programs for the compiled step (full fine-tuning):
 *   bias:      db [C] = Σ_n dy[n, c]
 *   LayerNorm: dweight [C] = Σ_n dy[n, c]·(x[n, c] − mean[n])·rstd[n],  dbias [C] = Σ_n dy[n, c]
 *   RMSNorm:   dscale [C] = Σ_n dy[n, c]·x[n, c]·rstd[n]   (also Gemma's w in x·rstd·(1 + w))
 *   per-head RMSNorm (Gemma 3's q/k norms): the same, over the rows n = (b·T + t)·H + h of a projection's heads,
 *              with rstd kept per head in [B, H, T] order (rope/program.ts): rstd[(b·H + h)·T + t]
 * mean and rstd are what the norm's forward kept (norm/program.ts). Every output is a range of the training
 * state's gradient buffer: written on an optimizer step's first micro-batch (step.accumulate = 0), added to after.
 *
 * No atomics: a workgroup is GRAD_COLUMNS adjacent columns (one row of them is one coalesced read) by
 * GRAD_ROW_LANES lanes that stride over the rows of a slice; the lanes' sums meet in a tree in workgroup memory.
 * One slice (N ≤ the rows of a slice) writes the outputs directly: one dispatch. More slices write their partial
 * sums [S, K, C] into a scratch activation and a second dispatch adds the S partials of each column and writes the
 * outputs: ceil(C / 32)·S workgroups instead of ceil(C / 32), each looping over a slice rather than all N rows.
 * `columnGradSlicing` makes that choice; tests override it with `rowsPerSlice`.
 *
 * Letters: N rows, C columns, S slices of rows, K outputs (2 for LayerNorm, else 1).
 * Shapes are uniforms; the kind, the mode (direct or partial), K and the workgroup constants are spliced into the
 * source, and they are in each key.
 */
import { ShapeError } from "../../errors.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
} from "../program.js";

/** Columns of one workgroup of the row pass. */
export const GRAD_COLUMNS = 32;
/** Lanes of one workgroup of the row pass, each summing every GRAD_ROW_LANES-th row of its slice. */
export const GRAD_ROW_LANES = 8;
/** Rows of a slice, at least: below it one dispatch does it all. */
export const GRAD_ROWS_PER_SLICE = 128;
/** Slices, at most: past it the slices grow, so that the second pass adds few partials per column. */
export const GRAD_MAX_SLICES = 256;
/** Invocations per workgroup of the second pass: one column each. */
export const GRAD_FINAL_WORKGROUP = 256;

export type ColumnGradKind = "bias" | "layerNorm" | "rmsNorm" | "headRmsNorm";

interface KindSpec {
  /** The arrays each row reads, in binding order. */
  inputs: string[];
  /** The names of the outputs, in binding order. */
  outputs: string[];
  /** WGSL before the terms, per element: `n` the row, `at` = n·C + c, uniforms T and H (1 unless heads). */
  prelude: string;
  /** One term per output, summed over rows. */
  terms: string[];
}

const KINDS: Record<ColumnGradKind, KindSpec> = {
  bias: {
    inputs: ["dY"],
    outputs: ["dBias"],
    prelude: "let g = dY[at];",
    terms: ["g"],
  },
  layerNorm: {
    inputs: ["dY", "X", "mean", "rstd"],
    outputs: ["dWeight", "dBias"],
    prelude: "let g = dY[at];",
    terms: ["g * (X[at] - mean[n]) * rstd[n]", "g"],
  },
  rmsNorm: {
    inputs: ["dY", "X", "rstd"],
    outputs: ["dScale"],
    prelude: "let g = dY[at];",
    terms: ["g * X[at] * rstd[n]"],
  },
  headRmsNorm: {
    inputs: ["dY", "X", "rstd"],
    outputs: ["dScale"],
    prelude: `let g = dY[at];
      let h = n % uniforms.H;
      let t = (n / uniforms.H) % uniforms.T;
      let b = n / (uniforms.H * uniforms.T);
      let r = rstd[(b * uniforms.H + h) * uniforms.T + t];`,
    terms: ["g * X[at] * r"],
  },
};

/** How the rows are cut: `slices` workgroup rows of `rowsPerSlice` rows (the last may be shorter). */
export interface ColumnGradSlicing {
  rowsPerSlice: number;
  slices: number;
}

/**
 * The default cut of N rows: slices of GRAD_ROWS_PER_SLICE rows, at most GRAD_MAX_SLICES of them; a given
 * `rowsPerSlice` overrides it (tests cover both modes with it).
 */
export function columnGradSlicing(
  N: number,
  rowsPerSlice?: number,
): ColumnGradSlicing {
  const rows =
    rowsPerSlice ??
    Math.max(GRAD_ROWS_PER_SLICE, Math.ceil(N / GRAD_MAX_SLICES));
  if (!(Number.isInteger(rows) && rows > 0))
    throw new ShapeError(
      `columnGradSlicing: rowsPerSlice must be an integer > 0, got ${rows}.`,
    );
  return { rowsPerSlice: rows, slices: Math.ceil(N / rows) };
}

/** One column reduction: its dispatches, and the scratch they pass partial sums through. */
export interface ColumnGrads {
  kind: ColumnGradKind;
  /** Elements of the scratch activation [S, K, C] between the two calls; 0 when there is one call. */
  scratch: number;
  /**
   * One call (one slice): bindings are the outputs, then the inputs. Two calls (S > 1): the first binds the
   * scratch, then the inputs; the second binds the outputs, then the scratch. See `recordColumnGrads`.
   */
  calls: ProgramCall[];
  /** How many output ranges and input arrays the kind binds. */
  outputs: number;
  inputs: number;
}

function checkShape(what: string, dims: Record<string, number>): void {
  for (const [name, d] of Object.entries(dims))
    if (!(Number.isInteger(d) && d > 0))
      throw new ShapeError(
        `${what}: ${name} must be an integer > 0, got ${d}; pass the layer's shape.`,
      );
}

const f32Storage = (names: string[], outputs: number): StorageBinding[] =>
  names.map((name, i) => ({
    name,
    element: "f32",
    access: i < outputs ? "read_write" : "read",
  }));

/** `out[i] = v` on a step's first micro-batch, `out[i] += v` after. */
const storeGrad = (out: string, i: string, v: string) => `
    if (step.accumulate == 0u) {
      ${out}[${i}] = ${v};
    } else {
      ${out}[${i}] = ${out}[${i}] + ${v};
    }`;

/**
 * The row pass: workgroup `block + blocks·slice` (wrapped into y by flatGrid) sums rows [slice·rowsPerSlice, ...)
 * of columns [32·block, 32·block + 32). `direct`: the one slice stores into the outputs; else into P.
 * Uniforms: N, C, rowsPerSlice, S, T, H.
 */
function rowPass(kind: ColumnGradKind, direct: boolean): Program {
  const spec = KINDS[kind];
  const [CW, L] = [GRAD_COLUMNS, GRAD_ROW_LANES];
  const K = spec.outputs.length;
  const ks = [...Array(K).keys()];
  const outputs = direct ? spec.outputs : ["P"];
  const store = direct
    ? ks
        .map((k) => storeGrad(spec.outputs[k]!, "c", `partial${k}[column]`))
        .join("")
    : ks
        .map(
          (k) => `
    P[(slice * ${K} + ${k}) * C + c] = partial${k}[column];`,
        )
        .join("");
  const tree = ks
    .map(
      (k) => `
      partial${k}[tid] = partial${k}[tid] + partial${k}[tid + stride * ${CW}];`,
    )
    .join("");
  return {
    key: `webtuneEngine_columnGrads_${kind}_${direct ? "direct" : "partial"}_c${CW}_l${L}`,
    storage: f32Storage([...outputs, ...spec.inputs], outputs.length),
    uniforms: [
      { name: "N", type: "i32" },
      { name: "C", type: "i32" },
      { name: "rowsPerSlice", type: "i32" },
      { name: "S", type: "i32" },
      { name: "T", type: "i32" },
      { name: "H", type: "i32" },
    ],
    stepParams: direct,
    workgroupSize: [CW, L, 1],
    flat: false,
    body: /* wgsl */ `
${ks.map((k) => `var<workgroup> partial${k} : array<f32, ${CW * L}>;`).join("\n")}

fn main() {
  let C = uniforms.C;
  let blocks = (C + ${CW - 1}) / ${CW};
  // Workgroups past the last (the wrapped grid's last row) only reach the barriers.
  let flat = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let slice = flat / blocks;
  let column = i32(localId.x);
  let lane = i32(localId.y);
  let c = (flat - slice * blocks) * ${CW} + column;
  let live = c < C && slice < uniforms.S;
${ks.map((k) => `  var sum${k} = 0.0;`).join("\n")}
  if (live) {
    let end = min(uniforms.N, (slice + 1) * uniforms.rowsPerSlice);
    for (var n = slice * uniforms.rowsPerSlice + lane; n < end; n = n + ${L}) {
      let at = n * C + c;
      ${spec.prelude}
${ks.map((k) => `      sum${k} = sum${k} + ${spec.terms[k]};`).join("\n")}
    }
  }
  let tid = lane * ${CW} + column;
${ks.map((k) => `  partial${k}[tid] = sum${k};`).join("\n")}
  workgroupBarrier();
  for (var stride = ${L / 2}; stride > 0; stride = stride >> 1u) {
    if (lane < stride) {${tree}
    }
    workgroupBarrier();
  }
  if (live && lane == 0) {${store}
  }
}`,
  };
}

/**
 * The second pass: out_k[c] (+)= Σ_s P[s, k, c], one invocation per column.
 * Uniforms: C, S.
 */
function finalPass(K: number): Program {
  const W = GRAD_FINAL_WORKGROUP;
  const ks = [...Array(K).keys()];
  const outputs = ks.map((k) => `out${k}`);
  return {
    key: `webtuneEngine_columnGradsFinal_k${K}_w${W}`,
    storage: f32Storage([...outputs, "P"], K),
    uniforms: [
      { name: "C", type: "i32" },
      { name: "S", type: "i32" },
    ],
    stepParams: true,
    workgroupSize: [W, 1, 1],
    flat: true,
    body: /* wgsl */ `
fn main(c : i32) {
  let C = uniforms.C;
  if (c >= C) { return; }
${ks.map((k) => `  var total${k} = 0.0;`).join("\n")}
  for (var s = 0; s < uniforms.S; s = s + 1) {
${ks.map((k) => `    total${k} = total${k} + P[(s * ${K} + ${k}) * C + c];`).join("\n")}
  }${ks.map((k) => storeGrad(`out${k}`, "c", `total${k}`)).join("")}
}`,
  };
}

/**
 * The gradient of `kind` over dy [N, C] (and x, mean, rstd), as one or two dispatches; `rowsPerSlice` overrides
 * the default cut (`columnGradSlicing`).
 *
 * Bindings of the kinds, outputs then inputs:
 * - bias:      dBias [C] | dY [N, C]
 * - layerNorm: dWeight [C], dBias [C] | dY [N, C], X [N, C], mean [N], rstd [N]
 * - rmsNorm:   dScale [C] | dY [N, C], X [N, C], rstd [N]
 * - headRmsNorm: dScale [D] | dY [B·T·H, D], X [B·T·H, D], rstd [B, H, T] (`heads` gives T and H)
 * One call: outputs (written or added to, per step.accumulate), then inputs; uniforms N, C, rowsPerSlice, S = 1,
 * T, H. Two calls: first P [S, K, C] (the scratch, written), then inputs; uniforms N, C, rowsPerSlice, S, T, H. Second:
 * outputs, then P; uniforms C, S; step parameters: accumulate.
 */
export function columnGrads(
  kind: ColumnGradKind,
  N: number,
  C: number,
  rowsPerSlice?: number,
  heads: { T: number; H: number } = { T: 1, H: 1 },
): ColumnGrads {
  checkShape(`columnGrads(${kind})`, { N, C, ...heads });
  if (N % (heads.T * heads.H) !== 0)
    throw new ShapeError(
      `columnGrads(${kind}): ${N} rows are not a whole number of [T ${heads.T}, H ${heads.H}] blocks.`,
    );
  const spec = KINDS[kind];
  const K = spec.outputs.length;
  const { rowsPerSlice: rows, slices } = columnGradSlicing(N, rowsPerSlice);
  const blocks = Math.ceil(C / GRAD_COLUMNS);
  const common = {
    kind,
    outputs: K,
    inputs: spec.inputs.length,
  };
  const first: ProgramCall = {
    program: rowPass(kind, slices === 1),
    uniforms: [N, C, rows, slices, heads.T, heads.H],
    workgroups: flatGrid(blocks * slices),
  };
  if (slices === 1) return { ...common, scratch: 0, calls: [first] };
  return {
    ...common,
    scratch: slices * K * C,
    calls: [
      first,
      {
        program: finalPass(K),
        uniforms: [C, slices],
        workgroups: flatGrid(Math.ceil(C / GRAD_FINAL_WORKGROUP)),
      },
    ],
  };
}

/** db [C] = Σ_n dy[n, :]. */
export const biasGrad = (N: number, C: number, rowsPerSlice?: number) =>
  columnGrads("bias", N, C, rowsPerSlice);

/** dweight [C] and dbias [C] of a LayerNorm, from dy, x and the forward's mean and rstd. */
export const layerNormParamGrads = (
  N: number,
  C: number,
  rowsPerSlice?: number,
) => columnGrads("layerNorm", N, C, rowsPerSlice);

/** dscale [C] of an RMSNorm, from dy, x and the forward's rstd. */
export const rmsNormScaleGrad = (N: number, C: number, rowsPerSlice?: number) =>
  columnGrads("rmsNorm", N, C, rowsPerSlice);

/**
 * dscale [D] of a per-head RMSNorm over a projection's heads x [B·T, H·D] (rows b·T + t, head h at columns h·D),
 * from dy in the same layout and the forward's rstd [B, H, T].
 */
export const headRmsNormScaleGrad = (
  B: number,
  T: number,
  H: number,
  D: number,
  rowsPerSlice?: number,
) => columnGrads("headRmsNorm", B * T * H, D, rowsPerSlice, { T, H });

/**
 * Records a column reduction with whatever records dispatches (a StepGraph: `(call, b) => g.dispatch(label,
 * call, b)`), making the scratch activation only when there are two calls (`scratch(elements)`).
 * `outputs` and `inputs` follow `columnGrads`'s binding order.
 */
export function recordColumnGrads<T>(
  grads: ColumnGrads,
  outputs: T[],
  inputs: T[],
  scratch: (elements: number) => T,
  dispatch: (call: ProgramCall, bindings: T[]) => void,
): void {
  if (outputs.length !== grads.outputs || inputs.length !== grads.inputs)
    throw new ShapeError(
      `recordColumnGrads(${grads.kind}): expected ${grads.outputs} outputs and ${grads.inputs} inputs, got ` +
        `${outputs.length} and ${inputs.length}; see columnGrads for the binding order.`,
    );
  const [first, second] = grads.calls;
  if (!second) {
    dispatch(first!, [...outputs, ...inputs]);
    return;
  }
  const partials = scratch(grads.scratch);
  dispatch(first!, [partials, ...inputs]);
  dispatch(second, [...outputs, partials]);
}

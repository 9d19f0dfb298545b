/**
 * Query/key preparation for RoPE models as plain programs for the compiled step: read one tensor's heads out of
 * a projection's output (a strided view), optionally RMS-normalise each head over D (Gemma 3's q_norm/k_norm),
 * rotate (rotate_half RoPE, as `rope.ts`), and write a contiguous [B, H, T, D] for attention. One dispatch each
 * way per tensor.
 *
 * Forward, per head row (b, h, t), with x the view's D values and d < D/2 paired with d + D/2:
 *   n = x·rstd·w, rstd = rsqrt(mean(x²) + eps)           (n = x without the norm)
 *   y[d] = n[d]·cos[t, d] − n[d + D/2]·sin[t, d],  y[d + D/2] = n[d + D/2]·cos[t, d + D/2] + n[d]·sin[t, d + D/2]
 * Backward: the rotation is orthogonal, so dn = Rᵀ·dy (the same rotation with sin negated), then RMSNorm's
 *   dx = rstd·g − x·rstd³·mean(g·x),  g = dn·w
 * written into the view.
 *
 * Decoding (forward only): the run's first token sits at the step parameters' `position` p, so token t reads
 * row p + t of tables that cover every position of the cache; a key's output goes straight into the KV cache,
 * a strided [B, G, S, D] view, at row p + t (`ropeIntoCache`), a query's into a contiguous [B, H, T, D].
 *
 * Layout: L lanes per row (a power of two ≥ D/2, at most 64), 64 / L rows per 64-invocation workgroup, so short
 * heads (D = 12: 8 rows per group) keep the invocations busy; lane l handles the pairs d = l, l + L, ... The
 * norm's sums reduce over each row's L lanes (`segmentSum`). Rows: B·H·T, groups wrapped into y past 65535.
 *
 * Letters: B batch, H heads (of this tensor), T tokens, D head dim.
 */
import { ShapeError } from "../../errors.js";
import { segmentSumWGSL } from "../norm/shader.wgsl.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
} from "../program.js";

const WORKGROUP = 64;

/**
 * The heads of one tensor inside a projection's output: element (b, h, t, d) at
 * offset + b·sB + h·sH + t·sT + d (in elements of the bound array).
 */
export interface HeadView {
  B: number;
  H: number;
  T: number;
  D: number;
  offset: number;
  sB: number;
  sH: number;
  sT: number;
}

/**
 * The view of H heads of D that start at column `column` of a [B, T, width] projection output (q_proj's with
 * column 0 and width H·D; a fused projection's k at column H_q·D, and so on).
 */
export function projectionHeads(
  B: number,
  T: number,
  H: number,
  D: number,
  column = 0,
  width = H * D,
): HeadView {
  return { B, H, T, D, offset: column, sB: T * width, sH: D, sT: width };
}

/** Lanes per head row: the power of two ≥ D/2, at most the workgroup. */
export function ropeLanes(D: number): number {
  let lanes = 1;
  while (lanes < D / 2 && lanes < WORKGROUP) lanes *= 2;
  return lanes;
}

function checkView(v: HeadView): void {
  const sizes = [v.B, v.H, v.T, v.D];
  if (sizes.some((n) => !Number.isInteger(n) || n <= 0) || v.D % 2 !== 0)
    throw new ShapeError(
      `RoPE heads [B ${v.B}, H ${v.H}, T ${v.T}, D ${v.D}]: expected positive sizes and an even D.`,
    );
}

const UNIFORMS: Program["uniforms"] = [
  { name: "rows", type: "i32" },
  { name: "H", type: "i32" },
  { name: "T", type: "i32" },
  { name: "D", type: "i32" },
  { name: "offset", type: "i32" },
  { name: "sB", type: "i32" },
  { name: "sH", type: "i32" },
  { name: "sT", type: "i32" },
  { name: "eps", type: "f32" },
  // The output view (contiguous [B, H, T, D] unless written into a cache).
  { name: "oOff", type: "i32" },
  { name: "oB", type: "i32" },
  { name: "oH", type: "i32" },
  { name: "oT", type: "i32" },
];

/**
 * Where a decoding run's rows are: "none" (training: token t is position t), "tables" (token t reads table row
 * p + t, p the step's position), "tables+out" (and is written at row p + t of the output view: the KV cache).
 */
export type RopePositioning = "none" | "tables" | "tables+out";

/** Where the forward writes: element (b, h, t, d) at offset + b·sB + h·sH + t·sT + d. */
export interface OutView {
  offset: number;
  sB: number;
  sH: number;
  sT: number;
}

/**
 * This invocation's head row and lane. An invocation past the last row takes row rows − 1, so that every one
 * reaches the barriers, and writes nothing (`live`). `src`: the row in the view, `dst`: in [B, H, T, D],
 * `tab`: in the [T, D] tables.
 */
function rowWGSL(lanes: number, positioning: RopePositioning): string {
  const p = positioning === "none" ? "0" : "i32(step.position)";
  const outRow = positioning === "tables+out" ? "t + p" : "t";
  return `
  let tid = i32(localId.x);
  let lane = tid & ${lanes - 1};
  let slot = i32(workgroupId.y * numWorkgroups.x + workgroupId.x) * ${WORKGROUP / lanes} + tid / ${lanes};
  let live = slot < uniforms.rows;
  let row = min(slot, uniforms.rows - 1);
  let D = uniforms.D;
  let half = D / 2;
  let t = row % uniforms.T;
  let h = (row / uniforms.T) % uniforms.H;
  let b = row / (uniforms.T * uniforms.H);
  let src = uniforms.offset + b * uniforms.sB + h * uniforms.sH + t * uniforms.sT;
  let p = ${p};
  let dst = uniforms.oOff + b * uniforms.oB + h * uniforms.oH + (${outRow}) * uniforms.oT;
  let tab = (t + p) * D;`;
}

function forwardBody(
  norm: boolean,
  lanes: number,
  positioning: RopePositioning,
): string {
  const stats = norm
    ? `
  var sumSq = 0.0;
  for (var d = lane; d < D; d = d + ${lanes}) {
    let v = X[src + d];
    sumSq = sumSq + v * v;
  }
  let r = inverseSqrt(segmentSum(sumSq, tid) / f32(D) + uniforms.eps);
  if (!live) { return; }
  if (lane == 0) { rstd[row] = r; }`
    : `
  if (!live) { return; }`;
  const scaled = (i: string) =>
    norm ? `X[src + ${i}] * r * weight[${i}]` : `X[src + ${i}]`;
  return `
fn main() {${rowWGSL(lanes, positioning)}${stats}
  for (var d = lane; d < half; d = d + ${lanes}) {
    let x1 = ${scaled("d")};
    let x2 = ${scaled("d + half")};
    Y[dst + d] = x1 * cosT[tab + d] - x2 * sinT[tab + d];
    Y[dst + d + half] = x2 * cosT[tab + d + half] + x1 * sinT[tab + d + half];
  }
}`;
}

function backwardBody(norm: boolean, lanes: number): string {
  // dn = Rᵀ·dy for the pair (d, d + half), then g = dn·w.
  const unrotate = `
    let dy1 = dY[dst + d];
    let dy2 = dY[dst + d + half];
    let g1 = (dy1 * cosT[tab + d] + dy2 * sinT[tab + d + half])${norm ? " * weight[d]" : ""};
    let g2 = (dy2 * cosT[tab + d + half] - dy1 * sinT[tab + d])${norm ? " * weight[d + half]" : ""};`;
  if (!norm)
    return `
fn main() {${rowWGSL(lanes, "none")}
  if (!live) { return; }
  for (var d = lane; d < half; d = d + ${lanes}) {${unrotate}
    dX[src + d] = g1;
    dX[src + d + half] = g2;
  }
}`;
  return `
fn main() {${rowWGSL(lanes, "none")}
  let r = rstd[row];
  var sumGX = 0.0;
  for (var d = lane; d < half; d = d + ${lanes}) {${unrotate}
    sumGX = sumGX + g1 * X[src + d] + g2 * X[src + d + half];
  }
  let k = r * r * r * (segmentSum(sumGX, tid) / f32(D));
  if (!live) { return; }
  for (var d = lane; d < half; d = d + ${lanes}) {${unrotate}
    dX[src + d] = r * g1 - X[src + d] * k;
    dX[src + d + half] = r * g2 - X[src + d + half] * k;
  }
}`;
}

function storage(names: (string | false)[], outputs: number): StorageBinding[] {
  return names
    .filter((n): n is string => n !== false)
    .map((name, i) => ({
      name,
      element: "f32",
      access: i < outputs ? "read_write" : "read",
    }));
}

function program(
  direction: "forward" | "backward",
  norm: boolean,
  lanes: number,
  positioning: RopePositioning,
): Program {
  const names =
    direction === "forward"
      ? storage(
          ["Y", norm && "rstd", "X", "cosT", "sinT", norm && "weight"],
          norm ? 2 : 1,
        )
      : storage(
          [
            "dX",
            "dY",
            norm && "X",
            norm && "rstd",
            "cosT",
            "sinT",
            norm && "weight",
          ],
          1,
        );
  const body =
    direction === "forward"
      ? forwardBody(norm, lanes, positioning)
      : backwardBody(norm, lanes);
  const at = positioning === "none" ? "" : `_at_${positioning}`;
  return {
    key: `webtuneEngine_qkRope_${direction}_${norm ? "norm" : "plain"}_l${lanes}${at}`,
    storage: names,
    uniforms: UNIFORMS,
    stepParams: positioning !== "none",
    workgroupSize: [WORKGROUP, 1, 1],
    body: norm ? `${segmentSumWGSL(WORKGROUP, lanes)}\n${body}` : body,
    flat: false,
  };
}

function call(
  direction: "forward" | "backward",
  view: HeadView,
  norm: boolean,
  eps: number,
  positioning: RopePositioning = "none",
  out?: OutView,
): ProgramCall {
  checkView(view);
  const lanes = ropeLanes(view.D);
  const rows = view.B * view.H * view.T;
  const v = view;
  const o = out ?? {
    offset: 0,
    sB: v.H * v.T * v.D,
    sH: v.T * v.D,
    sT: v.D,
  };
  return {
    program: program(direction, norm, lanes, positioning),
    uniforms: [
      ...[rows, v.H, v.T, v.D, v.offset, v.sB, v.sH, v.sT, eps],
      ...[o.offset, o.sB, o.sH, o.sT],
    ],
    workgroups: flatGrid(Math.ceil(rows / (WORKGROUP / lanes))),
  };
}

/**
 * Forward: the view's heads, RMS-normalised over D when `norm` is given, rotated. Bindings: Y [B, H, T, D],
 * rstd [B, H, T] (with norm), X (the view's array), cosT [T, D], sinT [T, D], weight [D] (with norm).
 * Uniforms: rows (B·H·T), H, T, D, offset, sB, sH, sT, eps, then the output view's offset and strides.
 * With `decoding`, the tables cover every position ([S, D]) and are read at row p + t; with "tables+out" Y is
 * the cache array and `out` its view.
 */
export function qkRopeForward(
  view: HeadView,
  norm?: { eps: number },
  decoding?: { positioning: RopePositioning; out?: OutView },
): ProgramCall {
  if (decoding?.positioning === "tables+out" && !decoding.out)
    throw new ShapeError(
      "RoPE into a cache needs the cache's view (`out`): its rows are written at the step's position.",
    );
  return call(
    "forward",
    view,
    norm !== undefined,
    norm?.eps ?? 0,
    decoding?.positioning,
    decoding?.out,
  );
}

/**
 * Backward: dY [B, H, T, D] to the view's elements, which it writes (others of dX are left as they are).
 * Bindings: dX (the view's array), dY [B, H, T, D], X (the view's array, with norm), rstd [B, H, T] (with norm),
 * cosT [T, D], sinT [T, D], weight [D] (with norm). Uniforms as the forward's (eps unused).
 */
export function qkRopeBackward(view: HeadView, norm: boolean): ProgramCall {
  return call("backward", view, norm, 0);
}

/**
 * Greedy decoding's pick on the GPU: each row's largest logit and its column, so that a batch of B rows reads
 * back 2·B numbers a step instead of B·V logits. One workgroup of LANES invocations per row: lane l scans columns
 * l, l + LANES, ..., then a tree in workgroup memory keeps the larger value, and of equal values the lower column
 * (the first maximum, as the host's `argmax` takes it).
 *
 *   rowArgmax: z [rows, V] (one vocabulary chunk)  ->  out [rows, 2] = (max, column + v0)
 *
 * A chunked head gives one [rows, 2] per chunk; the host keeps the best of them (chunks are in vocabulary order,
 * so a tie goes to the earlier chunk). Columns are stored as f32: exact below 2^24.
 *
 * Letters: V vocabulary columns of this chunk, v0 its first column in the whole vocabulary.
 */
import { ShapeError } from "../../errors.js";
import { flatGrid, type ProgramCall } from "../program.js";

const LANES = 64;

export function rowArgmax(
  rows: number,
  V: number,
  v0: number,
  maxWorkgroupsPerDimension?: number,
): ProgramCall {
  if (v0 + V >= 2 ** 24)
    throw new ShapeError(
      `rowArgmax: column ${v0 + V} is past 2^24, where f32 stops holding every integer.`,
    );
  return {
    program: {
      key: `webtuneArgmax_l${LANES}`,
      storage: [
        { name: "out", element: "f32", access: "read_write" },
        { name: "z", element: "f32", access: "read" },
      ],
      uniforms: [
        { name: "rows", type: "i32" },
        { name: "V", type: "i32" },
        { name: "v0", type: "i32" },
      ],
      stepParams: false,
      workgroupSize: [LANES, 1, 1],
      body: /* wgsl */ `
var<workgroup> best : array<f32, ${LANES}>;
var<workgroup> at : array<i32, ${LANES}>;
fn main() {
  let lane = i32(localIndex);
  let wg = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let row = min(wg, uniforms.rows - 1);
  var m = -3.4e38;
  var j = uniforms.V;
  for (var c = lane; c < uniforms.V; c += ${LANES}) {
    let v = z[row * uniforms.V + c];
    if (v > m) { m = v; j = c; }
  }
  best[lane] = m;
  at[lane] = j;
  workgroupBarrier();
  for (var half = ${LANES / 2}; half > 0; half /= 2) {
    if (lane < half) {
      let v = best[lane + half];
      let c = at[lane + half];
      if (v > best[lane] || (v == best[lane] && c < at[lane])) { best[lane] = v; at[lane] = c; }
    }
    workgroupBarrier();
  }
  if (lane == 0 && wg < uniforms.rows) {
    out[2 * row] = best[0];
    out[2 * row + 1] = f32(at[0] + uniforms.v0);
  }
}`,
      flat: false,
    },
    uniforms: [rows, V, v0],
    workgroups: flatGrid(rows, maxWorkgroupsPerDimension),
  };
}

/** Each row's (max, column) over chunks' [rows, 2] results, in vocabulary order: the first maximum wins. */
export function pickChunks(parts: Float32Array[], rows: number): number[] {
  return Array.from({ length: rows }, (_, r) => {
    let value = -Infinity;
    let id = 0;
    for (const p of parts)
      if (p[2 * r]! > value) {
        value = p[2 * r]!;
        id = p[2 * r + 1]!;
      }
    return id;
  });
}

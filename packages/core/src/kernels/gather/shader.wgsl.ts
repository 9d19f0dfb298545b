/**
 * WGSL of the row gather: out[r, c] = table(ids[r] − rowOffset, c), or 0 where that row is outside the table;
 * with no ids, out[r, c] = table(r, c) (the explicit dequantization). One program for every storage format:
 * the table is read through `quant/shader.wgsl.ts`'s readers, so a packed table is never copied to f32 whole.
 *
 * Invocation (x, y) writes columns 4x..4x+3 (or column x, when cols is not a multiple of 4) of rows
 * y, y + gridY, ...: the grid-stride loop over rows keeps the dispatch within the per-dimension limit.
 */
import { matrixReadersWGSL, type WeightFormat } from "../quant/shader.wgsl.js";

export interface GatherLayout {
  format: WeightFormat;
  doubleQuant: boolean;
  /** Rows come from an `ids` input (gather) or are the output's own (dequantize). */
  ids: boolean;
  /** cols % 4 == 0: each invocation reads 4 elements through the packed 4-element reader. */
  vec4: boolean;
}

export const GATHER_UNIFORMS =
  "rows : i32, cols : i32, numRows : i32, rowOffset : i32, wOffset : f32,";

export function gatherShaderKey(l: GatherLayout): string {
  return [
    "webtuneGatherRows",
    l.format,
    l.doubleQuant ? "dq" : "",
    l.ids ? "ids" : "all",
    l.vec4 ? "v4" : "v1",
  ].join("_");
}

/** The user code; tfjs prepends the bindings (result[, ids], W, scales...) and the uniforms. */
export function gatherShader(l: GatherLayout): string {
  const source = l.ids ? "ids[r] - uniforms.rowOffset" : "r";
  const store = l.vec4
    ? `var v = vec4<f32>(0.0);
    if (inside) { v = wAt4(s * uniforms.cols + c); }
    result[(r * uniforms.cols + c) / 4] = v;`
    : `var v = 0.0;
    if (inside) { v = wAt(s * uniforms.cols + c); }
    result[r * uniforms.cols + c] = v;`;
  return `${matrixReadersWGSL("W", "w", l.format, l.doubleQuant, "uniforms.wOffset")}

fn main() {
  let c = i32(globalId.x) * ${l.vec4 ? 4 : 1};
  if (c >= uniforms.cols) { return; }
  for (var r = i32(globalId.y); r < uniforms.numRows; r += i32(numWorkgroups.y)) {
    let s = ${source};
    let inside = s >= 0 && s < uniforms.rows;
    ${store}
  }
}`;
}

/** The gather kernels' names and attrs, shared by the op, the WGSL kernels and the CPU kernels. */
import { readWeightAttrs, type WeightAttrs } from "../quant/inputs.js";

/** tfjs kernel names, each registered for 'webgpu' (WGSL) and 'cpu' (the codec). */
export const GATHER_KERNELS = {
  /** {ids [N] int32, W[, WScales, WSuper]} -> [N, cols]: row ids[i] − rowOffset of the table, or zeros */
  gatherRows: "WebtuneGatherRows",
  /** {W, WScales, WSuper} -> [rows, cols]: the whole matrix in f32 */
  dequantize: "WebtuneDequantize",
} as const;

export interface GatherAttrs extends WeightAttrs {
  /** The table's logical [rows, cols] (packed words do not carry it). */
  rows: number;
  cols: number;
  /** Subtracted from every id before it indexes the table. */
  rowOffset: number;
}

export function readGatherAttrs(attrs: Record<string, unknown>): GatherAttrs {
  return {
    ...readWeightAttrs(attrs),
    rows: attrs["rows"] as number,
    cols: attrs["cols"] as number,
    rowOffset: attrs["rowOffset"] as number,
  };
}

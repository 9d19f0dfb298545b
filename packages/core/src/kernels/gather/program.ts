/**
 * The embedding lookup as a plain program for the compiled step: rows of one table chunk (f32, or packed f16,
 * int8, NF4, read in place through `quant/shader.wgsl.ts`'s readers as `shader.wgsl.ts` reads them), times an
 * optional factor, plus an optional positional row:
 *   Y[n, :] = table(ids[n] − rowOffset, :)·scale (+ pos[n % T, :])   for ids[n] − rowOffset in [0, rows)
 * Rows whose id lies in another chunk are left as they are, so one dispatch per chunk fills Y (the positional row
 * is added once, by the chunk holding the id). Gemma's √C is the f32 `scale`; GPT-2's wpe is `pos`.
 *
 * Invocation (x, y) covers columns 4x..4x+3 (or column x, when C is not a multiple of 4) of rows y, y + gridY, ...
 * The reference is `cpu.ts`'s `gatherRowsInto`.
 *
 * Letters: N ids, C features, R rows of this chunk, T positions.
 */
import type { Program, ProgramCall, StorageBinding } from "../program.js";
import {
  matrixReadersWGSL,
  scaleBindingNames,
  type WeightFormat,
} from "../quant/shader.wgsl.js";

const WORKGROUP_X = 64;

/** One chunk's lookup. */
export interface EmbeddingLookup {
  /** ids [N]. */
  N: number;
  /** The chunk's [R, C]. */
  rows: number;
  cols: number;
  /** The full table's row of the chunk's first row. */
  rowOffset: number;
  format: WeightFormat;
  doubleQuant: boolean;
  /** The double-quant offset (0 otherwise). */
  wOffset: number;
  /** Multiplies every value read, in f32 (Gemma's √C). Default 1. */
  scale?: number;
  /** Adds pos[n % T] (a bound [≥ T, C] table); omitted: no positional table. */
  positions?: number;
  /** Decoding: adds pos[p + n % T] instead, p the step parameters' position (the table covers every position). */
  positionFromStep?: boolean;
}

const UNIFORMS: Program["uniforms"] = [
  { name: "numRows", type: "i32" },
  { name: "rows", type: "i32" },
  { name: "cols", type: "i32" },
  { name: "rowOffset", type: "i32" },
  { name: "wOffset", type: "f32" },
  { name: "scale", type: "f32" },
  { name: "T", type: "i32" },
];

function storage(l: EmbeddingLookup, vec4: boolean): StorageBinding[] {
  const packed = l.format !== "float32";
  const scales = scaleBindingNames("W", l.format, l.doubleQuant);
  const f32 = (name: string): StorageBinding => ({
    name,
    element: "f32",
    access: "read",
  });
  return [
    {
      name: "Y",
      element: vec4 ? "vec4<f32>" : "f32",
      access: "read_write",
    },
    { name: "ids", element: "i32", access: "read" },
    { name: "W", element: packed ? "i32" : "f32", access: "read" },
    ...scales.map((name) =>
      name === "WCodes"
        ? { name, element: "i32" as const, access: "read" as const }
        : f32(name),
    ),
    ...(l.positions !== undefined ? [f32("pos")] : []),
  ];
}

function body(l: EmbeddingLookup, vec4: boolean): string {
  const pos = l.positions !== undefined;
  const row = l.positionFromStep
    ? "(i32(step.position) + n % uniforms.T)"
    : "(n % uniforms.T)";
  const value = vec4
    ? `var v = wAt4(s * uniforms.cols + c) * uniforms.scale;${
        pos
          ? `
    let p = ${row} * uniforms.cols + c;
    v = v + vec4<f32>(pos[p], pos[p + 1], pos[p + 2], pos[p + 3]);`
          : ""
      }
    Y[(n * uniforms.cols + c) / 4] = v;`
    : `var v = wAt(s * uniforms.cols + c) * uniforms.scale;${
        pos
          ? `
    v = v + pos[${row} * uniforms.cols + c];`
          : ""
      }
    Y[n * uniforms.cols + c] = v;`;
  return `${matrixReadersWGSL("W", "w", l.format, l.doubleQuant, "uniforms.wOffset")}

fn main() {
  let c = i32(globalId.x) * ${vec4 ? 4 : 1};
  if (c >= uniforms.cols) { return; }
  for (var n = i32(globalId.y); n < uniforms.numRows; n = n + i32(numWorkgroups.y)) {
    let s = ids[n] - uniforms.rowOffset;
    // Another chunk's row: left as it is.
    if (s < 0 || s >= uniforms.rows) { continue; }
    ${value}
  }
}`;
}

/**
 * Bindings: Y [N, C] (vec4 when C % 4 = 0), ids [N] (i32), W (the chunk: f32 [R, C], or packed int32 words),
 * then the packed scales (`scaleBindingNames("W", ...)`: WAbsmax, or WCodes and WSuper), then pos [≥ T, C] when
 * `positions` is set. Uniforms: numRows (N), rows (R), cols (C), rowOffset, wOffset, scale, T.
 */
export function embeddingLookup(l: EmbeddingLookup): ProgramCall {
  const vec4 = l.cols % 4 === 0;
  const key = [
    "webtuneEngine_embedding",
    l.format,
    l.doubleQuant ? "dq" : "",
    vec4 ? "v4" : "v1",
    l.positions !== undefined ? "pos" : "",
    l.positionFromStep ? "at" : "",
  ].join("_");
  return {
    program: {
      key,
      storage: storage(l, vec4),
      uniforms: UNIFORMS,
      stepParams: l.positionFromStep === true,
      workgroupSize: [WORKGROUP_X, 1, 1],
      body: body(l, vec4),
      flat: false,
    },
    uniforms: [
      l.N,
      l.rows,
      l.cols,
      l.rowOffset,
      l.wOffset,
      l.scale ?? 1,
      l.positions ?? 1,
    ],
    workgroups: [
      Math.ceil(l.cols / (vec4 ? 4 : 1) / WORKGROUP_X),
      Math.max(1, Math.min(l.N, 65535)),
      1,
    ],
  };
}

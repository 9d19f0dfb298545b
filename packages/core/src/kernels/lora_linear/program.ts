/**
 * The tiled matmul of `shader.wgsl.ts` as a plain program for the compiled step: the same body, with the bindings
 * declared explicitly, the dropout seed taken from the step parameters, and the epilogue options only the
 * compiled step uses (a residual input, accumulation into the output).
 *
 * Bindings, in order: result, X, W[, H, U][, bias][, residual], then a packed W's scales.
 */
import type { Program, ProgramCall, StorageBinding } from "../program.js";
import { scaleBindingNames } from "../quant/shader.wgsl.js";
import { dropThreshold, STEP_SEED_HASH_WGSL } from "./dropout.js";
import {
  matmulShader,
  shaderKey,
  type MatmulLayout,
  type TileConfig,
} from "./shader.wgsl.js";
import { chooseTile, type ProblemShape } from "./variant.js";

const UNIFORMS = [
  { name: "M", type: "i32" },
  { name: "N", type: "i32" },
  { name: "K", type: "i32" },
  { name: "R", type: "i32" },
  { name: "outScale", type: "f32" },
  { name: "loraScale", type: "f32" },
  { name: "seedSalt", type: "u32" },
  { name: "dropThreshold", type: "u32" },
  { name: "wOffset", type: "f32" },
] as const;

/** The names of a matmul's storage bindings, in binding order. */
export function matmulBindingNames(layout: MatmulLayout): string[] {
  return [
    "result",
    "X",
    "W",
    ...(layout.lowRank !== "none" ? ["H", "U"] : []),
    ...(layout.bias ? ["bias"] : []),
    ...(layout.residual ? ["residual"] : []),
    ...scaleBindingNames("W", layout.wFormat, layout.doubleQuant),
  ];
}

function storage(layout: MatmulLayout, tile: TileConfig): StorageBinding[] {
  const packed = layout.wFormat !== "float32";
  return matmulBindingNames(layout).map((name) => ({
    name,
    access: name === "result" ? "read_write" : "read",
    element:
      (name === "X" && tile.vec4X) || (name === "W" && tile.vec4W && !packed)
        ? "vec4<f32>"
        : (name === "W" && packed) || name === "WCodes"
          ? "i32"
          : "f32",
  }));
}

export function matmulProgram(layout: MatmulLayout, tile: TileConfig): Program {
  const usesMask = layout.dropout !== "none" || layout.lowRankMask;
  const step = usesMask || layout.accumulate === "step";
  const seeded: MatmulLayout = { ...layout, seedFrom: "step" };
  return {
    key: `${shaderKey(seeded, tile)}_plain`,
    storage: storage(layout, tile),
    uniforms: [...UNIFORMS],
    stepParams: step,
    workgroupSize: [tile.workgroup[0], tile.workgroup[1], 1],
    body: matmulShader(seeded, tile),
    flat: false,
    privates: usesMask ? "var<private> seedHash : u32;" : undefined,
    init: usesMask ? STEP_SEED_HASH_WGSL : undefined,
  };
}

/** The scalars of one matmul call; the dropout seed itself comes from the step parameters. */
export interface MatmulScalars {
  outScale?: number;
  loraScale?: number;
  /** The adapted layer's salt (`layerSalt`), hashed with the step's dropout seed. */
  seedSalt?: number;
  dropout?: number;
  wOffset?: number;
}

/** out[M, N] = outScale · X·W (+ epilogue), as one dispatch of 4×4 register blocks. */
export function matmulCall(
  shape: ProblemShape & { R?: number },
  layout: MatmulLayout,
  software: boolean,
  s: MatmulScalars = {},
): ProgramCall {
  const tile = chooseTile(shape, layout, software);
  const [wx, wy] = tile.workgroup;
  return {
    program: matmulProgram(layout, tile),
    uniforms: [
      shape.M,
      shape.N,
      shape.K,
      shape.R ?? 0,
      s.outScale ?? 1,
      s.loraScale ?? 0,
      s.seedSalt ?? 0,
      dropThreshold(s.dropout ?? 0),
      s.wOffset ?? 0,
    ],
    workgroups: [
      Math.ceil(shape.N / (4 * wx)),
      Math.ceil(shape.M / (4 * wy)),
      1,
    ],
  };
}

/**
 * The tiled matmul of `shader.wgsl.ts` as a plain program for the compiled step: the same body, with the bindings
 * declared explicitly, the dropout seed taken from the step parameters, and the epilogue options only the
 * compiled step uses (a residual input, accumulation into the output).
 *
 * Bindings, in order: result, X, W[, H, U][, bias][, residual], then a packed W's scales. A split-K matmul is two
 * programs (see `split_k.ts`); `recordMatmul` hands each its bindings from that one list.
 */
import { ShapeError } from "../../errors.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
  type UniformField,
} from "../program.js";
import { scaleBindingNames } from "../quant/shader.wgsl.js";
import { dropThreshold, STEP_SEED_HASH_WGSL } from "./dropout.js";
import {
  matmulShader,
  shaderKey,
  type MatmulLayout,
  type TileConfig,
} from "./shader.wgsl.js";
import {
  partialLayout,
  SPLIT_SUM_WORKGROUP,
  SPLIT_UNIFORMS,
  splitChunk,
  splitSumBindingNames,
  splitSumProgram,
} from "./split_k.js";
import { chooseTile, type ProblemShape } from "./variant.js";

const UNIFORMS: UniformField[] = [
  { name: "M", type: "i32" },
  { name: "N", type: "i32" },
  { name: "K", type: "i32" },
  { name: "R", type: "i32" },
  { name: "outScale", type: "f32" },
  { name: "loraScale", type: "f32" },
  { name: "seedSalt", type: "u32" },
  { name: "dropThreshold", type: "u32" },
  { name: "wOffset", type: "f32" },
];

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

/** The matmul's uniforms; split-K's passes add kChunk and S. */
function uniformsOf(tile: TileConfig): UniformField[] {
  return [...UNIFORMS, ...(tile.splits > 1 ? SPLIT_UNIFORMS : [])];
}

export function matmulProgram(layout: MatmulLayout, tile: TileConfig): Program {
  const usesMask = layout.dropout !== "none" || layout.lowRankMask;
  const step = usesMask || layout.accumulate === "step";
  const seeded: MatmulLayout = { ...layout, seedFrom: "step" };
  return {
    key: `${shaderKey(seeded, tile)}_plain`,
    storage: storage(layout, tile),
    uniforms: uniformsOf(tile),
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

/**
 * One matmul as dispatches: one call, or split-K's two (partials into a scratch of `scratch` elements, then the
 * sum and epilogue). Record it with `recordMatmul`.
 */
export interface MatmulDispatches {
  layout: MatmulLayout;
  tile: TileConfig;
  /** Elements of the partials [S, M, N]; 0 for one call. */
  scratch: number;
  calls: ProgramCall[];
}

/** out[M, N] = outScale · X·W (+ epilogue) with the given tile: one dispatch, or two when the tile splits K. */
export function matmulDispatches(
  shape: ProblemShape & { R?: number },
  layout: MatmulLayout,
  tile: TileConfig,
  s: MatmulScalars = {},
): MatmulDispatches {
  const [wx, wy] = tile.workgroup;
  const S = tile.splits;
  const kChunk = splitChunk(shape.K, S);
  const uniforms = [
    shape.M,
    shape.N,
    shape.K,
    shape.R ?? 0,
    s.outScale ?? 1,
    s.loraScale ?? 0,
    s.seedSalt ?? 0,
    dropThreshold(s.dropout ?? 0),
    s.wOffset ?? 0,
    ...(S > 1 ? [kChunk, S] : []),
  ];
  const grid: [number, number, number] = [
    Math.ceil(shape.N / (tile.thread * wx)),
    Math.ceil(shape.M / (tile.thread * wy)),
    S,
  ];
  if (S <= 1)
    return {
      layout,
      tile,
      scratch: 0,
      calls: [
        { program: matmulProgram(layout, tile), uniforms, workgroups: grid },
      ],
    };
  const sum = splitSumProgram(layout, uniformsOf(tile));
  return {
    layout,
    tile,
    scratch: S * shape.M * shape.N,
    calls: [
      {
        program: matmulProgram(partialLayout(layout), tile),
        uniforms,
        workgroups: grid,
      },
      {
        program: sum,
        uniforms,
        workgroups: flatGrid(
          Math.ceil((shape.M * shape.N) / SPLIT_SUM_WORKGROUP),
        ),
      },
    ],
  };
}

/** A matmul of the engine: the chosen variant, split-K included (record it with `recordMatmul`). */
export function matmulCalls(
  shape: ProblemShape & { R?: number },
  layout: MatmulLayout,
  software: boolean,
  s: MatmulScalars = {},
): MatmulDispatches {
  const tile = chooseTile(shape, layout, { software, splitK: true });
  return matmulDispatches(shape, layout, tile, s);
}

/** out[M, N] = outScale · X·W (+ epilogue), as one dispatch (the chosen variant, never split). */
export function matmulCall(
  shape: ProblemShape & { R?: number },
  layout: MatmulLayout,
  software: boolean,
  s: MatmulScalars = {},
): ProgramCall {
  const tile = chooseTile(shape, layout, { software, splitK: false });
  return matmulDispatches(shape, layout, tile, s).calls[0]!;
}

/**
 * Records a matmul with whatever records dispatches, from the bindings of its one-pass program
 * (`matmulBindingNames`): one dispatch, or split-K's partial pass (P, X, W, W's scales) and sum pass (result, P,
 * then the epilogue's inputs), with `scratch(elements)` making P. `dispatch` gets the pass's index.
 */
export function recordMatmul<T>(
  m: MatmulDispatches,
  bindings: T[],
  scratch: (elements: number) => T,
  dispatch: (call: ProgramCall, bindings: T[], pass: number) => void,
): void {
  const names = matmulBindingNames(m.layout);
  if (bindings.length !== names.length)
    throw new ShapeError(
      `recordMatmul: ${names.length} bindings expected (${names.join(", ")}), got ${bindings.length}.`,
    );
  const [first, second] = m.calls;
  if (!second) {
    dispatch(first!, bindings, 0);
    return;
  }
  const P = scratch(m.scratch);
  const byName = (name: string) =>
    name === "P" ? P : bindings[names.indexOf(name)]!;
  const partialNames = matmulBindingNames(partialLayout(m.layout));
  dispatch(first!, [P, ...partialNames.slice(1).map(byName)], 0);
  dispatch(second, splitSumBindingNames(m.layout).map(byName), 1);
}

/**
 * WGSL for every LoRA linear program: one tiled matmul with a LoRA-aware prologue (dropout on an operand's loads)
 * and epilogue (bias, low-rank update), configured four ways by `webgpu.ts`:
 *
 *   forward   y  = x·W + b + s · h·Bᵀ          h  = keep · drop(x)·Aᵀ
 *   backward  dx = dy·Wᵀ + s·keep · mask ∘ (g·A)  g = dy·B
 *             dA = s·keep · gᵀ·drop(x)          dB = s · dyᵀ·h
 *
 * Letters: the program computes out[M, N] = outScale · Σ_k X(m, k)·W(k, n)  (+ bias[n])
 *                                         (+ loraScale · keep(m, n) · Σ_r H[m, r]·U(r, n)).
 * X is stored [M, K] ('mk') or [K, M] ('km'); W is stored [K, N] ('kn') or [N, K] ('nk'); U is [R, N] or [N, R].
 * W may be packed (f16, int8 or NF4 words with block scales, see `quant/packed.ts`): its loaders then dequantize
 * while they load, so no f32 copy of W is made. Its words bind as array<i32> with one component; the scales
 * follow the other inputs, and the double-quant offset is the `wOffset` uniform.
 * Shapes are uniforms, so one compiled pipeline serves every shape; only layouts, formats, flags and tile sizes
 * are spliced into the source, and all of them are in the shader key.
 * This file holds the loaders and the epilogue; the main loops (tile sizes, double buffering, split-K's K range)
 * are in `tiles.wgsl.ts`, split-K's second pass in `split_k.ts`, and the choice among them in `variant.ts`.
 */
import { matrixReadersWGSL, type WeightFormat } from "../quant/shader.wgsl.js";
import { dropoutWGSL } from "./dropout.js";
import { directBody, sharedBody } from "./tiles.wgsl.js";

/** The layout fields of a plain f32 matmul: no dropout, no low-rank term, no bias (callers add xLayout, wLayout). */
export const PLAIN_MATMUL = {
  dropout: "none",
  lowRank: "none",
  lowRankMask: false,
  bias: false,
  wFormat: "float32",
  doubleQuant: false,
} as const;

export interface MatmulLayout {
  xLayout: "mk" | "km";
  wLayout: "kn" | "nk";
  /** Which operand's loads are multiplied by the dropout mask (indexed by its row-major storage index). */
  dropout: "none" | "x" | "w";
  /** Add loraScale · Σ_r H[m, r]·U(r, n) while the accumulator is still in registers. */
  lowRank: "none" | "rn" | "nr";
  /** Multiply the low-rank term by the dropout mask at (m, n) (dx of a dropped-out input). */
  lowRankMask: boolean;
  bias: boolean;
  /** How W is stored: plain f32, or packed (dequantized in the loads). */
  wFormat: WeightFormat;
  /** W's block scales are double-quantized (int8 and nf4 only). */
  doubleQuant: boolean;
  /**
   * Compiled step only. Add the output's current value: 'always' (sums over several matmuls, such as the
   * gradient of an input read by q, k and v), or 'step' when the step parameters say so (gradients accumulated
   * over micro-batches). Default 'none'.
   */
  accumulate?: "none" | "always" | "step";
  /** Compiled step only: add residual[m, n] (a binding after the bias), the block's skip connection. */
  residual?: boolean;
  /** Where the dropout mask's seed comes from: the tfjs program's uniforms, or the step parameters. */
  seedFrom?: "uniforms" | "step";
}

/** The layout fields of a plain f32 W, for programs whose W operand is an activation or an adapter. */
export const F32_W = { wFormat: "float32", doubleQuant: false } as const;

export interface TileConfig {
  /** 'shared': workgroup-memory tiles, for GPUs. 'direct': register tiles read straight from storage, for CPU adapters. */
  kind: "shared" | "direct";
  /** Workgroup size [x over N, y over M]; each invocation computes `thread` rows × `thread` columns. */
  workgroup: [number, number];
  /** Rows (and columns) of one invocation's register block: 4, or 8 as 2×2 blocks of 4×4 ('shared' only). */
  thread: 4 | 8;
  /** Depth of one K step held in workgroup memory ('shared' only). */
  tileK: number;
  /** Workgroup-memory buffers: 2 double-buffers the K steps ('shared' only). */
  stages: 1 | 2;
  /**
   * Splits of K over grid z. Above 1 the program is the first pass of a split-K matmul: it writes raw partial
   * sums [S, M, N] (no epilogue), and `split_k.ts` adds them and applies the epilogue.
   */
  splits: number;
  /**
   * vec4 loads of X (along its contiguous dim) and of W. For a packed W, `vec4W` means its 4-element loaders
   * (one or two words each) are used; the binding itself stays scalar.
   */
  vec4X: boolean;
  vec4W: boolean;
}

export const UNIFORMS_WGSL =
  "M : i32, N : i32, K : i32, R : i32, outScale : f32, loraScale : f32, seedHash : u32, dropThreshold : u32, wOffset : f32,";

/** A key that names every choice spliced into the source. */
export function shaderKey(layout: MatmulLayout, tile: TileConfig): string {
  return [
    "webtuneLoraMatmul",
    layout.xLayout,
    layout.wLayout,
    layout.dropout,
    layout.lowRank,
    layout.lowRankMask ? "lrmask" : "",
    layout.bias ? "bias" : "",
    layout.wFormat,
    layout.doubleQuant ? "dq" : "",
    layout.accumulate && layout.accumulate !== "none"
      ? `acc${layout.accumulate}`
      : "",
    layout.residual ? "res" : "",
    layout.seedFrom === "step" ? "stepseed" : "",
    tile.kind,
    tile.workgroup.join("x"),
    `t${tile.thread}`,
    tile.tileK,
    tile.stages === 2 ? "double" : "",
    tile.splits > 1 ? "splitk" : "",
    tile.vec4X ? "x4" : "x1",
    tile.vec4W ? "w4" : "w1",
  ].join("_");
}

/** Loads X(m, k) and W(k, n) as scalars, with the dropout mask applied where configured. */
function scalarLoaders(layout: MatmulLayout, tile: TileConfig): string {
  const xIndex =
    layout.xLayout === "mk" ? "m * uniforms.K + k" : "k * uniforms.M + m";
  const wIndex =
    layout.wLayout === "kn" ? "k * uniforms.N + n" : "n * uniforms.K + k";
  const xRead = tile.vec4X
    ? `X[(${xIndex}) / 4][(${xIndex}) % 4]`
    : `X[${xIndex}]`;
  const wRead =
    layout.wFormat !== "float32"
      ? `wAt(${wIndex})`
      : tile.vec4W
        ? `W[(${wIndex}) / 4][(${wIndex}) % 4]`
        : `W[${wIndex}]`;
  const xMask = layout.dropout === "x" ? ` * dropoutKeep(${xIndex})` : "";
  const wMask = layout.dropout === "w" ? ` * dropoutKeep(${wIndex})` : "";
  return `
fn loadX(m: i32, k: i32) -> f32 { return ${xRead}${xMask}; }
fn loadW(k: i32, n: i32) -> f32 { return ${wRead}${wMask}; }`;
}

/**
 * Four consecutive elements of an operand along one of its dims. Where the storage is contiguous along that dim
 * and vec4-typed, that is one 16-byte load (times the dropout mask, if any); a packed W reads its words there
 * (`wAt4`); elsewhere four scalar loads.
 */
function vectorLoaders(layout: MatmulLayout, tile: TileConfig): string {
  const mask4 = (i: string) =>
    `vec4<f32>(dropoutKeep(${i}), dropoutKeep(${i} + 1), dropoutKeep(${i} + 2), dropoutKeep(${i} + 3))`;
  const loader = (
    fn: string,
    args: string,
    vector: { index: string; read: string } | undefined,
    masked: boolean,
    scalars: string,
  ) =>
    vector !== undefined
      ? `fn ${fn}(${args}) -> vec4<f32> { let i = ${vector.index}; return ${vector.read}${masked ? ` * ${mask4("i")}` : ""}; }`
      : `fn ${fn}(${args}) -> vec4<f32> { return vec4<f32>(${scalars}); }`;
  const xRead = "X[i / 4]";
  const wRead = layout.wFormat === "float32" ? "W[i / 4]" : "wAt4(i)";
  const when = (on: boolean, index: string, read: string) =>
    on ? { index, read } : undefined;
  const xMasked = layout.dropout === "x";
  const wMasked = layout.dropout === "w";
  return [
    loader(
      "loadX4k",
      "m: i32, k: i32",
      when(layout.xLayout === "mk" && tile.vec4X, "m * uniforms.K + k", xRead),
      xMasked,
      "loadX(m, k), loadX(m, k + 1), loadX(m, k + 2), loadX(m, k + 3)",
    ),
    loader(
      "loadX4m",
      "m: i32, k: i32",
      when(layout.xLayout === "km" && tile.vec4X, "k * uniforms.M + m", xRead),
      xMasked,
      "loadX(m, k), loadX(m + 1, k), loadX(m + 2, k), loadX(m + 3, k)",
    ),
    loader(
      "loadW4n",
      "k: i32, n: i32",
      when(layout.wLayout === "kn" && tile.vec4W, "k * uniforms.N + n", wRead),
      wMasked,
      "loadW(k, n), loadW(k, n + 1), loadW(k, n + 2), loadW(k, n + 3)",
    ),
    loader(
      "loadW4k",
      "k: i32, n: i32",
      when(layout.wLayout === "nk" && tile.vec4W, "n * uniforms.K + k", wRead),
      wMasked,
      "loadW(k, n), loadW(k + 1, n), loadW(k + 2, n), loadW(k + 3, n)",
    ),
  ].join("\n");
}

/**
 * The epilogue of one output element, `storeOne(m, n, sum)`: out[m, n] = outScale · sum (+ bias[n]) (+ the
 * low-rank term) (+ residual[m, n]) (+ out's current value). The split-K sum pass (`split_k.ts`) calls it too.
 */
export function epilogueWGSL(layout: MatmulLayout): string {
  const uRead =
    layout.lowRank === "rn" ? "U[r * uniforms.N + n]" : "U[n * uniforms.R + r]";
  const lowRank =
    layout.lowRank === "none"
      ? ""
      : `
  var lr = 0.0;
  for (var r = 0; r < uniforms.R; r++) { lr = fma(H[m * uniforms.R + r], ${uRead}, lr); }
  v = fma(uniforms.loraScale${layout.lowRankMask ? " * dropoutKeep(m * uniforms.N + n)" : ""}, lr, v);`;
  const residual = layout.residual
    ? "\n  v = v + residual[m * uniforms.N + n];"
    : "";
  const accumulate =
    layout.accumulate === "always"
      ? "\n  v = v + result[m * uniforms.N + n];"
      : layout.accumulate === "step"
        ? "\n  if (step.accumulate != 0u) { v = v + result[m * uniforms.N + n]; }"
        : "";
  return `
fn storeOne(m: i32, n: i32, sum: f32) {
  var v = uniforms.outScale * sum;${layout.bias ? "\n  v = v + bias[n];" : ""}${lowRank}${residual}${accumulate}
  result[m * uniforms.N + n] = v;
}`;
}

/**
 * `storeBlock`: one 4-row × 4-column register block through the epilogue, or, as split-K's first pass, its raw
 * sums into the partials [S, M, N] at split z.
 */
function storeBlockWGSL(layout: MatmulLayout, tile: TileConfig): string {
  const split = tile.splits > 1;
  const store = split
    ? "result[(i32(workgroupId.z) * uniforms.M + m) * uniforms.N + n] = acc[i][j];"
    : "storeOne(m, n, acc[i][j]);";
  return `${split ? "" : epilogueWGSL(layout)}
fn storeBlock(row0: i32, col0: i32, acc: array<vec4<f32>, 4>) {
  for (var i = 0; i < 4; i++) {
    let m = row0 + i;
    if (m >= uniforms.M) { return; }
    for (var j = 0; j < 4; j++) {
      let n = col0 + j;
      if (n >= uniforms.N) { break; }
      ${store}
    }
  }
}`;
}

/** The user code of one program; tfjs prepends bindings (result, X, W[, H, U][, bias]) and the uniforms. */
export function matmulShader(layout: MatmulLayout, tile: TileConfig): string {
  return [
    layout.dropout !== "none" || layout.lowRankMask
      ? dropoutWGSL(
          layout.seedFrom === "step" ? "seedHash" : "uniforms.seedHash",
        )
      : "",
    layout.wFormat === "float32"
      ? ""
      : matrixReadersWGSL(
          "W",
          "w",
          layout.wFormat,
          layout.doubleQuant,
          "uniforms.wOffset",
        ),
    scalarLoaders(layout, tile),
    vectorLoaders(layout, tile),
    storeBlockWGSL(layout, tile),
    tile.kind === "shared"
      ? sharedBody(layout, tile)
      : directBody(layout, tile),
  ].join("\n");
}

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
 */
import { matrixReadersWGSL, type WeightFormat } from "../quant/shader.wgsl.js";
import { dropoutWGSL } from "./dropout.js";

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
  /** Workgroup size [x over N, y over M]; each invocation computes 4 rows × 4 columns. */
  workgroup: [number, number];
  /** Depth of one K step held in workgroup memory ('shared' only). */
  tileK: number;
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
    tile.tileK,
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

/** The epilogue: bias, low-rank term and store for one 4-row × 4-column register block. */
function epilogue(layout: MatmulLayout): string {
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
    ? "\n      v = v + residual[m * uniforms.N + n];"
    : "";
  const accumulate =
    layout.accumulate === "always"
      ? "\n      v = v + result[m * uniforms.N + n];"
      : layout.accumulate === "step"
        ? "\n      if (step.accumulate != 0u) { v = v + result[m * uniforms.N + n]; }"
        : "";
  return `
fn storeBlock(row0: i32, col0: i32, acc: array<vec4<f32>, 4>) {
  for (var i = 0; i < 4; i++) {
    let m = row0 + i;
    if (m >= uniforms.M) { return; }
    for (var j = 0; j < 4; j++) {
      let n = col0 + j;
      if (n >= uniforms.N) { break; }
      var v = uniforms.outScale * acc[i][j];${layout.bias ? "\n      v = v + bias[n];" : ""}${lowRank}${residual}${accumulate}
      result[m * uniforms.N + n] = v;
    }
  }
}`;
}

/**
 * The loop that stages one operand's [outer × TK] slice into workgroup memory `dst`, stored k-major and packed
 * as vec4 along the outer dim (M for X, N for W). Reads are 16-byte vectors along the operand's contiguous dim
 * where it allows them; elements past an edge are staged as zero. Offsets are multiples of 4 and vec4 needs the
 * contiguous extent to be a multiple of 4, so a vector is either wholly inside or wholly outside.
 */
function stage(
  dst: string,
  outer: number,
  tk: number,
  threads: number,
  o: {
    origin: string;
    bound: string;
    load: string;
    load4Outer: string;
    load4K: string;
    contiguous: "k" | "outer" | "none";
  },
  order: (outerIndex: string, k: string) => string,
): string {
  if (o.contiguous === "outer") {
    // One vec4 of 4 outer neighbours at one k: stored as is.
    return `
    for (var e = lid; e < ${(outer * tk) / 4}; e += ${threads}) {
      let kk = e / ${outer / 4};
      let oq = (e % ${outer / 4}) * 4;
      var v = vec4<f32>(0.0);
      if (${o.origin} + oq < ${o.bound} && k0 + kk < uniforms.K) { v = ${o.load4Outer}(${order(`${o.origin} + oq`, "k0 + kk")}); }
      ${dst}[kk][oq / 4] = v;
    }`;
  }
  if (o.contiguous === "k") {
    // One vec4 of 4 consecutive k at one outer index: scattered into 4 k rows.
    return `
    for (var e = lid; e < ${(outer * tk) / 4}; e += ${threads}) {
      let oo = e / ${tk / 4};
      let kq = (e % ${tk / 4}) * 4;
      var v = vec4<f32>(0.0);
      if (${o.origin} + oo < ${o.bound} && k0 + kq < uniforms.K) { v = ${o.load4K}(${order(`${o.origin} + oo`, "k0 + kq")}); }
      for (var j = 0; j < 4; j++) { ${dst}[kq + j][oo / 4][oo % 4] = v[j]; }
    }`;
  }
  return `
    for (var e = lid; e < ${outer * tk}; e += ${threads}) {
      let oo = e / ${tk};
      let kk = e % ${tk};
      var v = 0.0;
      if (${o.origin} + oo < ${o.bound} && k0 + kk < uniforms.K) { v = ${o.load}(${order(`${o.origin} + oo`, "k0 + kk")}); }
      ${dst}[kk][oo / 4][oo % 4] = v;
    }`;
}

/**
 * Workgroup-memory tiling for GPUs. A workgroup of [WX, WY] invocations owns an output tile of
 * TM = 4·WY rows × TN = 4·WX columns. Per K step of depth TK it stages X[TM × TK] and W[TK × TN] in workgroup
 * memory (vec4 global loads where the layout allows), both k-major and packed as vec4 along M and N, so that each
 * invocation's inner loop is one vec4 read of 4 rows, one vec4 read of 4 columns and 4 vec4 FMAs.
 */
function sharedBody(layout: MatmulLayout, tile: TileConfig): string {
  const [wx, wy] = tile.workgroup;
  const tm = 4 * wy;
  const tn = 4 * wx;
  const tk = tile.tileK;
  const threads = wx * wy;
  const xContiguous = !tile.vec4X
    ? "none"
    : layout.xLayout === "mk"
      ? "k"
      : "outer";
  const wContiguous = !tile.vec4W
    ? "none"
    : layout.wLayout === "nk"
      ? "k"
      : "outer";
  const stageX = stage(
    "xs",
    tm,
    tk,
    threads,
    {
      origin: "m0",
      bound: "uniforms.M",
      load: "loadX",
      load4Outer: "loadX4m",
      load4K: "loadX4k",
      contiguous: xContiguous,
    },
    (m, k) => `${m}, ${k}`,
  );
  const stageW = stage(
    "ws",
    tn,
    tk,
    threads,
    {
      origin: "n0",
      bound: "uniforms.N",
      load: "loadW",
      load4Outer: "loadW4n",
      load4K: "loadW4k",
      contiguous: wContiguous,
    },
    (n, k) => `${k}, ${n}`,
  );
  return `
var<workgroup> xs: array<array<vec4<f32>, ${tm / 4}>, ${tk}>;
var<workgroup> ws: array<array<vec4<f32>, ${tn / 4}>, ${tk}>;

fn main() {
  let tx = i32(localId.x);
  let ty = i32(localId.y);
  let lid = ty * ${wx} + tx;
  let m0 = i32(workgroupId.y) * ${tm};
  let n0 = i32(workgroupId.x) * ${tn};
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0; k0 < uniforms.K; k0 += ${tk}) {
    // Stage X: ${tm} × ${tk}.${stageX}
    // Stage W: ${tk} × ${tn}.${stageW}
    workgroupBarrier();
    for (var kk = 0; kk < ${tk}; kk++) {
      let a = xs[kk][ty];
      let b = ws[kk][tx];
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  storeBlock(m0 + ty * 4, n0 + tx * 4, acc);
}`;
}

/**
 * The 4 k × 4 n block of W at (k, col0) as a matrix whose column j is row k + j over the 4 columns. Past the
 * right edge the columns repeat the last one (never stored). Where W is [N, K] with vec4 loads along k, the block
 * is 4 column loads transposed: 4 vector (or packed-word) loads instead of 16 scalar ones.
 */
function wBlockLoader(layout: MatmulLayout, tile: TileConfig): string {
  if (layout.wLayout === "nk" && tile.vec4W)
    return `
fn loadWBlock(k: i32, col0: i32, full: bool) -> mat4x4<f32> {
  let c = uniforms.N - 1;
  return transpose(mat4x4<f32>(loadW4k(k, col0), loadW4k(k, min(col0 + 1, c)), loadW4k(k, min(col0 + 2, c)), loadW4k(k, min(col0 + 3, c))));
}`;
  return `
// Columns col0..col0+3 of row k of W; past the right edge they repeat the last column (never stored).
fn loadWCols(k: i32, col0: i32, full: bool) -> vec4<f32> {
  if (full) { return loadW4n(k, col0); }
  let c = uniforms.N - 1;
  return vec4<f32>(loadW(k, col0), loadW(k, min(col0 + 1, c)), loadW(k, min(col0 + 2, c)), loadW(k, min(col0 + 3, c)));
}
fn loadWBlock(k: i32, col0: i32, full: bool) -> mat4x4<f32> {
  return mat4x4<f32>(loadWCols(k, col0, full), loadWCols(k + 1, col0, full), loadWCols(k + 2, col0, full), loadWCols(k + 3, col0, full));
}`;
}

/**
 * Register tiling without workgroup memory, for adapters that run shaders on CPU cores (lavapipe, SwiftShader):
 * there, barriers are costly and caches already do what workgroup memory would. Each invocation reads its
 * 4 rows of X and 4 columns of W straight from storage; rows and columns past the edge are clamped for the
 * reads and skipped at the store, so the k loop carries no bounds checks.
 */
function directBody(layout: MatmulLayout, tile: TileConfig): string {
  const [wx, wy] = tile.workgroup;
  return `${wBlockLoader(layout, tile)}

fn main() {
  let row0 = i32(globalId.y) * 4;
  let col0 = i32(globalId.x) * 4;
  if (row0 >= uniforms.M || col0 >= uniforms.N) { return; }
  let m1 = min(row0 + 1, uniforms.M - 1);
  let m2 = min(row0 + 2, uniforms.M - 1);
  let m3 = min(row0 + 3, uniforms.M - 1);
  let full = col0 + 3 < uniforms.N;
  var acc: array<vec4<f32>, 4>;
  // Four k at a time: 4 reads of 4 consecutive k per row of X, one 4 × 4 block of W, 16 vec4 FMAs.
  let k4 = uniforms.K - uniforms.K % 4;
  for (var k = 0; k < k4; k += 4) {
    let b = loadWBlock(k, col0, full);
    let a0 = loadX4k(row0, k);
    let a1 = loadX4k(m1, k);
    let a2 = loadX4k(m2, k);
    let a3 = loadX4k(m3, k);
    acc[0] = fma(vec4<f32>(a0.x), b[0], fma(vec4<f32>(a0.y), b[1], fma(vec4<f32>(a0.z), b[2], fma(vec4<f32>(a0.w), b[3], acc[0]))));
    acc[1] = fma(vec4<f32>(a1.x), b[0], fma(vec4<f32>(a1.y), b[1], fma(vec4<f32>(a1.z), b[2], fma(vec4<f32>(a1.w), b[3], acc[1]))));
    acc[2] = fma(vec4<f32>(a2.x), b[0], fma(vec4<f32>(a2.y), b[1], fma(vec4<f32>(a2.z), b[2], fma(vec4<f32>(a2.w), b[3], acc[2]))));
    acc[3] = fma(vec4<f32>(a3.x), b[0], fma(vec4<f32>(a3.y), b[1], fma(vec4<f32>(a3.z), b[2], fma(vec4<f32>(a3.w), b[3], acc[3]))));
  }
  let c = uniforms.N - 1;
  for (var k = k4; k < uniforms.K; k++) {
    let b = vec4<f32>(loadW(k, col0), loadW(k, min(col0 + 1, c)), loadW(k, min(col0 + 2, c)), loadW(k, min(col0 + 3, c)));
    acc[0] = fma(vec4<f32>(loadX(row0, k)), b, acc[0]);
    acc[1] = fma(vec4<f32>(loadX(m1, k)), b, acc[1]);
    acc[2] = fma(vec4<f32>(loadX(m2, k)), b, acc[2]);
    acc[3] = fma(vec4<f32>(loadX(m3, k)), b, acc[3]);
  }
  storeBlock(row0, col0, acc);
}
// workgroup ${wx}x${wy}`;
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
    epilogue(layout),
    tile.kind === "shared"
      ? sharedBody(layout, tile)
      : directBody(layout, tile),
  ].join("\n");
}

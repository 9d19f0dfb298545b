/**
 * The main loops of the tiled matmul (`shader.wgsl.ts` supplies the loaders and `storeBlock`): how a workgroup
 * walks K and where its partial products live.
 *
 *   shared   workgroup-memory tiles, for GPUs. A workgroup of [WX, WY] invocations owns TM = P·WY rows × TN = P·WX
 *            columns, P = 4 (each invocation a 4×4 register block) or 8 (2×2 blocks of 4×4, 64 accumulators).
 *            Per K step of depth TK it stages X[TM × TK] and W[TK × TN], k-major and packed as vec4 along M and N.
 *            Stages = 2 double-buffers them: the loads of step k+1 go to the other buffer while step k's FMAs
 *            run, with one barrier per step instead of two. Bytes: stages · TK · (TM + TN) · 4, which must fit
 *            the device's maxComputeWorkgroupStorageSize (`variant.ts` picks TK so that it does).
 *   direct   register tiles read straight from storage, for adapters that run shaders on CPU cores.
 *
 * Split-K (tile.splits > 1): workgroup z takes K's rows [z·kChunk, min(K, (z+1)·kChunk)); `storeBlock` then writes
 * raw partial sums [S, M, N] and `split_k.ts` adds them up. The loop bound is the uniform kChunk, not the split's
 * own end, so that barriers stay in uniform control flow; rows past the end load as zero.
 */
import type { MatmulLayout, TileConfig } from "./shader.wgsl.js";

/** The K range of this workgroup: `kStart`, `kEnd`, and the uniform trip length `CHUNK` of the K loop. */
function kRange(tile: TileConfig): { lets: string; chunk: string } {
  if (tile.splits <= 1)
    return {
      lets: "let kStart = 0;\n  let kEnd = uniforms.K;",
      chunk: "uniforms.K",
    };
  return {
    lets: "let kStart = i32(workgroupId.z) * uniforms.kChunk;\n  let kEnd = min(uniforms.K, kStart + uniforms.kChunk);",
    chunk: "uniforms.kChunk",
  };
}

/**
 * The loop that stages one operand's [outer × TK] slice, from K row `k0`, into workgroup memory `dst`, stored
 * k-major and packed as vec4 along the outer dim (M for X, N for W). Reads are 16-byte vectors along the operand's
 * contiguous dim where it allows them; elements past an edge (or past `kEnd`) are staged as zero. Offsets are
 * multiples of 4 and vec4 needs the contiguous extent to be a multiple of 4, so a vector is either wholly inside
 * or wholly outside.
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
      if (${o.origin} + oq < ${o.bound} && k0 + kk < kEnd) { v = ${o.load4Outer}(${order(`${o.origin} + oq`, "k0 + kk")}); }
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
      if (${o.origin} + oo < ${o.bound} && k0 + kq < kEnd) { v = ${o.load4K}(${order(`${o.origin} + oo`, "k0 + kq")}); }
      for (var j = 0; j < 4; j++) { ${dst}[kq + j][oo / 4][oo % 4] = v[j]; }
    }`;
  }
  return `
    for (var e = lid; e < ${outer * tk}; e += ${threads}) {
      let oo = e / ${tk};
      let kk = e % ${tk};
      var v = 0.0;
      if (${o.origin} + oo < ${o.bound} && k0 + kk < kEnd) { v = ${o.load}(${order(`${o.origin} + oo`, "k0 + kk")}); }
      ${dst}[kk][oo / 4][oo % 4] = v;
    }`;
}

/** Both operands' staging loops into buffer `buffer` ("" single-buffered, else an index expression). */
function stageBoth(
  layout: MatmulLayout,
  tile: TileConfig,
  buffer: string,
): string {
  const [wx, wy] = tile.workgroup;
  const [tm, tn] = [tile.thread * wy, tile.thread * wx];
  const threads = wx * wy;
  const at = buffer === "" ? "" : `[${buffer}]`;
  const contiguous = (vec4: boolean, kMajor: boolean) =>
    !vec4 ? "none" : kMajor ? "k" : "outer";
  const stageX = stage(
    `xs${at}`,
    tm,
    tile.tileK,
    threads,
    {
      origin: "m0",
      bound: "uniforms.M",
      load: "loadX",
      load4Outer: "loadX4m",
      load4K: "loadX4k",
      contiguous: contiguous(tile.vec4X, layout.xLayout === "mk"),
    },
    (m, k) => `${m}, ${k}`,
  );
  const stageW = stage(
    `ws${at}`,
    tn,
    tile.tileK,
    threads,
    {
      origin: "n0",
      bound: "uniforms.N",
      load: "loadW",
      load4Outer: "loadW4n",
      load4K: "loadW4k",
      contiguous: contiguous(tile.vec4W, layout.wLayout === "nk"),
    },
    (n, k) => `${k}, ${n}`,
  );
  return `
    // Stage X: ${tm} × ${tile.tileK}.${stageX}
    // Stage W: ${tile.tileK} × ${tn}.${stageW}`;
}

/**
 * One K step's FMAs from buffer `at`: per k, one vec4 of 4 rows and one of 4 columns per 4×4 block. With P = 8 an
 * invocation's blocks sit WY vec4s (rows) and WX vec4s (columns) apart, so neighbouring invocations read
 * neighbouring vec4s of workgroup memory.
 */
function fmas(tile: TileConfig, at: string): string {
  const [wx, wy] = tile.workgroup;
  const h = tile.thread / 4;
  const lines: string[] = [];
  for (let bi = 0; bi < h; bi++)
    lines.push(`let a${bi} = xs${at}[kk][ty + ${bi * wy}];`);
  for (let bj = 0; bj < h; bj++)
    lines.push(`let b${bj} = ws${at}[kk][tx + ${bj * wx}];`);
  for (let bi = 0; bi < h; bi++)
    for (let bj = 0; bj < h; bj++)
      for (const [i, c] of ["x", "y", "z", "w"].entries()) {
        const a = (bi * h + bj) * 4 + i;
        lines.push(
          `acc[${a}] = fma(vec4<f32>(a${bi}.${c}), b${bj}, acc[${a}]);`,
        );
      }
  return `
    for (var kk = 0; kk < ${tile.tileK}; kk++) {
      ${lines.join("\n      ")}
    }`;
}

/** Stores each of the invocation's 4×4 blocks. */
function stores(tile: TileConfig): string {
  const [wx, wy] = tile.workgroup;
  const h = tile.thread / 4;
  const out: string[] = [];
  for (let bi = 0; bi < h; bi++)
    for (let bj = 0; bj < h; bj++) {
      const a = (bi * h + bj) * 4;
      out.push(
        `storeBlock(m0 + (ty + ${bi * wy}) * 4, n0 + (tx + ${bj * wx}) * 4, array<vec4<f32>, 4>(acc[${a}], acc[${a + 1}], acc[${a + 2}], acc[${a + 3}]));`,
      );
    }
  return out.join("\n  ");
}

/** Workgroup-memory tiling for GPUs (see the file comment), single- or double-buffered. */
export function sharedBody(layout: MatmulLayout, tile: TileConfig): string {
  const [wx, wy] = tile.workgroup;
  const [tm, tn, tk] = [tile.thread * wy, tile.thread * wx, tile.tileK];
  const range = kRange(tile);
  const blocks = (tile.thread / 4) ** 2;
  const single = tile.stages === 1;
  const buffers = single ? "" : "array<";
  const close = single ? "" : ", 2>";
  const loop = single
    ? `
  for (var kb = 0; kb < ${range.chunk}; kb += ${tk}) {
    let k0 = kStart + kb;${stageBoth(layout, tile, "")}
    workgroupBarrier();${fmas(tile, "")}
    workgroupBarrier();
  }`
    : `
  // Double buffering: step kb computes from buffer cur while the invocations stage step kb + TK into the other.
  // The one barrier per step orders both: the next step's reads after these writes, and these writes after the
  // previous step's reads of that buffer.
  {
    let k0 = kStart;${stageBoth(layout, tile, "0")}
  }
  workgroupBarrier();
  var cur = 0;
  for (var kb = 0; kb < ${range.chunk}; kb += ${tk}) {
    if (kb + ${tk} < ${range.chunk}) {
      let k0 = kStart + kb + ${tk};
      let nxt = 1 - cur;${stageBoth(layout, tile, "nxt").replace(/\n/g, "\n  ")}
    }${fmas(tile, "[cur]")}
    workgroupBarrier();
    cur = 1 - cur;
  }`;
  return `
var<workgroup> xs: ${buffers}array<array<vec4<f32>, ${tm / 4}>, ${tk}>${close};
var<workgroup> ws: ${buffers}array<array<vec4<f32>, ${tn / 4}>, ${tk}>${close};

fn main() {
  let tx = i32(localId.x);
  let ty = i32(localId.y);
  let lid = ty * ${wx} + tx;
  let m0 = i32(workgroupId.y) * ${tm};
  let n0 = i32(workgroupId.x) * ${tn};
  ${range.lets}
  var acc: array<vec4<f32>, ${4 * blocks}>;${loop}
  ${stores(tile)}
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
export function directBody(layout: MatmulLayout, tile: TileConfig): string {
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
  ${kRange(tile).lets}
  var acc: array<vec4<f32>, 4>;
  // Four k at a time: 4 reads of 4 consecutive k per row of X, one 4 × 4 block of W, 16 vec4 FMAs.
  let k4 = kEnd - (kEnd - kStart) % 4;
  for (var k = kStart; k < k4; k += 4) {
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
  for (var k = k4; k < kEnd; k++) {
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

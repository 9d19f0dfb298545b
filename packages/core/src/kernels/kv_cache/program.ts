/**
 * Decoding against a KV cache, as plain programs: the cache of one layer is two buffers [B, G, S, D] (keys after
 * RoPE, values) that outlive a run; a run of T new tokens at positions p..p+T−1 (p, the step parameters'
 * `position`, changes every token while the programs stay the same) first writes its keys and values at rows
 * p..p+T−1, then attends from each new query to the cache's rows 0..p+t.
 *
 *   cacheWrite:        src (a [B, G, T, D] view of a projection)  ->  cache rows p..p+T−1
 *   ropeQkv:           q, k, v views  ->  rope(q) [B, H, T, D], rope(k) and v into cache rows p..p+T−1: a RoPE
 *                      model's whole preparation of a decoding run's attention inputs in one dispatch
 *   decodeAttention:   q [B, H, T, D] view, K, V caches           ->  o (view), per query row p + t:
 *                      o = softmax(q·kⱼᵀ·scale (→ cap·tanh(s/cap)), j ∈ [lo, p + t]) · v,
 *                      lo = max(0, p + t − window + 1) with a sliding window, else 0
 *
 * decodeAttention: one workgroup of LANES invocations per query row (b, h, t). The keys are taken LANES at a
 * time: lane c scores key j0 + c (a D-long dot product of its own) and, once the block's maximum is known,
 * exponentiates it; the probabilities go through workgroup memory, and every lane folds the block into the online
 * softmax (the same m and l in every lane) while adding p·v into the one vec4 column of the output it owns
 * (D ≤ 4·LANES). No [T, S] scores are stored, and the work
 * per token grows with p, not with S.
 *
 * Letters: B batch, G kv heads, H query heads (head h reads kv head ⌊h / (H/G)⌋), S cache rows, T new tokens,
 * D head dim (a multiple of 4, at most 4·LANES).
 */
import { ConfigError, ShapeError } from "../../errors.js";
import { flatGrid, type Program, type ProgramCall } from "../program.js";

const LANES = 64;

/** The largest head dim: one vec4 column of the output per lane. */
export const MAX_DECODE_HEAD_DIM = 4 * LANES;

/** Element (b, head, t, d) at offset + b·sB + head·sH + t·sT + d, in elements. */
export interface CacheView {
  offset: number;
  sB: number;
  sH: number;
  sT: number;
}

/** The view of a cache buffer [B, G, S, D]. */
export function cacheLayout(G: number, S: number, D: number): CacheView {
  return { offset: 0, sB: G * S * D, sH: S * D, sT: D };
}

export interface DecodeDims {
  B: number;
  /** New tokens per row in this run. */
  T: number;
  H: number;
  G: number;
  D: number;
  /** Rows of the cache. */
  S: number;
}

export interface DecodeOptions {
  scale: number;
  softcap?: number;
  window?: number;
}

const viewValues = (v: CacheView, unit: number) =>
  [v.offset, v.sB, v.sH, v.sT].map((n) => n / unit);

function checkDims(label: string, d: DecodeDims): void {
  for (const [name, n] of Object.entries(d))
    if (!Number.isInteger(n) || n < 1)
      throw new ShapeError(
        `${label}: ${name} = ${n}; expected a positive integer.`,
      );
  if (d.H % d.G !== 0)
    throw new ShapeError(
      `${label}: H = ${d.H} query heads is not a multiple of G = ${d.G} kv heads.`,
    );
  if (d.D % 4 !== 0 || d.D > MAX_DECODE_HEAD_DIM)
    throw new ShapeError(
      `${label}: head dim D = ${d.D}; decoding needs a multiple of 4 up to ${MAX_DECODE_HEAD_DIM}.`,
    );
  if (d.T > d.S)
    throw new ShapeError(
      `${label}: ${d.T} new tokens do not fit a cache of ${d.S} rows.`,
    );
}

/**
 * Copies the [B, G, T, D] heads of `src` into the cache at rows p..p+T−1 (p: the step's position). Bindings:
 * cache [B, G, S, D], src. Rows past the cache's end are not written (the caller keeps p + T ≤ S).
 */
export function cacheWrite(
  dims: Pick<DecodeDims, "B" | "G" | "T" | "D" | "S">,
  src: CacheView,
): ProgramCall {
  const { B, G, T, D, S } = dims;
  checkDims("cacheWrite", { ...dims, H: G });
  const total = B * G * T * D;
  const program: Program = {
    key: "webtuneDecode_cacheWrite",
    storage: [
      { name: "cache", element: "f32", access: "read_write" },
      { name: "src", element: "f32", access: "read" },
    ],
    uniforms: ["total", "G", "T", "D", "S", "off", "sB", "sH", "sT"].map(
      (name) => ({ name, type: "i32" as const }),
    ),
    stepParams: true,
    workgroupSize: [64, 1, 1],
    body: /* wgsl */ `
fn main(i : i32) {
  if (i >= uniforms.total) { return; }
  let d = i % uniforms.D;
  let t = (i / uniforms.D) % uniforms.T;
  let g = (i / (uniforms.D * uniforms.T)) % uniforms.G;
  let b = i / (uniforms.D * uniforms.T * uniforms.G);
  let row = i32(step.position) + t;
  if (row >= uniforms.S) { return; }
  cache[((b * uniforms.G + g) * uniforms.S + row) * uniforms.D + d] =
    src[uniforms.off + b * uniforms.sB + g * uniforms.sH + t * uniforms.sT + d];
}`,
    flat: true,
  };
  return {
    program,
    uniforms: [total, G, T, D, S, ...viewValues(src, 1)],
    workgroups: flatGrid(Math.ceil(total / 64)),
  };
}

/**
 * RoPE of q (into a contiguous [B, H, T, D]) and of k (into the K cache at rows p + t), and v copied into the V
 * cache, tables of every position read at p + t. One invocation per rotated pair (d, d + D/2) of a q or k head
 * row; a k row's invocation copies the same two elements of v. Bindings: qOut, kCache, vCache, then q, k, v (or,
 * with `fused`, their one tensor), cos [S, D], sin [S, D].
 */
export function ropeQkv(
  dims: Pick<DecodeDims, "B" | "T" | "H" | "G" | "D" | "S">,
  views: { q: CacheView; k: CacheView; v: CacheView },
  fused: boolean,
): ProgramCall {
  const { B, T, H, G, D, S } = dims;
  checkDims("ropeQkv", dims);
  if (D % 2 !== 0)
    throw new ShapeError(
      `ropeQkv: head dim D = ${D} is odd; RoPE rotates pairs.`,
    );
  const half = D / 2;
  const total = B * T * (H + G) * half;
  const src = fused ? ["QKV", "QKV", "QKV"] : ["Q", "K", "V"];
  const program: Program = {
    key: `webtuneDecode_ropeQkv${fused ? "_fused" : ""}`,
    storage: [
      ...["qOut", "kCache", "vCache"].map((name) => ({
        name,
        element: "f32" as const,
        access: "read_write" as const,
      })),
      ...[...new Set(src), "cosT", "sinT"].map((name) => ({
        name,
        element: "f32" as const,
        access: "read" as const,
      })),
    ],
    uniforms: [
      ...["total", "H", "G", "T", "D", "S"],
      ...["q", "k", "v"].flatMap((v) =>
        ["Off", "B", "H", "T"].map((x) => v + x),
      ),
    ].map((name) => ({ name, type: "i32" as const })),
    stepParams: true,
    workgroupSize: [64, 1, 1],
    body: /* wgsl */ `
fn main(i : i32) {
  if (i >= uniforms.total) { return; }
  let half = uniforms.D / 2;
  let d = i % half;
  var row = i / half;
  let qRows = uniforms.H * uniforms.T;
  let perBatch = (uniforms.H + uniforms.G) * uniforms.T;
  let b = row / perBatch;
  row = row % perBatch;
  let p = i32(step.position);
  if (row < qRows) {
    let h = row / uniforms.T;
    let t = row % uniforms.T;
    let x = uniforms.qOff + b * uniforms.qB + h * uniforms.qH + t * uniforms.qT;
    let tab = (p + t) * uniforms.D;
    let x1 = ${src[0]}[x + d];
    let x2 = ${src[0]}[x + d + half];
    let o = ((b * uniforms.H + h) * uniforms.T + t) * uniforms.D;
    qOut[o + d] = x1 * cosT[tab + d] - x2 * sinT[tab + d];
    qOut[o + d + half] = x2 * cosT[tab + d + half] + x1 * sinT[tab + d + half];
    return;
  }
  let g = (row - qRows) / uniforms.T;
  let t = (row - qRows) % uniforms.T;
  if (p + t >= uniforms.S) { return; }
  let tab = (p + t) * uniforms.D;
  let x = uniforms.kOff + b * uniforms.kB + g * uniforms.kH + t * uniforms.kT;
  let x1 = ${src[1]}[x + d];
  let x2 = ${src[1]}[x + d + half];
  let c = ((b * uniforms.G + g) * uniforms.S + p + t) * uniforms.D;
  kCache[c + d] = x1 * cosT[tab + d] - x2 * sinT[tab + d];
  kCache[c + d + half] = x2 * cosT[tab + d + half] + x1 * sinT[tab + d + half];
  let y = uniforms.vOff + b * uniforms.vB + g * uniforms.vH + t * uniforms.vT;
  vCache[c + d] = ${src[2]}[y + d];
  vCache[c + d + half] = ${src[2]}[y + d + half];
}`,
    flat: true,
  };
  return {
    program,
    uniforms: [
      ...[total, H, G, T, D, S],
      ...viewValues(views.q, 1),
      ...viewValues(views.k, 1),
      ...viewValues(views.v, 1),
    ],
    workgroups: flatGrid(Math.ceil(total / 64)),
  };
}

function decodeAttentionProgram(softcap: boolean, window: boolean): Program {
  const uniforms = [
    ...["total", "H", "T", "HG", "d4", "S"],
    ...["qOff", "qB", "qH", "qT", "oOff", "oB", "oH", "oT"],
  ].map((name) => ({ name, type: "i32" as const }));
  return {
    key: `webtuneDecode_attention_l${LANES}${softcap ? "_cap" : ""}${window ? "_win" : ""}`,
    storage: [
      { name: "O", element: "vec4<f32>", access: "read_write" },
      { name: "Q", element: "vec4<f32>", access: "read" },
      { name: "K", element: "vec4<f32>", access: "read" },
      { name: "V", element: "vec4<f32>", access: "read" },
    ],
    uniforms: [
      ...uniforms,
      { name: "scale", type: "f32" },
      { name: "cap", type: "f32" },
      { name: "window", type: "i32" },
    ],
    stepParams: true,
    workgroupSize: [LANES, 1, 1],
    body: /* wgsl */ `
const LANES = ${LANES};
const SOFTCAP = ${softcap};
const WINDOW = ${window};
var<workgroup> q : array<vec4<f32>, ${LANES}>;
var<workgroup> scores : array<f32, ${LANES}>;
var<workgroup> range : vec2<i32>;
// tanh from one exp, finite for any input.
fn tanh1(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn main() {
  let lane = i32(localIndex);
  // Workgroups past the last row (a grid wrapped into y) redo it and store nothing; all reach the barriers.
  let wg = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let row = min(wg, uniforms.total - 1);
  let t = row % uniforms.T;
  let h = (row / uniforms.T) % uniforms.H;
  let b = row / (uniforms.T * uniforms.H);
  let g = h / uniforms.HG;
  let d4 = uniforms.d4;
  let pos = i32(step.position) + t;
  let hi = min(pos + 1, uniforms.S);
  let lo = select(0, max(0, pos - uniforms.window + 1), WINDOW);
  let kv = (b * (uniforms.H / uniforms.HG) + g) * uniforms.S * d4;
  if (lane < d4) {
    q[lane] = Q[uniforms.qOff + b * uniforms.qB + h * uniforms.qH + t * uniforms.qT + lane] * uniforms.scale;
  }
  workgroupBarrier();
  var m = -1e30;
  var l = 0.0;
  var acc = vec4<f32>(0.0);
  // The key range through workgroup memory: WGSL's uniformity analysis sees a private builtin copy as
  // non-uniform, and the loop holds barriers.
  if (lane == 0) { range = vec2<i32>(lo, hi); }
  let span = workgroupUniformLoad(&range);
  for (var j0 = span.x; j0 < span.y; j0 += LANES) {
    let j = j0 + lane;
    var s = -1e30;
    if (j < hi) {
      var dot4 = vec4<f32>(0.0);
      for (var d = 0; d < d4; d++) { dot4 += q[d] * K[kv + j * d4 + d]; }
      s = dot4.x + dot4.y + dot4.z + dot4.w;
      if (SOFTCAP) { s = uniforms.cap * tanh1(s / uniforms.cap); }
    }
    scores[lane] = s;
    workgroupBarrier();
    let n = min(LANES, hi - j0);
    var mx = m;
    for (var c = 0; c < n; c++) { mx = max(mx, scores[c]); }
    // Each lane exponentiates its own key once; the block's probabilities replace its scores.
    let p = select(0.0, exp(s - mx), j < hi);
    workgroupBarrier();
    scores[lane] = p;
    workgroupBarrier();
    let corr = exp(m - mx);
    l = l * corr;
    acc = acc * corr;
    for (var c = 0; c < n; c++) {
      l += scores[c];
      if (lane < d4) { acc += scores[c] * V[kv + (j0 + c) * d4 + lane]; }
    }
    m = mx;
    workgroupBarrier();
  }
  if (wg < uniforms.total && lane < d4) {
    O[uniforms.oOff + b * uniforms.oB + h * uniforms.oH + t * uniforms.oT + lane] = acc / l;
  }
}`,
    flat: false,
  };
}

function checkView(label: string, name: string, v: CacheView): void {
  if (
    [v.offset, v.sB, v.sH, v.sT].some(
      (n) => !Number.isInteger(n) || n < 0 || n % 4 !== 0,
    )
  )
    throw new ShapeError(
      `${label}: view ${name} has offset ${v.offset} and strides [${v.sB}, ${v.sH}, ${v.sT}]; they are read as ` +
        `vec4, so each must be a non-negative multiple of 4.`,
    );
}

/**
 * Attention of T new query rows at positions p..p+T−1 over the cache's rows (the new keys already written).
 * Bindings: o (its view's array), q (its view's array), K cache [B, G, S, D], V cache [B, G, S, D].
 *
 * @example
 * ```ts
 * // one token per row: q [B, H, 1, D] from RoPE, o merged-heads [B, 1, H·D] for o_proj
 * const call = decodeAttention({ B, T: 1, H, G, D, S }, contiguous, merged, { scale: 1 / Math.sqrt(D) });
 * g.dispatch("layer 0 attention", call, [o, qRope, kCache, vCache]);
 * ```
 */
export function decodeAttention(
  dims: DecodeDims,
  q: CacheView,
  o: CacheView,
  options: DecodeOptions,
  maxWorkgroupsPerDimension?: number,
): ProgramCall {
  const label = "decodeAttention";
  checkDims(label, dims);
  checkView(label, "q", q);
  checkView(label, "o", o);
  const { softcap, window } = options;
  if (!Number.isFinite(options.scale))
    throw new ConfigError(
      `${label}: scale = ${options.scale}; expected a finite number.`,
    );
  if (softcap !== undefined && !(softcap > 0 && Number.isFinite(softcap)))
    throw new ConfigError(
      `${label}: softcap = ${softcap}; expected a positive number.`,
    );
  if (window !== undefined && !(Number.isInteger(window) && window >= 1))
    throw new ConfigError(
      `${label}: window = ${window}; expected an integer ≥ 1.`,
    );
  const { B, T, H, G, D, S } = dims;
  const total = B * H * T;
  return {
    program: decodeAttentionProgram(
      softcap !== undefined,
      window !== undefined,
    ),
    uniforms: [
      ...[total, H, T, H / G, D / 4, S],
      ...viewValues(q, 4),
      ...viewValues(o, 4),
      options.scale,
      softcap ?? 1,
      window ?? S,
    ],
    workgroups: flatGrid(total, maxWorkgroupsPerDimension),
  };
}

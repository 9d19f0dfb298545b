/**
 * WGSL of the fused attention programs (see `program.ts` for the API and `reference.ts` for the maths):
 *
 *   forward    s = q·kᵀ·scale (→ cap·tanh(s/cap)), causal (and windowed) online softmax:
 *              o = Σ_j p_j·v_j,  lse = m + log Σ_j exp(s_j − m)
 *   backward   Δ_i = dO_i·O_i,  p = exp(s − lse),  dp = dO·vᵀ,  ds = p ∘ (dp − Δ) (∘ (1 − tanh²)) · scale
 *     'dq':    per query row:  dq_i = Σ_j ds_ij · k_j,  and Δ_i for the next program
 *     'dkdv':  per key row:    dk_j = Σ_(h, i) ds_ij · q_i,  dv_j = Σ_(h, i) p_ij · dO_i  over the H/G query heads
 *
 * Letters: B batch, T tokens, H query heads, G kv heads, HG = H/G, D head dim (a multiple of 4), D4 = D/4.
 *
 * Each invocation owns PER_LANE rows (query rows; key rows in 'dkdv') and keeps their D-vectors in private
 * arrays; a workgroup owns ROWS·PER_LANE consecutive rows of one (b, head). The other side (keys, or queries)
 * is streamed BLOCK rows at a time over a range that is the same for the whole workgroup: it skips every row
 * that no row of the workgroup sees, and only the blocks on the diagonal (and the window's edge) are masked row
 * by row. Uniform ranges keep the streamed addresses uniform, which CPU adapters turn into one scalar load per
 * SIMD batch, shared by PER_LANE · BLOCK products per lane.
 *
 * D sizes the private arrays (spliced); the D loops run to the uniform `d4`, so that CPU compilers do not
 * unroll them (LLVM then takes minutes, and the unrolled code is slower).
 * Operands are vec4 arrays; a view's offset and strides are uniforms in vec4 units (see `program.ts`).
 * 'direct' reads the streamed rows straight from storage (CPU adapters: no workgroup memory, no barriers);
 * 'shared' stages TILE of them at a time in workgroup memory (GPUs).
 */

export type AttentionKernelKind = "direct" | "shared";
export type AttentionPass = "forward" | "dq" | "dkdv";

export interface AttentionShaderConfig {
  kind: AttentionKernelKind;
  pass: AttentionPass;
  /** Head dim, a multiple of 4. */
  D: number;
  softcap: boolean;
  window: boolean;
  /** q, k, v are one binding (QKV), and dq, dk, dv another (dQKV): a fused projection and its gradient. */
  fused: boolean;
  /** Invocations per workgroup. */
  rows: number;
  /** Rows each invocation owns. */
  perLane: number;
  /** Streamed rows per step of the inner loop. */
  block: number;
  /** Streamed rows staged per barrier in workgroup memory ('shared'; a multiple of `block`). */
  tile: number;
}

/** The views a program addresses, in uniform order; each has `<name>Off`, `<name>B`, `<name>H`, `<name>T`. */
export const VIEW_NAMES = [
  "q",
  "k",
  "v",
  "o",
  "dout",
  "dq",
  "dk",
  "dv",
] as const;
export type ViewName = (typeof VIEW_NAMES)[number];

/**
 * The scalar uniforms, before the views. `d4`: D/4; `blocks`: row blocks per (b, head); `total`: workgroups with
 * work; `window`: the window size (read only when the program has a window).
 */
export const SCALAR_UNIFORMS = [
  ["T", "i32"],
  ["H", "i32"],
  ["HG", "i32"],
  ["d4", "i32"],
  ["blocks", "i32"],
  ["total", "i32"],
  ["scale", "f32"],
  ["cap", "f32"],
  ["window", "i32"],
] as const;

export function attentionShaderKey(c: AttentionShaderConfig): string {
  return [
    "webtuneAttention",
    c.pass,
    c.kind,
    `D${c.D}`,
    `w${c.rows}x${c.perLane}`,
    `b${c.block}`,
    c.kind === "shared" ? `t${c.tile}` : "",
    c.fused ? "qkv" : "",
    c.softcap ? "cap" : "",
    c.window ? "win" : "",
  ].join("_");
}

/** The storage array each operand lives in. */
export function arrayNames(c: { fused: boolean }) {
  return c.fused
    ? { Q: "QKV", K: "QKV", V: "QKV", dQ: "dQKV", dK: "dQKV", dV: "dQKV" }
    : { Q: "Q", K: "K", V: "V", dQ: "dQ", dK: "dK", dV: "dV" };
}

/** `f(0) … f(n − 1)`, joined. */
const each = (n: number, f: (i: number) => string, sep = "\n  ") =>
  Array.from({ length: n }, (_, i) => f(i)).join(sep);

/** Vec4 index of element (b, head, t, 0) of a view. */
const rowFn = (v: ViewName) =>
  `fn ${v}Row(b: i32, h: i32, t: i32) -> i32 { return uniforms.${v}Off + b * uniforms.${v}B + h * uniforms.${v}H + t * uniforms.${v}T; }`;

const COMMON = /* wgsl */ `
// tanh from one exp, finite for any input (the textbook quotient of exponentials overflows).
fn tanh1(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
// Key j is visible from query i (both inside [0, T)): j ≤ i, and i − j < window when a window is set.
// Non-short-circuit & and |: a branch per call, inlined for every row and key of a block, crashes SwiftShader's
// shader compiler (Chromium's software WebGPU) when the window test is live.
fn visible(j: i32, i: i32) -> bool {
  return (j <= i) & (i < uniforms.T) & ((WINDOW == 0) | (i - j < uniforms.window));
}
// This workgroup's block: the (b, head) pair it serves, its first row, and whether it has work (grids that wrap
// into y have idle workgroups at the end; they compute the last block again and store nothing).
struct Block { b: i32, head: i32, r0: i32, live: bool }
fn myBlock() -> Block {
  let wg = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let w = min(wg, uniforms.total - 1);
  let heads = w / uniforms.blocks;
  let perBatch = select(uniforms.H, uniforms.H / uniforms.HG, PASS_KV);
  return Block(heads / perBatch, heads % perBatch, (w % uniforms.blocks) * ROWS * PER_LANE, wg < uniforms.total);
}`;

/**
 * How the streamed rows are read: `bases` makes `a<c>` and `b<c>`, the vec4 index of streamed row n0 + c in
 * each of the two streamed operands, and `at` reads one; `loop` wraps the step loop over [lo, hi).
 */
interface Stream {
  decl: string;
  bases: string;
  at: (operand: 0 | 1, index: string) => string;
  loop: (body: string) => string;
}

function directStream(
  c: AttentionShaderConfig,
  arrays: [string, string],
  views: [ViewName, ViewName],
  head: string,
): Stream {
  return {
    decl: "",
    bases: each(
      c.block,
      (k) =>
        `let r${k} = min(n0 + ${k}, uniforms.T - 1); let a${k} = ${views[0]}Row(blk.b, ${head}, r${k}); let b${k} = ${views[1]}Row(blk.b, ${head}, r${k});`,
    ),
    at: (operand, index) => `${arrays[operand]}[${index}]`,
    loop: (body) => `
  for (var n0 = lo; n0 < hi; n0 += BLOCK) {
    ${body}
  }`,
  };
}

function sharedStream(
  c: AttentionShaderConfig,
  arrays: [string, string],
  views: [ViewName, ViewName],
  head: string,
): Stream {
  const n = c.tile * (c.D / 4);
  return {
    decl: `var<workgroup> tile0: array<vec4<f32>, ${n}>;
var<workgroup> tile1: array<vec4<f32>, ${n}>;
var<workgroup> range: vec2<i32>;`,
    bases: each(
      c.block,
      (k) => `let a${k} = (n0 - t0 + ${k}) * uniforms.d4; let b${k} = a${k};`,
    ),
    at: (operand, index) => `tile${operand}[${index}]`,
    loop: (body) => `
  if (localIndex == 0u) { range = vec2<i32>(lo, hi); }
  let span = workgroupUniformLoad(&range);
  for (var t0 = span.x; t0 < span.y; t0 += TILE) {
    for (var e = i32(localIndex); e < TILE * uniforms.d4; e += ROWS) {
      let r = min(t0 + e / uniforms.d4, uniforms.T - 1);
      tile0[e] = ${arrays[0]}[${views[0]}Row(blk.b, ${head}, r) + e % uniforms.d4];
      tile1[e] = ${arrays[1]}[${views[1]}Row(blk.b, ${head}, r) + e % uniforms.d4];
    }
    workgroupBarrier();
    for (var n0 = t0; n0 < min(t0 + TILE, span.y); n0 += BLOCK) {
      ${body}
    }
    workgroupBarrier();
  }`,
  };
}

/**
 * s<r>_<k> = x<r> · (streamed row k of operand 0) for each owned row r, and, with `y`, t<r>_<k> = y<r> · (row k
 * of operand 1); each streamed vec4 is read once for all owned rows.
 */
function dots(c: AttentionShaderConfig, st: Stream, x: string, y?: string) {
  const [R, K] = [c.perLane, c.block];
  const init = (v: string) =>
    each(R, (r) => each(K, (k) => `var ${v}${r}_${k} = 0.0;`, " "));
  const acc = (v: string, own: string, operand: 0 | 1, base: string) => `
      ${each(K, (k) => `let ${v}e${k} = ${st.at(operand, `${base}${k} + d`)};`, " ")}
      ${each(R, (r) => `let ${v}o${r} = ${own}${r}[d]; ${each(K, (k) => `${v}${r}_${k} += dot(${v}o${r}, ${v}e${k});`, " ")}`, "\n      ")}`;
  // One loop per product: fewer live registers than both in one loop.
  return `${init("s")}
  ${y ? init("t") : ""}
    for (var d = 0; d < uniforms.d4; d++) {${acc("s", x, 0, "a")}
    }${
      y
        ? `
    for (var d = 0; d < uniforms.d4; d++) {${acc("t", y, 1, "b")}
    }`
        : ""
    }`;
}

/** dst<r>[d] = dst<r>[d] (· scaleBy<r>) + Σ_k w<r>_<k> · (streamed row k of `operand`), for each owned row r. */
function axpy(
  c: AttentionShaderConfig,
  st: Stream,
  pairs: { dst: string; w: string; operand: 0 | 1; scaleBy?: string }[],
): string {
  const [R, K] = [c.perLane, c.block];
  return `
    for (var d = 0; d < uniforms.d4; d++) {${pairs
      .map(
        ({ dst, w, operand, scaleBy }) => `
      ${each(K, (k) => `let ${w}e${k} = ${st.at(operand, `${operand === 0 ? "a" : "b"}${k} + d`)};`, " ")}
      ${each(
        R,
        (r) =>
          `${dst}${r}[d] = ${scaleBy ? `${dst}${r}[d] * ${scaleBy}${r}` : `${dst}${r}[d]`} + ${each(K, (k) => `${w}${r}_${k} * ${w}e${k}`, " + ")};`,
        "\n      ",
      )}`,
      )
      .join("")}
    }`;
}

/** Caps s<r>_<k> (keeping tanh in th<r>_<k> for the chain rule) when the program has a softcap. */
const softcap = (c: AttentionShaderConfig) =>
  c.softcap
    ? each(
        c.perLane,
        (r) =>
          each(
            c.block,
            (k) =>
              `let th${r}_${k} = tanh1(s${r}_${k} / uniforms.cap); s${r}_${k} = uniforms.cap * th${r}_${k};`,
            " ",
          ),
        "\n    ",
      )
    : "";

const privates = (names: string[], R: number) =>
  names
    .map((n) =>
      each(R, (r) => `var<private> ${n}${r}: array<vec4<f32>, D4>;`, "\n"),
    )
    .join("\n");

/** The owned rows: i<r> (clamped to ic<r> for reads). */
const ownedRows = (R: number) =>
  each(
    R,
    (r) =>
      `let i${r} = blk.r0 + ${r} * ROWS + i32(localIndex); let ic${r} = min(i${r}, uniforms.T - 1);`,
  );

/** Forward: online softmax over the keys, BLOCK at a time; o and lse of each owned query row. */
function forwardBody(c: AttentionShaderConfig, st: Stream): string {
  const A = arrayNames(c);
  const [R, K] = [c.perLane, c.block];
  return `${privates(["q", "acc"], R)}
fn main() {
  let blk = myBlock();
  let h = blk.head;
  let g = h / uniforms.HG;
  ${ownedRows(R)}
  ${each(R, (r) => `let qb${r} = qRow(blk.b, h, ic${r}); var m${r} = -1e30; var l${r} = 0.0;`)}
  for (var d = 0; d < uniforms.d4; d++) {
    ${each(R, (r) => `q${r}[d] = ${A.Q}[qb${r} + d] * uniforms.scale; acc${r}[d] = vec4<f32>(0.0);`, "\n    ")}
  }
  let lo = select(0, max(0, blk.r0 - uniforms.window + 1), WINDOW == 1);
  let hi = min(uniforms.T, blk.r0 + ROWS * PER_LANE);
  ${st.loop(`${st.bases}
    ${dots(c, st, "q")}
    ${softcap(c)}
    ${each(
      R,
      (
        r,
      ) => `${each(K, (k) => `let v${r}_${k} = visible(n0 + ${k}, i${r}); s${r}_${k} = select(-1e30, s${r}_${k}, v${r}_${k});`, " ")}
    let mx${r} = max(m${r}, ${each(K - 1, (k) => `max(s${r}_${k}, `, "")}s${r}_${K - 1}${")".repeat(K - 1)});
    let corr${r} = exp(m${r} - mx${r});
    ${each(K, (k) => `let p${r}_${k} = select(0.0, exp(s${r}_${k} - mx${r}), v${r}_${k});`, " ")}
    l${r} = l${r} * corr${r} + ${each(K, (k) => `p${r}_${k}`, " + ")};
    m${r} = mx${r};`,
      "\n    ",
    )}
    ${axpy(c, st, [{ dst: "acc", w: "p", operand: 1, scaleBy: "corr" }])}`)}
  ${each(
    R,
    (r) => `if (blk.live && i${r} < uniforms.T) {
    let ob = oRow(blk.b, h, i${r});
    for (var d = 0; d < uniforms.d4; d++) { O[ob + d] = acc${r}[d] / l${r}; }
    LSE[(blk.b * uniforms.H + h) * uniforms.T + i${r}] = m${r} + log(l${r});
  }`,
  )}
}`;
}

/**
 * p<r>_<k> = exp(s − lse) where key j sees query i (else 0) and ds<r>_<k> = p ∘ (dp − Δ) (∘ (1 − tanh²)), for
 * owned row r and streamed row k; `at` names j, i, lse and Δ of the pair.
 */
function gradients(
  c: AttentionShaderConfig,
  at: (
    r: number,
    k: number,
  ) => { j: string; i: string; lse: string; delta: string },
) {
  const pair = (r: number, k: number) => {
    const { j, i, lse, delta } = at(r, k);
    const chain = c.softcap ? ` * (1.0 - th${r}_${k} * th${r}_${k})` : "";
    return `let p${r}_${k} = select(0.0, exp(s${r}_${k} - ${lse}), visible(${j}, ${i})); let ds${r}_${k} = p${r}_${k} * (t${r}_${k} - ${delta})${chain};`;
  };
  return each(
    c.perLane,
    (r) => each(c.block, (k) => pair(r, k), "\n    "),
    "\n    ",
  );
}

/** Backward, per query row: Δ_i and dq_i over the keys it sees. */
function dqBody(c: AttentionShaderConfig, st: Stream): string {
  const A = arrayNames(c);
  const R = c.perLane;
  return `${privates(["q", "dout", "acc"], R)}
fn main() {
  let blk = myBlock();
  let h = blk.head;
  let g = h / uniforms.HG;
  let row = (blk.b * uniforms.H + h) * uniforms.T;
  ${ownedRows(R)}
  ${each(R, (r) => `let qb${r} = qRow(blk.b, h, ic${r}); let ob${r} = oRow(blk.b, h, ic${r}); let db${r} = doutRow(blk.b, h, ic${r}); var delta${r} = 0.0;`)}
  for (var d = 0; d < uniforms.d4; d++) {
    ${each(
      R,
      (
        r,
      ) => `q${r}[d] = ${A.Q}[qb${r} + d] * uniforms.scale; dout${r}[d] = dO[db${r} + d]; acc${r}[d] = vec4<f32>(0.0);
    delta${r} += dot(dout${r}[d], O[ob${r} + d]);`,
      "\n    ",
    )}
  }
  ${each(R, (r) => `let lse${r} = LSE[row + ic${r}];`)}
  let lo = select(0, max(0, blk.r0 - uniforms.window + 1), WINDOW == 1);
  let hi = min(uniforms.T, blk.r0 + ROWS * PER_LANE);
  ${st.loop(`${st.bases}
    ${dots(c, st, "q", "dout")}
    ${softcap(c)}
    ${gradients(c, (r, k) => ({ j: `n0 + ${k}`, i: `i${r}`, lse: `lse${r}`, delta: `delta${r}` }))}
    ${axpy(c, st, [{ dst: "acc", w: "ds", operand: 0 }])}`)}
  ${each(
    R,
    (r) => `if (blk.live && i${r} < uniforms.T) {
    let out = dqRow(blk.b, h, i${r});
    for (var d = 0; d < uniforms.d4; d++) { ${A.dQ}[out + d] = acc${r}[d] * uniforms.scale; }
    Delta[row + i${r}] = delta${r};
  }`,
  )}
}`;
}

/** Backward, per key row of kv head g: dk_j and dv_j over the HG query heads and the query rows that see it. */
function dkdvBody(c: AttentionShaderConfig, st: Stream): string {
  const A = arrayNames(c);
  const [R, K] = [c.perLane, c.block];
  return `${privates(["k", "v", "dk", "dv"], R)}
fn main() {
  let blk = myBlock();
  let g = blk.head;
  ${ownedRows(R)}
  ${each(R, (r) => `let kb${r} = kRow(blk.b, g, ic${r}); let vb${r} = vRow(blk.b, g, ic${r});`)}
  for (var d = 0; d < uniforms.d4; d++) {
    ${each(
      R,
      (r) =>
        `k${r}[d] = ${A.K}[kb${r} + d] * uniforms.scale; v${r}[d] = ${A.V}[vb${r} + d]; dk${r}[d] = vec4<f32>(0.0); dv${r}[d] = vec4<f32>(0.0);`,
      "\n    ",
    )}
  }
  let lo = blk.r0;
  let hi = select(uniforms.T, min(uniforms.T, blk.r0 + ROWS * PER_LANE - 1 + uniforms.window), WINDOW == 1);
  for (var hh = 0; hh < uniforms.HG; hh++) {
    let h = g * uniforms.HG + hh;
    let row = (blk.b * uniforms.H + h) * uniforms.T;
    ${st.loop(`${st.bases}
    ${each(K, (k) => `let lse_${k} = LSE[row + min(n0 + ${k}, uniforms.T - 1)]; let delta_${k} = Delta[row + min(n0 + ${k}, uniforms.T - 1)];`, "\n    ")}
    ${dots(c, st, "k", "v")}
    ${softcap(c)}
    ${gradients(c, (r, k) => ({ j: `i${r}`, i: `n0 + ${k}`, lse: `lse_${k}`, delta: `delta_${k}` }))}
    ${axpy(c, st, [
      { dst: "dk", w: "ds", operand: 0 },
      { dst: "dv", w: "p", operand: 1 },
    ])}`)}
  }
  ${each(
    R,
    (r) => `if (blk.live && i${r} < uniforms.T) {
    let kOut = dkRow(blk.b, g, i${r});
    let vOut = dvRow(blk.b, g, i${r});
    for (var d = 0; d < uniforms.d4; d++) {
      ${A.dK}[kOut + d] = dk${r}[d] * uniforms.scale;
      ${A.dV}[vOut + d] = dv${r}[d];
    }
  }`,
  )}
}`;
}

/** The body of one program: constants, helpers, the streamed operands' access and `main`. */
export function attentionShader(c: AttentionShaderConfig): string {
  const A = arrayNames(c);
  // What each pass streams: keys and values of kv head g, or queries and dO of query head h.
  const [arrays, views, head]: [
    [string, string],
    [ViewName, ViewName],
    string,
  ] =
    c.pass === "dkdv"
      ? [[A.Q, "dO"], ["q", "dout"], "h"]
      : [[A.K, A.V], ["k", "v"], "g"];
  const st =
    c.kind === "direct"
      ? directStream(c, arrays, views, head)
      : sharedStream(c, arrays, views, head);
  const body =
    c.pass === "forward"
      ? forwardBody(c, st)
      : c.pass === "dq"
        ? dqBody(c, st)
        : dkdvBody(c, st);
  return `
const D4 = ${c.D / 4};
const ROWS = ${c.rows};
const PER_LANE = ${c.perLane};
const BLOCK = ${c.block};
const TILE = ${c.tile};
const WINDOW = ${c.window ? 1 : 0};
const PASS_KV = ${c.pass === "dkdv"};
${VIEW_NAMES.map(rowFn).join("\n")}
${COMMON}
${st.decl}
${body}`;
}

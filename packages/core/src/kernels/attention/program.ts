/**
 * Fused causal attention as plain programs for the compiled step, FlashAttention-style: the [T, T] scores are
 * never stored. The forward pass keeps only o and the log-sum-exp of each query row; the backward pass recomputes
 * the probabilities from q, k and lse.
 *
 * Letters: B batch, T tokens (queries = keys, no KV cache), H query heads, G kv heads (query head h reads kv head
 * ⌊h / (H/G)⌋), D head dim.
 *
 *   attentionForward:   q [B, H, T, D], k, v [B, G, T, D]  ->  o [B, H, T, D], lse [B, H, T]
 *   attentionBackward:  q, k, v, o, dO, lse  ->  dq [B, H, T, D], dk, dv [B, G, T, D]   (two dispatches)
 *
 * Every [·, ·, T, D] operand is a strided view (`AttentionView`): element (b, head, t, d) is at
 * offset + b·sB + head·sH + t·sT + d. So q, k and v can be read straight out of a fused projection ([B, T, 3C] for
 * GPT-2's c_attn), o can be written merged-heads ([B, T, H·D]) for the next projection, and dq, dk, dv can be
 * written into one [B, T, 3C] gradient. lse and the backward's scratch Δ are contiguous [B, H, T] arrays.
 *
 * D is spliced into the source (any multiple of 4 up to 256); shapes, strides, scale, cap and window size are
 * uniforms. Views are read as vec4, so their offsets and strides must be multiples of 4.
 */
import { ConfigError, ShapeError } from "../../errors.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
  type UniformField,
} from "../program.js";
import {
  attentionShader,
  attentionShaderKey,
  arrayNames,
  SCALAR_UNIFORMS,
  VIEW_NAMES,
  type AttentionKernelKind,
  type AttentionPass,
  type AttentionShaderConfig,
  type ViewName,
} from "./shader.wgsl.js";

export type { AttentionKernelKind } from "./shader.wgsl.js";

/** The largest head dim the programs keep in private arrays. */
export const MAX_HEAD_DIM = 256;

export interface AttentionDims {
  B: number;
  T: number;
  H: number;
  G: number;
  D: number;
}

/** Element (b, head, t, d) of a view is at offset + b·strides[0] + head·strides[1] + t·strides[2] + d. */
export interface AttentionView {
  offset: number;
  /** [sB, sH, sT], in elements. */
  strides: [number, number, number];
}

export interface AttentionOptions {
  /** Multiplies q·kᵀ (usually 1/√D). */
  scale: number;
  /** Gemma 2-style softcap: scores become cap·tanh(s / cap), before the mask. Off when undefined. */
  softcap?: number;
  /** Sliding window: key j is visible from query i when i − j < window (and j ≤ i). Off when undefined. */
  window?: number;
  /**
   * q, k and v are views of one tensor, bound once (a fused projection such as GPT-2's c_attn), and so are dq, dk
   * and dv. Without it each is its own binding; WebGPU refuses two writable bindings that overlap.
   */
  fusedQkv?: boolean;
  /** The device's maxComputeWorkgroupsPerDimension; larger grids wrap into y. */
  maxWorkgroupsPerDimension?: number;
}

export interface ForwardViews {
  q: AttentionView;
  k: AttentionView;
  v: AttentionView;
  o: AttentionView;
}

export interface BackwardViews extends ForwardViews {
  dO: AttentionView;
  dq: AttentionView;
  dk: AttentionView;
  dv: AttentionView;
}

/** A [B, heads, T, D] buffer (head-major), starting at `offset`. */
export function headMajorView(
  heads: number,
  T: number,
  D: number,
  offset = 0,
): AttentionView {
  return { offset, strides: [heads * T * D, T * D, D] };
}

/**
 * A token-major buffer [B, T, width] whose head h occupies columns offset + h·D .. + D: a [B, T, H·D] projection
 * (width = H·D, offset 0), or one part of a fused one (GPT-2's [B, T, 3C]: q at 0, k at C, v at 2C, width 3C).
 */
export function tokenMajorView(
  T: number,
  width: number,
  D: number,
  offset = 0,
): AttentionView {
  return { offset, strides: [T * width, D, width] };
}

/** Elements a binding must hold to contain every element of a view over `heads` heads. */
export function viewLength(
  dims: AttentionDims,
  view: AttentionView,
  heads: number,
): number {
  const [sB, sH, sT] = view.strides;
  return (
    view.offset +
    (dims.B - 1) * sB +
    (heads - 1) * sH +
    (dims.T - 1) * sT +
    dims.D
  );
}

let forcedKind: AttentionKernelKind | undefined;

/** Forces 'direct' or 'shared' programs (tests, benchmarks); `undefined` restores the automatic choice. */
export function setAttentionKernelVariant(
  kind: AttentionKernelKind | undefined,
): void {
  forcedKind = kind;
}

/** The sizes of a 'direct' program: invocations per workgroup, rows per invocation, streamed rows per step. */
export interface DirectTuning {
  rows: number;
  perLane: number;
  block: number;
}

let directTuning: Partial<Record<AttentionPass, DirectTuning>> | undefined;

/** Overrides the 'direct' sizes per pass (benchmarks); `undefined` restores the defaults. */
export function setAttentionDirectTuning(
  tuning: Partial<Record<AttentionPass, DirectTuning>> | undefined,
): void {
  directTuning = tuning;
}

/**
 * 'direct' sizes, measured on lavapipe (GPT-2 shape, scratch benchmark): 8 invocations (one SIMD batch) of 4 rows
 * each, so that each streamed load serves 4 rows per lane; 4 streamed rows per step. Unrolled D loops, 1 or 2
 * rows per lane, and 2 or 16 streamed rows per step were all slower. 8 streamed rows in the forward ran about as
 * fast on lavapipe, but SwiftShader's shader compiler (Chromium's software WebGPU) crashes the GPU process on it.
 */
const DIRECT_TUNING: Record<AttentionPass, DirectTuning> = {
  forward: { rows: 8, perLane: 4, block: 4 },
  dq: { rows: 8, perLane: 4, block: 4 },
  dkdv: { rows: 8, perLane: 4, block: 4 },
};

/**
 * The one place where the variant and its sizes are chosen. CPU adapters run 'direct' (no workgroup memory, no
 * barriers; sizes above); GPUs run 'shared': 64 rows of one row each, TILE streamed rows staged in workgroup
 * memory, within 16 KiB.
 */
export function chooseAttentionConfig(
  pass: AttentionPass,
  D: number,
  options: AttentionOptions,
  software: boolean,
): AttentionShaderConfig {
  const kind = forcedKind ?? (software ? "direct" : "shared");
  const common = {
    pass,
    D,
    softcap: options.softcap !== undefined,
    window: options.window !== undefined,
    fused: options.fusedQkv ?? false,
  };
  if (kind === "direct")
    return {
      ...common,
      kind,
      ...(directTuning?.[pass] ?? DIRECT_TUNING[pass]),
      tile: 0,
    };
  // Two tiles of TILE rows of D floats, and the 8-byte range, within 16 KiB of workgroup memory.
  const tile = Math.max(
    4,
    Math.min(32, 4 * Math.floor((16384 - 16) / (32 * D))),
  );
  return { ...common, kind, rows: 64, perLane: 1, block: 4, tile };
}

function check(dims: AttentionDims, options: AttentionOptions): void {
  const { B, T, H, G, D } = dims;
  for (const [name, n] of Object.entries(dims))
    if (!Number.isInteger(n) || n < 1)
      throw new ShapeError(
        `attention: ${name} = ${n}; expected a positive integer.`,
      );
  if (H % G !== 0)
    throw new ShapeError(
      `attention: H = ${H} query heads is not a multiple of G = ${G} kv heads; each kv head must serve H/G query heads.`,
    );
  if (D % 4 !== 0 || D > MAX_HEAD_DIM)
    throw new ShapeError(
      `attention: head dim D = ${D}; the fused programs need a multiple of 4 up to ${MAX_HEAD_DIM}.`,
    );
  if (B * H * T >= 2 ** 31)
    throw new ShapeError(
      `attention: B·H·T = ${B * H * T} is over the i32 index range.`,
    );
  if (!Number.isFinite(options.scale))
    throw new ConfigError(
      `attention: scale = ${options.scale}; expected a finite number.`,
    );
  const { softcap, window } = options;
  if (softcap !== undefined && !(softcap > 0 && Number.isFinite(softcap)))
    throw new ConfigError(
      `attention: softcap = ${softcap}; expected a positive number, or undefined for none.`,
    );
  if (window !== undefined && !(Number.isInteger(window) && window >= 1))
    throw new ConfigError(
      `attention: window = ${window}; expected an integer ≥ 1, or undefined for none.`,
    );
}

function checkView(name: string, view: AttentionView): void {
  const values = [view.offset, ...view.strides];
  if (values.some((n) => !Number.isInteger(n) || n < 0 || n % 4 !== 0))
    throw new ShapeError(
      `attention: view ${name} has offset ${view.offset} and strides [${view.strides.join(", ")}]; ` +
        `they are read as vec4, so each must be a non-negative multiple of 4.`,
    );
}

/** Each pass's operands in binding order, before fused ones merge; [name, written]. */
const OPERANDS: Record<AttentionPass, [string, boolean][]> = {
  forward: [
    ["Q", false],
    ["K", false],
    ["V", false],
    ["O", true],
    ["LSE", true],
  ],
  dq: [
    ["Q", false],
    ["K", false],
    ["V", false],
    ["O", false],
    ["dO", false],
    ["LSE", false],
    ["dQ", true],
    ["Delta", true],
  ],
  dkdv: [
    ["Q", false],
    ["K", false],
    ["V", false],
    ["dO", false],
    ["LSE", false],
    ["Delta", false],
    ["dK", true],
    ["dV", true],
  ],
};

/**
 * The storage bindings of a pass, in binding order. With `fused`, q, k and v are one binding (QKV) at q's place,
 * and dq, dk, dv another (dQKV) at the first of them: WebGPU refuses overlapping writable bindings.
 */
export function attentionStorage(
  pass: AttentionPass,
  fused: boolean,
): StorageBinding[] {
  const names: Record<string, string> = arrayNames({ fused });
  const out: StorageBinding[] = [];
  for (const [operand, written] of OPERANDS[pass]) {
    const name = names[operand] ?? operand;
    if (out.some((b) => b.name === name)) continue;
    out.push({
      name,
      element: name === "LSE" || name === "Delta" ? "f32" : "vec4<f32>",
      access: written ? "read_write" : "read",
    });
  }
  return out;
}

const UNIFORMS: UniformField[] = [
  ...SCALAR_UNIFORMS.map(([name, type]) => ({ name, type })),
  ...VIEW_NAMES.flatMap((v) =>
    ["Off", "B", "H", "T"].map((s) => ({ name: v + s, type: "i32" as const })),
  ),
];

export function attentionProgram(c: AttentionShaderConfig): Program {
  return {
    key: attentionShaderKey(c),
    storage: attentionStorage(c.pass, c.fused),
    uniforms: UNIFORMS,
    stepParams: false,
    workgroupSize: [c.rows, 1, 1],
    body: attentionShader(c),
    flat: false,
  };
}

function call(
  pass: AttentionPass,
  dims: AttentionDims,
  views: Partial<Record<ViewName, AttentionView>>,
  options: AttentionOptions,
  software: boolean,
): ProgramCall {
  const config = chooseAttentionConfig(pass, dims.D, options, software);
  const blocks = Math.ceil(dims.T / (config.rows * config.perLane));
  const total = dims.B * (pass === "dkdv" ? dims.G : dims.H) * blocks;
  const uniforms = [
    dims.T,
    dims.H,
    dims.H / dims.G,
    dims.D / 4,
    blocks,
    total,
    options.scale,
    options.softcap ?? 1,
    options.window ?? dims.T,
    ...VIEW_NAMES.flatMap((name) => {
      const view = views[name];
      return view
        ? [view.offset, ...view.strides].map((n) => n / 4)
        : [0, 0, 0, 0];
    }),
  ];
  return {
    program: attentionProgram(config),
    uniforms,
    workgroups: flatGrid(total, options.maxWorkgroupsPerDimension),
  };
}

/**
 * The forward dispatch; writes o and lse ([B, H, T], contiguous). Bindings, in order:
 * q, k, v, o, lse; with `fusedQkv`: qkv, o, lse.
 *
 * @example
 * ```ts
 * // GPT-2: q, k, v straight out of c_attn's [B, T, 3C] (C = H·D); o merged-heads [B, T, C] for c_proj.
 * const qkv = (at: number) => tokenMajorView(T, 3 * C, D, at);
 * const call = attentionForward({ B, T, H, G: H, D },
 *   { q: qkv(0), k: qkv(C), v: qkv(2 * C), o: tokenMajorView(T, C, D) },
 *   { scale: 1 / Math.sqrt(D), fusedQkv: true }, software);
 * g.dispatch("h.0.attn", call, [cAttnOut, y, lse]);
 * ```
 */
export function attentionForward(
  dims: AttentionDims,
  views: ForwardViews,
  options: AttentionOptions,
  /** The adapter runs shaders on CPU cores (`isSoftwareGpu()`): picks the 'direct' programs. */
  software: boolean,
): ProgramCall {
  check(dims, options);
  for (const [name, view] of Object.entries(views)) checkView(name, view);
  return call("forward", dims, views, options, software);
}

/**
 * The backward dispatches, to record in order (the second reads the first's Δ):
 * - [0] dq and Δ, per query row. Bindings: q, k, v, o, dO, lse, dq, Δ ([B, H, T] scratch);
 *   with `fusedQkv`: qkv, o, dO, lse, dqkv, Δ.
 * - [1] dk and dv, per key row. Bindings: q, k, v, dO, lse, Δ, dk, dv;
 *   with `fusedQkv`: qkv, dO, lse, Δ, dqkv.
 * Gradients are written, not accumulated; with `fusedQkv` the two dispatches write disjoint parts of dqkv.
 */
export function attentionBackward(
  dims: AttentionDims,
  views: BackwardViews,
  options: AttentionOptions,
  /** As for `attentionForward`. */
  software: boolean,
): [ProgramCall, ProgramCall] {
  check(dims, options);
  for (const [name, view] of Object.entries(views)) checkView(name, view);
  const named = { ...views, dout: views.dO };
  return [
    call("dq", dims, named, options, software),
    call("dkdv", dims, named, options, software),
  ];
}

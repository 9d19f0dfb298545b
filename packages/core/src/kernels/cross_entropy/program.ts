/**
 * The loss head's cross-entropy as plain programs for the compiled step, from logits that a matmul wrote one
 * vocabulary chunk at a time (see `models/cross_entropy.ts` for the maths and `reference.ts` for the float64
 * oracle). Per row block of n rows, with K head chunks:
 *
 *   forward:  chunkStats × K  z_k -> stats[k] = (max l, Σ exp(l − max), l[target] or 0, target in chunk ? 1 : 0)
 *             combine         stats -> lse = log Σ_k Σ exp(l), loss (+)= Σ_valid (lse − l[target]) · lossScale
 *   backward: chunkGrad × K   z_k -> dz = (exp(l − lse) − onehot(target)) · w · dl/dz, in place
 *
 * with l = cap·tanh(z / cap) under Gemma's final softcap (else l = z), w = step.lossScale for rows whose target
 * is not −100 and 0 for the others, and dl/dz = 1 − tanh²(z / cap) (else 1). Everything is f32.
 *
 * Letters: n rows of one block, Vc columns of one chunk (vocabulary ids v0 .. v0 + Vc − 1), K chunks.
 * Shapes are uniforms; only the workgroup size, whether there is a softcap and the kind of reduction (in workgroup
 * memory, or with subgroups on devices that have them: kernels/subgroups.ts) are spliced into the source.
 */
import { ShapeError } from "../../errors.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
} from "../program.js";
import {
  reductionSuffix,
  withSubgroupVariant,
  workgroupReduceWGSL,
} from "../subgroups.js";

/** Invocations per workgroup of every cross-entropy program. */
export const CE_WORKGROUP = 256;

/** Floats per (row, chunk) entry of the stats array: max, sum, target logit, found. */
export const STATS_WIDTH = 4;

/** Labels equal to this are left out of the loss (as `IGNORE_INDEX` in models/cross_entropy.ts). */
export const IGNORED = -100;

/** Lower than any logit: the running max of a slice that has seen none (WGSL has no −inf literal). */
const NO_MAX = "-3.0e38";

/** The logit and its slope; the argument is clamped because tanh(±10) is ±1 in f32, and some tanh overflow. */
function logitWgsl(softcap: boolean): string {
  if (!softcap)
    return `
fn logit(z : f32) -> f32 { return z; }
fn logitSlope(z : f32) -> f32 { return 1.0; }`;
  return `
fn capTanh(z : f32) -> f32 { return tanh(clamp(z / uniforms.cap, -10.0, 10.0)); }
fn logit(z : f32) -> f32 { return uniforms.cap * capTanh(z); }
fn logitSlope(z : f32) -> f32 { let t = capTanh(z); return 1.0 - t * t; }`;
}

const f32Array = (
  name: string,
  access: StorageBinding["access"],
): StorageBinding => ({ name, element: "f32", access });

const TARGETS: StorageBinding = {
  name: "targets",
  element: "i32",
  access: "read",
};

/** The workgroup's flat position (grids of more than 65535 workgroups wrap into y, see `flatGrid`). */
const WORKGROUP_INDEX = "i32(workgroupId.y * numWorkgroups.x + workgroupId.x)";

/**
 * The slices' (max, Σ exp(l − max)) of a row merged over the workgroup, into invocation 0's m and s: a tree that
 * merges pairs, or with subgroups the row's max first, then the sum of every slice's rescaled sum.
 */
function mergeSlicesWgsl(subgroups: boolean): string {
  const W = CE_WORKGROUP;
  if (subgroups)
    return `
  let top = workgroupMax(m);
  s = workgroupSum(s * exp(m - top));
  m = top;`;
  return `
  maxes[tid] = m;
  sums[tid] = s;
  workgroupBarrier();
  for (var stride = ${W / 2}; stride > 0; stride = stride >> 1) {
    if (tid < stride) {
      let m2 = maxes[tid + stride];
      let top = max(m, m2);
      s = s * exp(m - top) + sums[tid + stride] * exp(m2 - top);
      m = top;
      maxes[tid] = m;
      sums[tid] = s;
    }
    workgroupBarrier();
  }`;
}

function chunkStatsProgram(softcap: boolean, subgroups: boolean): Program {
  const W = CE_WORKGROUP;
  return {
    key: `ceChunkStats_${W}_${softcap ? "cap" : "plain"}${reductionSuffix(subgroups)}`,
    subgroups,
    storage: [f32Array("stats", "read_write"), f32Array("z", "read"), TARGETS],
    uniforms: [
      { name: "n", type: "i32" },
      { name: "Vc", type: "i32" },
      { name: "v0", type: "i32" },
      { name: "chunk", type: "i32" },
      { name: "cap", type: "f32" },
    ],
    stepParams: false,
    workgroupSize: [W, 1, 1],
    flat: false,
    body: /* wgsl */ `${logitWgsl(softcap)}
${
  subgroups
    ? workgroupReduceWGSL(W, true)
    : `var<workgroup> maxes : array<f32, ${W}>;
var<workgroup> sums : array<f32, ${W}>;`
}

// One workgroup per row: each invocation keeps a running (max, Σ exp(l − max)) of a strided slice of the row,
// then the slices are merged. One exp per logit: the sum is rescaled only when the max moves.
fn main() {
  let row = ${WORKGROUP_INDEX};
  let live = row < uniforms.n;
  let tid = i32(localIndex);
  let Vc = uniforms.Vc;
  var m = ${NO_MAX};
  var s = 0.0;
  if (live) {
    for (var c = tid; c < Vc; c = c + ${W}) {
      let l = logit(z[row * Vc + c]);
      if (l > m) {
        s = s * exp(m - l) + 1.0;
        m = l;
      } else {
        s = s + exp(l - m);
      }
    }
  }
${mergeSlicesWgsl(subgroups)}
  if (live && tid == 0) {
    let column = targets[row] - uniforms.v0;
    var targetLogit = 0.0;
    var found = 0.0;
    if (column >= 0 && column < Vc) {
      targetLogit = logit(z[row * Vc + column]);
      found = 1.0;
    }
    let at = (uniforms.chunk * uniforms.n + row) * ${STATS_WIDTH};
    stats[at] = m;
    stats[at + 1] = s;
    stats[at + 2] = targetLogit;
    stats[at + 3] = found;
  }
}
`,
  };
}

function combineProgram(subgroups: boolean): Program {
  const W = CE_WORKGROUP;
  return {
    key: `ceCombine_${W}${reductionSuffix(subgroups)}`,
    subgroups,
    storage: [
      f32Array("lse", "read_write"),
      f32Array("loss", "read_write"),
      f32Array("stats", "read"),
      TARGETS,
    ],
    uniforms: [
      { name: "n", type: "i32" },
      { name: "K", type: "i32" },
      { name: "first", type: "u32" },
    ],
    stepParams: true,
    workgroupSize: [W, 1, 1],
    flat: false,
    body: /* wgsl */ `${workgroupReduceWGSL(W, subgroups)}

// One workgroup: each invocation merges the K chunks of a strided set of rows, then the workgroup sums their losses.
fn main() {
  let tid = i32(localIndex);
  let n = uniforms.n;
  var rowLosses = 0.0;
  for (var r = tid; r < n; r = r + ${W}) {
    var top = ${NO_MAX};
    for (var k = 0; k < uniforms.K; k = k + 1) {
      top = max(top, stats[(k * n + r) * ${STATS_WIDTH}]);
    }
    var total = 0.0;
    var targetLogit = 0.0;
    for (var k = 0; k < uniforms.K; k = k + 1) {
      let at = (k * n + r) * ${STATS_WIDTH};
      total = total + stats[at + 1] * exp(stats[at] - top);
      if (stats[at + 3] > 0.5) {
        targetLogit = stats[at + 2];
      }
    }
    let rowLse = top + log(total);
    lse[r] = rowLse;
    if (targets[r] != ${IGNORED}) {
      rowLosses = rowLosses + (rowLse - targetLogit);
    }
  }
  let losses = workgroupSum(rowLosses);
  if (tid == 0) {
    let blockLoss = losses * step.lossScale;
    // The run's first block starts the sum; every other block adds to it. Micro-batches of one optimizer step
    // are separate runs, each read back on its own (the host adds them up).
    if (uniforms.first != 0u) {
      loss[0] = blockLoss;
    } else {
      loss[0] = loss[0] + blockLoss;
    }
  }
}
`,
  };
}

function chunkGradProgram(softcap: boolean): Program {
  const W = CE_WORKGROUP;
  return {
    key: `ceChunkGrad_${W}_${softcap ? "cap" : "plain"}`,
    storage: [f32Array("z", "read_write"), f32Array("lse", "read"), TARGETS],
    uniforms: [
      { name: "n", type: "i32" },
      { name: "Vc", type: "i32" },
      { name: "v0", type: "i32" },
      { name: "cap", type: "f32" },
    ],
    stepParams: true,
    workgroupSize: [W, 1, 1],
    flat: true,
    body: /* wgsl */ `${logitWgsl(softcap)}
// One invocation per logit: z becomes dloss/dz.
fn main(index : i32) {
  let Vc = uniforms.Vc;
  if (index >= uniforms.n * Vc) {
    return;
  }
  let row = index / Vc;
  let col = index - row * Vc;
  let label = targets[row];
  let x = z[index];
  var d = exp(logit(x) - lse[row]);
  if (label - uniforms.v0 == col) {
    d = d - 1.0;
  }
  let w = select(step.lossScale, 0.0, label == ${IGNORED});
  z[index] = d * w * logitSlope(x);
}
`,
  };
}

/** Which chunk a dispatch handles, and where its columns sit in the vocabulary. */
export interface ChunkShape {
  /** Rows of the block. */
  n: number;
  /** Columns of this chunk. */
  Vc: number;
  /** The vocabulary id of the chunk's first column. */
  v0: number;
}

function checkChunk(what: string, { n, Vc, v0 }: ChunkShape): void {
  if (![n, Vc].every((d) => Number.isInteger(d) && d > 0) || v0 < 0)
    throw new ShapeError(
      `${what}: expected n > 0 rows, Vc > 0 columns and v0 ≥ 0, got n=${n}, Vc=${Vc}, v0=${v0}.`,
    );
}

function checkSoftcap(what: string, softcap: number | undefined): void {
  if (softcap !== undefined && !(Number.isFinite(softcap) && softcap > 0))
    throw new ShapeError(
      `${what}: a softcap must be a finite number > 0 (or undefined for none), got ${softcap}.`,
    );
}

/**
 * Chunk `chunk`'s row statistics, one workgroup per row.
 *
 * Bindings, in order: stats [K, n, 4] (written at [chunk]), z [n, Vc], targets [n] (i32).
 * Uniforms: n, Vc, v0, chunk, cap.
 */
export function chunkStatsCall(
  shape: ChunkShape,
  chunk: number,
  softcap: number | undefined,
): ProgramCall {
  checkChunk("chunkStats", shape);
  checkSoftcap("chunkStats", softcap);
  if (!(Number.isInteger(chunk) && chunk >= 0))
    throw new ShapeError(
      `chunkStats: chunk must be an integer ≥ 0, got ${chunk}.`,
    );
  return {
    program: withSubgroupVariant((subgroups) =>
      chunkStatsProgram(softcap !== undefined, subgroups),
    ),
    uniforms: [shape.n, shape.Vc, shape.v0, chunk, softcap ?? 0],
    workgroups: flatGrid(shape.n),
  };
}

/**
 * Merges the K chunks' statistics into lse and adds the block's loss to the scalar; one workgroup.
 * `first`: this is the first row block of the run, so the loss is overwritten (each run reads its own loss back).
 *
 * Bindings, in order: lse [n] (written), loss [1] (written or added to), stats [K, n, 4], targets [n] (i32).
 * Uniforms: n, K, first (0 or 1); step parameters: lossScale.
 */
export function combineCall(n: number, K: number, first: boolean): ProgramCall {
  if (![n, K].every((d) => Number.isInteger(d) && d > 0))
    throw new ShapeError(
      `combine: expected n > 0 rows and K > 0 chunks, got n=${n}, K=${K}.`,
    );
  return {
    program: withSubgroupVariant(combineProgram),
    uniforms: [n, K, first ? 1 : 0],
    workgroups: [1, 1, 1],
  };
}

/**
 * Overwrites chunk logits z with dloss/dz, one invocation per logit.
 *
 * Bindings, in order: z [n, Vc] (in place), lse [n], targets [n] (i32).
 * Uniforms: n, Vc, v0, cap; step parameters: lossScale.
 */
export function chunkGradCall(
  shape: ChunkShape,
  softcap: number | undefined,
): ProgramCall {
  checkChunk("chunkGrad", shape);
  checkSoftcap("chunkGrad", softcap);
  return {
    program: chunkGradProgram(softcap !== undefined),
    uniforms: [shape.n, shape.Vc, shape.v0, softcap ?? 0],
    workgroups: flatGrid(Math.ceil((shape.n * shape.Vc) / CE_WORKGROUP)),
  };
}

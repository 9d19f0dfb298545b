/**
 * The backward of the embedding lookup (gather/program.ts) for full fine-tuning, without float atomics:
 *   token table:   dE[v, :] (+)= scale·Σ_{n : ids[n] = v} dx[n, :]   for the rows v of one chunk of the table
 *   positions:     dpos[t, :] (+)= Σ_{n : n % T = t} dx[n, :]          (GPT-2's wpe: Σ_b dx[b·T + t, :])
 * Both outputs are ranges of the training state's gradient buffer: every row is written on an optimizer step's
 * first micro-batch (step.accumulate = 0), rows no id (no position) reaches as ZERO, since the buffer still holds
 * the previous step's values; after it (accumulate = 1) the reached rows are added to and the others left alone.
 *
 * Token table: the host sorts the batch's positions by id (`embeddingGradIndex`), so that the positions of one id
 * are a run. Each workgroup owns EMBEDDING_GRAD_ROWS consecutive rows of the chunk: it finds the first run whose
 * id is at least its first row by binary search, then walks its rows and the runs together, summing a run's rows
 * of dx into its row of dE (a fixed order: deterministic) and zeroing the rows with no run (accumulate = 0).
 * One pass over the chunk's rows rather than a scatter by runs plus a separate zeroing pass: each row of dE is
 * written once, a step's later micro-batches skip the rows they do not reach, and the dispatch needs no second
 * program. A tied LM head adds its matmul term (dzᵀ·h) after this program: this one owns the overwrite.
 *
 * Letters: N ids (rows of dx), C features, R rows of this chunk, V rows of the vocabulary, T positions of a
 * sequence, P rows of the positional table (≥ T).
 */
import { ShapeError } from "../../errors.js";
import { flatGrid, type Program, type ProgramCall } from "../program.js";

/** Invocations per workgroup of both programs: they stride over the C columns of a row. */
export const EMBEDDING_GRAD_WORKGROUP = 64;
/** Rows of dE one workgroup owns. */
export const EMBEDDING_GRAD_ROWS = 16;

/**
 * Int32 values of `embeddingGradIndex` for a batch of N ids: 2N + 2. The graph's input of that size is written
 * with every batch.
 */
export const embeddingGradIndexLength = (N: number) => 2 * N + 2;

/**
 * The positions of a batch's ids grouped by id, for `embeddingGrad`: one Int32Array of 2N + 2 values,
 *   [0, N)          order:    the positions 0..N−1 sorted by (ids[n], n), ascending
 *   [N, 2N + 1)     segStart: segStart[r] is where run r starts in order, for r = 0..N; a run is a maximal
 *                             stretch of order with one id, runs ascend by id; segStart[runs] = N and every
 *                             entry after it is N too (so run r is order[segStart[r] .. segStart[r + 1]))
 *   [2N + 1]        runs:     the number of runs (distinct ids)
 * Every id is sorted, those of every chunk and those of none (negative padding ids first): one array serves every
 * chunk's dispatch. Writes into `out` when given (one per step shape, no garbage).
 */
export function embeddingGradIndex(
  ids: ArrayLike<number>,
  out?: Int32Array,
): Int32Array {
  const N = ids.length;
  const index = out ?? new Int32Array(embeddingGradIndexLength(N));
  if (index.length !== embeddingGradIndexLength(N))
    throw new ShapeError(
      `embeddingGradIndex: ${N} ids need ${embeddingGradIndexLength(N)} values, the output has ${index.length}.`,
    );
  const order = Int32Array.from({ length: N }, (_, n) => n);
  order.sort((a, b) => ids[a]! - ids[b]! || a - b);
  index.set(order, 0);
  index.fill(N, N, 2 * N + 1);
  let runs = 0;
  for (let k = 0; k < N; k++)
    if (k === 0 || ids[order[k]!] !== ids[order[k - 1]!]) index[N + runs++] = k;
  index[2 * N + 1] = runs;
  return index;
}

/** One chunk of the table's gradient. */
export interface EmbeddingGrad {
  /** ids [N], dx [N, C]. */
  N: number;
  /** The chunk's [R, C]. */
  rows: number;
  cols: number;
  /** The vocabulary row of the chunk's first row. */
  rowOffset: number;
  /** The forward's factor (Gemma's √C); default 1. */
  scale?: number;
  /**
   * Always add the reached rows and leave the others (a tied LM head has already written this chunk's gradient
   * in the same step), instead of following step.accumulate. Default false.
   */
  add?: boolean;
}

function checkShape(what: string, dims: Record<string, number>): void {
  for (const [name, d] of Object.entries(dims))
    if (!(Number.isInteger(d) && d > 0))
      throw new ShapeError(
        `${what}: ${name} must be an integer > 0, got ${d}; pass the layer's shape.`,
      );
}

/** `dE[i] = v` or `dE[i] += v`, per the step parameters. */
const store = (out: string, i: string, v: string) =>
  `if (adding) { ${out}[${i}] = ${out}[${i}] + ${v}; } else { ${out}[${i}] = ${v}; }`;

/**
 * One chunk's rows of dE, every one of them: ceil(R / EMBEDDING_GRAD_ROWS) workgroups (wrapped into y).
 *
 * Bindings, in order: dE [R, C] (the chunk's rows of the gradient; written or added to), dX [N, C], ids [N] (i32),
 * index [2N + 2] (i32, `embeddingGradIndex(ids)`).
 * Uniforms: N, rows (R), cols (C), rowOffset, scale; step parameters: accumulate.
 */
export function embeddingGrad(e: EmbeddingGrad): ProgramCall {
  checkShape("embeddingGrad", { N: e.N, rows: e.rows, cols: e.cols });
  if (!Number.isInteger(e.rowOffset) || e.rowOffset < 0)
    throw new ShapeError(
      `embeddingGrad: rowOffset must be an integer ≥ 0, got ${e.rowOffset}.`,
    );
  const [W, RB] = [EMBEDDING_GRAD_WORKGROUP, EMBEDDING_GRAD_ROWS];
  const program: Program = {
    key: `webtuneEngine_embeddingGrad_w${W}_r${RB}${e.add ? "_add" : ""}`,
    storage: [
      { name: "dE", element: "f32", access: "read_write" },
      { name: "dX", element: "f32", access: "read" },
      { name: "ids", element: "i32", access: "read" },
      { name: "index", element: "i32", access: "read" },
    ],
    uniforms: [
      { name: "N", type: "i32" },
      { name: "rows", type: "i32" },
      { name: "cols", type: "i32" },
      { name: "rowOffset", type: "i32" },
      { name: "scale", type: "f32" },
    ],
    stepParams: true,
    workgroupSize: [W, 1, 1],
    flat: false,
    body: /* wgsl */ `
// The id of run r: ids[order[segStart[r]]].
fn runId(r : i32) -> i32 {
  return ids[index[index[uniforms.N + r]]];
}

fn main() {
  let N = uniforms.N;
  let C = uniforms.cols;
  let first = i32(workgroupId.y * numWorkgroups.x + workgroupId.x) * ${RB};
  // Past the chunk's last row (the wrapped grid's last row of workgroups).
  if (first >= uniforms.rows) { return; }
  let last = min(first + ${RB}, uniforms.rows);
  let runs = index[2 * N + 1];
  let adding = ${e.add ? "true" : "step.accumulate != 0u"};
  let tid = i32(localIndex);
  // The first run whose id is at least the vocabulary row of this workgroup's first row.
  var lo = 0;
  var hi = runs;
  while (lo < hi) {
    let mid = (lo + hi) / 2;
    if (runId(mid) < first + uniforms.rowOffset) { lo = mid + 1; } else { hi = mid; }
  }
  var r = lo;
  for (var row = first; row < last; row = row + 1) {
    let out = row * C;
    if (r < runs && runId(r) == row + uniforms.rowOffset) {
      let start = index[N + r];
      let end = index[N + r + 1];
      for (var c = tid; c < C; c = c + ${W}) {
        var sum = 0.0;
        for (var k = start; k < end; k = k + 1) {
          sum = sum + dX[index[k] * C + c];
        }
        let v = sum * uniforms.scale;
        ${store("dE", "out + c", "v")}
      }
      r = r + 1;
    } else if (!adding) {
      // No id of the batch: zero on a step's first micro-batch, left alone after.
      for (var c = tid; c < C; c = c + ${W}) {
        dE[out + c] = 0.0;
      }
    }
  }
}`,
  };
  return {
    program,
    uniforms: [e.N, e.rows, e.cols, e.rowOffset, e.scale ?? 1],
    workgroups: flatGrid(Math.ceil(e.rows / RB)),
  };
}

/** The positional table's gradient. */
export interface PositionGrad {
  /** Rows of dx (B·T). */
  N: number;
  /** Positions of a sequence: dx's row n is position n % T, as the lookup adds pos[n % T]. */
  T: number;
  /** Rows P of the positional table (≥ T): rows from T on get no gradient. */
  rows: number;
  cols: number;
}

/**
 * dpos [P, C]: rows t < T get Σ_{n % T = t} dx[n, :], rows t ≥ T zero (accumulate = 0) or nothing; one workgroup
 * per row (wrapped into y).
 *
 * Bindings, in order: dPos [P, C] (written or added to), dX [N, C].
 * Uniforms: N, T, rows (P), cols (C); step parameters: accumulate.
 */
export function positionGrad(p: PositionGrad): ProgramCall {
  checkShape("positionGrad", { N: p.N, T: p.T, rows: p.rows, cols: p.cols });
  if (p.T > p.rows)
    throw new ShapeError(
      `positionGrad: T = ${p.T} positions, but the table has ${p.rows} rows; pass the whole table.`,
    );
  const W = EMBEDDING_GRAD_WORKGROUP;
  const program: Program = {
    key: `webtuneEngine_positionGrad_w${W}`,
    storage: [
      { name: "dPos", element: "f32", access: "read_write" },
      { name: "dX", element: "f32", access: "read" },
    ],
    uniforms: [
      { name: "N", type: "i32" },
      { name: "T", type: "i32" },
      { name: "rows", type: "i32" },
      { name: "cols", type: "i32" },
    ],
    stepParams: true,
    workgroupSize: [W, 1, 1],
    flat: false,
    body: /* wgsl */ `
fn main() {
  let t = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  if (t >= uniforms.rows) { return; }
  let adding = step.accumulate != 0u;
  let C = uniforms.cols;
  let tid = i32(localIndex);
  let out = t * C;
  if (t >= uniforms.T) {
    // A position past the sequence: zero on a step's first micro-batch, left alone after.
    if (!adding) {
      for (var c = tid; c < C; c = c + ${W}) {
        dPos[out + c] = 0.0;
      }
    }
    return;
  }
  for (var c = tid; c < C; c = c + ${W}) {
    var sum = 0.0;
    for (var n = t; n < uniforms.N; n = n + uniforms.T) {
      sum = sum + dX[n * C + c];
    }
    ${store("dPos", "out + c", "sum")}
  }
}`,
  };
  return {
    program,
    uniforms: [p.N, p.T, p.rows, p.cols],
    workgroups: flatGrid(p.rows),
  };
}

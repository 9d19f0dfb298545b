/**
 * Float64 CPU references of the full fine-tuning gradients (`column_grads.ts`, `embedding_grads.ts`), the oracle
 * of the kernel tests. Each returns one micro-batch's gradient; the tests add the accumulate semantics on top.
 *
 * Letters: N rows (ids), C features, R rows of a table chunk, T positions of a sequence, P rows of the
 * positional table.
 */

type Values = ArrayLike<number>;

export interface RowsShape {
  N: number;
  C: number;
}

/** Σ over rows of term(n, at), at = n·C + c -> [C]. */
function columnSums(
  { N, C }: RowsShape,
  term: (n: number, at: number) => number,
): Float64Array {
  const out = new Float64Array(C);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) out[c] = out[c]! + term(n, n * C + c);
  return out;
}

/** dy [N, C] -> db [C] = Σ_n dy[n, :]. */
export function biasGradReference(dy: Values, shape: RowsShape): Float64Array {
  return columnSums(shape, (_, at) => dy[at]!);
}

/**
 * dy [N, C], x [N, C], mean [N], rstd [N] -> dweight [C] = Σ_n dy·(x − mean)·rstd, dbias [C] = Σ_n dy
 * (the LayerNorm y = (x − mean)·rstd·weight + bias).
 */
export function layerNormParamGradsReference(
  dy: Values,
  x: Values,
  mean: Values,
  rstd: Values,
  shape: RowsShape,
): { dWeight: Float64Array; dBias: Float64Array } {
  return {
    dWeight: columnSums(
      shape,
      (n, at) => dy[at]! * (x[at]! - mean[n]!) * rstd[n]!,
    ),
    dBias: biasGradReference(dy, shape),
  };
}

/** dy [N, C], x [N, C], rstd [N] -> dscale [C] = Σ_n dy·x·rstd (the RMSNorm y = x·rstd·scale). */
export function rmsNormScaleGradReference(
  dy: Values,
  x: Values,
  rstd: Values,
  shape: RowsShape,
): Float64Array {
  return columnSums(shape, (n, at) => dy[at]! * x[at]! * rstd[n]!);
}

/** One chunk of the token table: rows [rowOffset, rowOffset + R) of the vocabulary. */
export interface ChunkShape {
  N: number;
  C: number;
  rows: number;
  rowOffset: number;
  /** The lookup's factor; default 1. */
  scale?: number;
}

/**
 * dx [N, C], ids [N] -> dE [R, C]: row v − rowOffset = scale·Σ_{ids[n] = v} dx[n, :]; rows no id reaches are 0,
 * ids outside the chunk are skipped.
 */
export function embeddingGradReference(
  dx: Values,
  ids: Values,
  { N, C, rows, rowOffset, scale = 1 }: ChunkShape,
): Float64Array {
  const dE = new Float64Array(rows * C);
  for (let n = 0; n < N; n++) {
    const s = ids[n]! - rowOffset;
    if (s < 0 || s >= rows) continue;
    for (let c = 0; c < C; c++)
      dE[s * C + c] = dE[s * C + c]! + scale * dx[n * C + c]!;
  }
  return dE;
}

export interface PositionShape {
  N: number;
  C: number;
  T: number;
  /** Rows P of the table, ≥ T. */
  rows: number;
}

/** dx [N, C] -> dpos [P, C]: row t < T = Σ_{n % T = t} dx[n, :], rows t ≥ T are 0. */
export function positionGradReference(
  dx: Values,
  { N, C, T, rows }: PositionShape,
): Float64Array {
  const dpos = new Float64Array(rows * C);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) {
      const at = (n % T) * C + c;
      dpos[at] = dpos[at]! + dx[n * C + c]!;
    }
  return dpos;
}

/**
 * The lookup these gradients are the backward of, in float64, for finite differences: y [N, C] =
 * table[ids[n] − rowOffset]·scale (+ pos[n % T]) for ids in the chunk, 0 for the others.
 */
export function embeddingLookupReference(
  table: Values,
  ids: Values,
  shape: ChunkShape,
  positions?: { pos: Values; T: number },
): Float64Array {
  const { N, C, rows, rowOffset, scale = 1 } = shape;
  const y = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    const s = ids[n]! - rowOffset;
    const inChunk = s >= 0 && s < rows;
    for (let c = 0; c < C; c++) {
      let v = inChunk ? table[s * C + c]! * scale : 0;
      if (positions) v += positions.pos[(n % positions.T) * C + c]!;
      y[n * C + c] = v;
    }
  }
  return y;
}

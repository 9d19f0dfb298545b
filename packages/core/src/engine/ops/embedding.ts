/**
 * The token embedding in a compiled step: one lookup per row chunk of the table (kernels/gather/program.ts), each
 * filling the rows whose ids fall in its chunk, packed chunks dequantized as they are read. Optionally scaled
 * (Gemma's √C) and with a positional table added (GPT-2's wpe). When the table trains (full fine-tuning), its
 * backward (kernels/grads/embedding_grads.ts) sums each id's rows of dx into its row of the table's gradient.
 *
 * Letters: N tokens, C hidden size, V vocabulary, T positions of a row.
 */
import { embeddingLookup } from "../../kernels/gather/program.js";
import {
  embeddingGrad,
  positionGrad,
} from "../../kernels/grads/embedding_grads.js";
import type { BoundMatrix, StepBuilder } from "../builder.js";
import type { GraphTensor, TensorRange } from "../graph.js";

/** ids [N] -> x [N, C]: table rows (· scale) (+ positions[n % T]). */
export function embed(
  s: StepBuilder,
  label: string,
  ids: TensorRange,
  chunks: BoundMatrix[],
  options: {
    rows: number;
    C: number;
    scale?: number;
    /**
     * A positional table [≥ T, C]: row n gets positions[n % T] added (GPT-2's wpe for [B, T] batches), or with
     * `fromStep` (decoding) positions[p + n % T], p the step's position.
     */
    positions?: {
      table: GraphTensor | TensorRange;
      T: number;
      fromStep?: boolean;
    };
  },
): GraphTensor {
  const { rows: N, C } = options;
  const x = s.g.activation(`${label}.out`, [N, C]);
  let start = 0;
  chunks.forEach((w, i) => {
    const rows = w.shape[0];
    s.g.dispatch(
      `${label} chunk ${i}`,
      embeddingLookup({
        N,
        rows,
        cols: C,
        rowOffset: start,
        format: w.attrs.wFormat,
        doubleQuant: w.attrs.doubleQuant,
        wOffset: w.attrs.wOffset,
        scale: options.scale,
        positions: options.positions?.T,
        positionFromStep: options.positions?.fromStep,
      }),
      [
        x,
        ids,
        w.data,
        ...w.scales,
        ...(options.positions ? [options.positions.table] : []),
      ],
    );
    start += rows;
  });
  return x;
}

/**
 * The table's gradient from dx [N, C], chunk by chunk (each chunk's rows of dE written, or added to when `tied`:
 * a tied LM head has written the step's first part), and the positional table's when it trains. `index` is the
 * batch's ids grouped by id (`embeddingGradIndex`), written by the host with the ids.
 */
export function embedBackward(
  s: StepBuilder,
  label: string,
  dx: GraphTensor,
  ids: TensorRange,
  index: TensorRange,
  chunks: BoundMatrix[],
  options: {
    C: number;
    scale?: number;
    positions?: { grad: TensorRange; rows: number; T: number };
    tied: boolean;
  },
): void {
  const { C } = options;
  const N = dx.size / C;
  let start = 0;
  chunks.forEach((w, i) => {
    const rows = w.shape[0];
    if (w.grad)
      s.g.dispatch(
        `${label} chunk ${i} dE`,
        embeddingGrad({
          N,
          rows,
          cols: C,
          rowOffset: start,
          scale: options.scale,
          add: options.tied,
        }),
        [w.grad, dx, ids, index],
      );
    start += rows;
  });
  const p = options.positions;
  if (p)
    s.g.dispatch(
      `${label} positions dE`,
      positionGrad({ N, T: p.T, rows: p.rows, cols: C }),
      [p.grad, dx],
    );
}

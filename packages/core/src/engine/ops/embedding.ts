/**
 * The token embedding in a compiled step: one lookup per row chunk of the table (kernels/gather/program.ts), each
 * filling the rows whose ids fall in its chunk, packed chunks dequantized as they are read. Optionally scaled
 * (Gemma's √C) and with a positional table added (GPT-2's wpe).
 *
 * Letters: N tokens, C hidden size, V vocabulary.
 */
import { embeddingLookup } from "../../kernels/gather/program.js";
import type { Matrix } from "../../kernels/quant/packed.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";

/** What the lookup reads of an embedding table: its row chunks, in vocabulary order. */
export interface ChunkedTable {
  readonly name: string;
  readonly chunks: Matrix[];
}

/** ids [N] -> x [N, C]: table rows (· scale) (+ positions[n % T]). */
export function embed(
  s: StepBuilder,
  label: string,
  ids: GraphTensor,
  table: ChunkedTable,
  options: {
    rows: number;
    C: number;
    scale?: number;
    /** A positional table [≥ T, C]: row n gets positions[n % T] added (GPT-2's wpe for [B, T] batches). */
    positions?: { table: GraphTensor; T: number };
  },
): GraphTensor {
  const { rows: N, C } = options;
  const x = s.g.activation(`${label}.out`, [N, C]);
  let start = 0;
  table.chunks.forEach((chunk, i) => {
    const w = s.matrix(chunk, `${table.name} chunk ${i}`);
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

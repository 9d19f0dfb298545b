/**
 * Packing: several examples in one row of exactly `seqLen` tokens, so that little compute goes to padding.
 *
 * An example longer than `seqLen` is first cut into pieces of `seqLen` tokens. The pieces are placed best-fit
 * decreasing (longest first, each into the open row with the least room that fits it, else a new row), which is
 * deterministic and leaves little padding; the epoch's shuffle then orders the rows. In a row:
 * - the first label of each piece is -100, since it would be predicted from the end of another example;
 * - `positionIds` restart at 0 for each piece;
 * - `attentionMask` is 1 on every piece's tokens and 0 on the padding at the end (padId, labels -100). A model that
 *   only takes the attention mask lets a piece attend to the pieces before it in the row, as Hugging Face's
 *   default packing does; one that takes `positionIds` can build a block-diagonal mask from their restarts.
 */
import { IGNORE_INDEX, type Example } from "./types.js";

/** One row of a batch (all arrays of the same length). */
export interface Sequence {
  inputIds: number[];
  labels: number[];
  attentionMask: number[];
  positionIds: number[];
}

type Piece = Pick<Example, "inputIds" | "labels">;

/** Packs examples into rows of `seqLen` tokens, padded with `padId`. */
export function packExamples(
  examples: readonly Piece[],
  seqLen: number,
  padId: number,
): Sequence[] {
  const pieces = examples
    .flatMap((e) => cut(e, seqLen))
    .map((piece, index) => ({ piece, index }))
    .sort(
      (a, b) =>
        b.piece.inputIds.length - a.piece.inputIds.length || a.index - b.index,
    );
  const rows: Piece[][] = [];
  // byRoom[r]: the rows with r free tokens, so a best fit is the first non-empty list from the piece's length up.
  const byRoom: number[][] = Array.from({ length: seqLen + 1 }, () => []);
  for (const { piece } of pieces) {
    const length = piece.inputIds.length;
    let room = length;
    while (room <= seqLen && byRoom[room]!.length === 0) room++;
    const row = room <= seqLen ? byRoom[room]!.pop()! : rows.push([]) - 1;
    rows[row]!.push(piece);
    byRoom[(room <= seqLen ? room : seqLen) - length]!.push(row);
  }
  return rows.map((row) => packRow(row, seqLen, padId));
}

function cut(example: Piece, seqLen: number): Piece[] {
  const pieces: Piece[] = [];
  for (let start = 0; start < example.inputIds.length; start += seqLen) {
    pieces.push({
      inputIds: example.inputIds.slice(start, start + seqLen),
      labels: example.labels.slice(start, start + seqLen),
    });
  }
  return pieces;
}

function packRow(pieces: Piece[], seqLen: number, padId: number): Sequence {
  const out: Sequence = {
    inputIds: [],
    labels: [],
    attentionMask: [],
    positionIds: [],
  };
  for (const piece of pieces) {
    out.inputIds.push(...piece.inputIds);
    out.labels.push(IGNORE_INDEX, ...piece.labels.slice(1));
    out.attentionMask.push(...piece.inputIds.map(() => 1));
    out.positionIds.push(...piece.inputIds.map((_, t) => t));
  }
  const padding = seqLen - out.inputIds.length;
  out.inputIds.push(...new Array<number>(padding).fill(padId));
  out.labels.push(...new Array<number>(padding).fill(IGNORE_INDEX));
  out.attentionMask.push(...new Array<number>(padding).fill(0));
  out.positionIds.push(...new Array<number>(padding).fill(0));
  return out;
}

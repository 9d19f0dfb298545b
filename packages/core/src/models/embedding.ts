/**
 * Token embeddings stored as row chunks, each within the device's storage-binding limit, so a 262k × 640
 * table (Gemma 3) or a 50k × 768 one (GPT-2, 154 MB) loads on a device that binds 128 MB at a time.
 * The same chunks serve as the tied LM head.
 *
 * Letters: V vocabulary, C hidden size, N tokens.
 */
import * as tf from "@tensorflow/tfjs";
import { gatherRows } from "../kernels/gather/op.js";
import { linear } from "../kernels/linear/op.js";
import { isPacked, type Matrix } from "../kernels/quant/packed.js";

/** 8k rows: about 32 MB of loss-head tensors at 256 tokens per chunk step (32 chunks for Gemma 3's 262k vocabulary). */
const MAX_CHUNK_ROWS = 8192;

export class Embedding {
  /** Row offset of each chunk in the full [V, C] table. */
  private readonly starts: number[];

  constructor(
    readonly name: string,
    /** f32 (variables when every weight trains), or f16/int8/NF4 when the model was loaded compact. */
    readonly chunks: Matrix[],
    /** The device's storage-binding limit, which the chunks and each block of head logits stay within. */
    readonly maxBytes = Infinity,
  ) {
    this.starts = [];
    let start = 0;
    for (const c of chunks) {
      this.starts.push(start);
      start += c.shape[0];
    }
  }

  get vocabSize(): number {
    return this.chunks.reduce((n, c) => n + c.shape[0], 0);
  }

  get dim(): number {
    return this.chunks[0]!.shape[1];
  }

  /**
   * Rows per chunk: at most `maxBytes` as f32, and at most MAX_CHUNK_ROWS, because the loss holds a few
   * [tokens, chunk rows] tensors at once (the logits of one chunk, their softmax and its gradient).
   */
  static rowsPerChunk(dim: number, maxBytes: number): number {
    return Math.max(
      1,
      Math.min(MAX_CHUNK_ROWS, Math.floor(maxBytes / (dim * 4))),
    );
  }

  /** ids: int32 [...] -> [..., C] */
  lookup(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const only = this.chunks.length === 1 ? this.chunks[0]! : undefined;
      if (only && !isPacked(only)) return tf.gather(only, ids);
      // Each chunk contributes the rows of the ids that fall in it, and zeros for the others.
      let out: tf.Tensor | undefined;
      this.chunks.forEach((chunk, i) => {
        const trained = chunk instanceof tf.Variable && chunk.trainable;
        const part = trained
          ? this.gatherInside(chunk, ids, this.starts[i]!)
          : gatherRows(chunk, ids, this.starts[i]!);
        out = out ? out.add(part) : part;
      });
      return out!;
    });
  }

  /** Differentiable (for a chunk that trains): ids outside the chunk read row 0 and are masked to zero. */
  private gatherInside(
    chunk: tf.Tensor2D,
    ids: tf.Tensor,
    start: number,
  ): tf.Tensor {
    const local = ids.sub(tf.scalar(start, "int32"));
    const inside = local.greaterEqual(0).logicalAnd(local.less(chunk.shape[0]));
    const rows = tf.gather(chunk, tf.where(inside, local, tf.zerosLike(local)));
    return rows.mul(inside.expandDims(-1).cast("float32"));
  }

  /**
   * Tokens whose logits for the widest chunk fit one binding: the head must project at most this many rows at a
   * time (GPT-2's 50k vocabulary gives 1 GB of logits at N = 1024 tokens).
   */
  get rowsPerLogitBlock(): number {
    const widest = Math.max(...this.chunks.map((c) => c.shape[0]));
    return Math.max(1, Math.floor(this.maxBytes / (widest * 4)));
  }

  /** Logits of each chunk's vocabulary slice: h [N, C] -> [N, V_chunk] each, in vocabulary order. */
  projectChunks(h: tf.Tensor2D): tf.Tensor2D[] {
    return this.chunks.map(
      (chunk) => linear(h, chunk, null, "out_in") as tf.Tensor2D,
    );
  }

  /** Logits of chunk i's vocabulary slice alone: h [N, C] -> [N, V_chunk]. */
  projectChunk(i: number, h: tf.Tensor2D): tf.Tensor2D {
    return linear(h, this.chunks[i]!, null, "out_in") as tf.Tensor2D;
  }

  /** The head's backward through chunk i: dlogits [N, V_chunk] -> dh [N, C], reading the chunk as [in, out]. */
  backProjectChunk(i: number, dLogits: tf.Tensor2D): tf.Tensor2D {
    return linear(dLogits, this.chunks[i]!, null, "in_out") as tf.Tensor2D;
  }
}

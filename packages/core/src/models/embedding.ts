/**
 * Token embeddings stored as row chunks, each within the device's storage-binding limit, so a 262k × 640
 * table (Gemma 3) or a 50k × 768 one (GPT-2, 154 MB) loads on a device that binds 128 MB at a time.
 * The same chunks serve as the tied LM head.
 *
 * Letters: V vocabulary, C hidden size, N tokens.
 */
import * as tf from "@tensorflow/tfjs";
import { linear } from "../kernels/linear/op.js";

export class Embedding {
  /** Row offset of each chunk in the full [V, C] table. */
  private readonly starts: number[];

  constructor(
    readonly name: string,
    readonly chunks: tf.Tensor2D[],
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

  /** Rows per chunk so that one chunk takes at most `maxBytes` as f32. */
  static rowsPerChunk(dim: number, maxBytes: number): number {
    return Math.max(1, Math.floor(maxBytes / (dim * 4)));
  }

  /** ids: int32 [...] -> [..., C] */
  lookup(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      if (this.chunks.length === 1) return tf.gather(this.chunks[0]!, ids);
      // Each chunk gathers the ids that fall in its rows; the others read row 0 and are masked to zero.
      let out: tf.Tensor | undefined;
      this.chunks.forEach((chunk, i) => {
        const local = ids.sub(tf.scalar(this.starts[i]!, "int32"));
        const inside = local
          .greaterEqual(0)
          .logicalAnd(local.less(chunk.shape[0]));
        const rows = tf.gather(
          chunk,
          tf.where(inside, local, tf.zerosLike(local)),
        );
        const part = rows.mul(inside.expandDims(-1).cast("float32"));
        out = out ? out.add(part) : part;
      });
      return out!;
    });
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
}

/**
 * A compiled decoding graph of any architecture that has one: T new tokens of B rows at positions p..p+T−1 (p
 * the step parameters' position), every block's forward writing its keys and values into its layer's KV cache
 * and attending over the cache's rows 0..p+t, the final norm and the LM head on each row's last new token only.
 * The same graph serves every token of a generation: only the ids and p change between runs.
 *
 * A prompt's prefill is the graph of [B, T] from p = 0; each next token is the graph of [B, 1]; a shared prefix's
 * continuations are the graph of [k, L] from p = the prefix's length over a cache whose first p rows hold it.
 *
 * Letters: B rows, T new tokens, N = B·T, C hidden size, V vocabulary, Vc one chunk's rows, S cache positions.
 */
import { rowArgmax } from "../kernels/argmax/program.js";
import { embeddingLookup } from "../kernels/gather/program.js";
import type { StepBuilder } from "../engine/builder.js";
import type { GraphTensor } from "../engine/graph.js";
import type { KvCache } from "../engine/kv_cache.js";
import { embed } from "../engine/ops/embedding.js";
import { headLogits } from "../engine/ops/loss.js";
import type { StepArchitecture } from "./step.js";

/** What the host writes and reads around a decoding run. */
export interface DecodeIO {
  /** ids [B·T], row-major. */
  ids: GraphTensor;
  /** The row of [N] whose logits each batch row returns ([B], i32); absent when T = 1 (every row is last). */
  last: GraphTensor | undefined;
  /**
   * Read back per vocabulary chunk: the last rows' logits [B, Vc] (with "all", every new token's [B·T, Vc]; with
   * "greedy", each last row's largest logit and its token id [B, 2]).
   */
  logits: GraphTensor[];
}

/** What a decoding graph reads back: the last rows' logits, every new token's, or the last rows' argmax. */
export type DecodeOutput = "last" | "all" | "greedy";

/**
 * Records the decoding graph of [B, T] new tokens over `cache` (its layers bound as the graph's externals), reading
 * back `output` (see DecodeIO.logits): "all" scores a continuation, "greedy" serves batched greedy decoding.
 */
export function recordDecode(
  s: StepBuilder,
  arch: StepArchitecture,
  B: number,
  T: number,
  cache: KvCache,
  output: DecodeOutput = "last",
): DecodeIO {
  const allRows = output === "all";
  const decoding = arch.decoding;
  if (!decoding)
    throw new Error(
      "recordDecode: this architecture does not decode in a compiled graph.",
    );
  const N = B * T;
  const { embedding, blocks, norm } = decoding.layers(s, B, T, cache.shape.S);
  const C = embedding.table.dim;
  const table = embedding.table.chunks.map((c, i) =>
    s.matrix(c, `${embedding.table.name} chunk ${i}`),
  );
  const positions =
    embedding.positions && s.vector(embedding.positions, "positions");
  const ids = s.g.input("ids", [N]);
  let x = embed(s, embedding.table.name, ids.range(0, N), table, {
    rows: N,
    C,
    scale: embedding.scale,
    positions: positions && { table: positions.value, T, fromStep: true },
  });
  blocks.forEach((block, i) => {
    x = block.decode(s, x, cache.bind(s.g, i));
  });
  let last: GraphTensor | undefined;
  if (T > 1 && !allRows) {
    last = s.g.input("last rows", [B]);
    const lastH = s.g.activation("last rows.h", [B, C]);
    s.g.dispatch(
      "last rows",
      embeddingLookup({
        N: B,
        rows: N,
        cols: C,
        rowOffset: 0,
        format: "float32",
        doubleQuant: false,
        wOffset: 0,
      }),
      [lastH, last, x],
    );
    x = lastH;
  }
  const h = norm.forward(s, x).y;
  let v0 = 0;
  const logits = arch.head.chunks.map((c, k) => {
    const z = headLogits(
      s,
      `lm_head chunk ${k}`,
      h,
      s.matrix(c, `${arch.head.name} chunk ${k}`),
      allRows ? N : B,
    );
    const Vc = c.shape[0];
    const read =
      output === "greedy"
        ? s.g.activation(`lm_head chunk ${k}.argmax`, [B, 2])
        : z;
    // The softcap is monotone: the largest logit is the largest capped one.
    if (output === "greedy")
      s.g.dispatch(
        `lm_head chunk ${k} argmax`,
        rowArgmax(B, Vc, v0, s.g.limits.maxComputeWorkgroupsPerDimension),
        [read, z],
      );
    v0 += Vc;
    s.g.readback(read);
    return read;
  });
  return { ids, last, logits };
}

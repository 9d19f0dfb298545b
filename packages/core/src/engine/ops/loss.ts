/**
 * The loss head in a compiled step: cross-entropy straight from the final hidden states and the LM head's
 * vocabulary chunks, and in a training graph its gradient dh, without ever holding [N, V] logits. Rows are taken
 * a block at a time so that a block's logits over the whole vocabulary fit a budget (LOGIT_BUDGET by default);
 * within a block:
 *
 *   z_k = h·E_kᵀ                    (a matmul per chunk)     stats_k = rowwise (max, Σexp, target logit)
 *   lse, loss += Σ w·(lse − l_t)    (one small dispatch)
 *   dz_k = (softmax − onehot)·w·cap' (in place)              dh += dz_k·E_k  (a matmul per chunk)
 *
 * with w = the step's lossScale for rows that have a target. The gradient reuses the forward's logits instead of
 * recomputing them: two head matmuls, not three; except when even the smallest block's logits are over the budget
 * (Gemma 3's 262k vocabulary), where each chunk's logits are made again for the gradient, so that one chunk is
 * alive at a time.
 *
 * Letters: N rows, C hidden size, V vocabulary, Vc one chunk's rows, K chunks, n rows of one block.
 */
import {
  chunkGradCall,
  chunkStatsCall,
  combineCall,
  STATS_WIDTH,
} from "../../kernels/cross_entropy/program.js";
import { matmulCall } from "../../kernels/lora_linear/program.js";
import { PLAIN_MATMUL } from "../../kernels/lora_linear/shader.wgsl.js";
import { biasGrad } from "../../kernels/grads/column_grads.js";
import type { BoundMatrix, BoundVector, StepBuilder } from "../builder.js";
import { subRange, type GraphTensor, type TensorRange } from "../graph.js";
import type { Matrix } from "../../kernels/quant/packed.js";
import { ShapeError } from "../../errors.js";
import { recordParamGrads } from "./norm.js";

/** What the loss reads of the LM head: its vocabulary chunks, in vocabulary order. */
export interface ChunkedTable {
  readonly name: string;
  readonly chunks: Matrix[];
}

/**
 * Bytes of logits one row block may hold over the whole vocabulary, by default. The loss runs when every block's
 * saved activations are alive, so its logits add to the step's peak; 32 MiB keeps SmolLM2-360M's step (1 × 256,
 * f16 base) under the tape's peak, at a few more dispatches (the `memory` and `host` benchmarks).
 */
export const LOGIT_BUDGET = 32 * 2 ** 20;

/**
 * Rows per block: the whole vocabulary's logits within the budget, and each chunk's within one binding, in
 * multiples of 64 rows, so that each block's rows of h, dh and the targets start at a 256-byte offset (the
 * storage binding alignment).
 */
export function rowsPerBlock(
  N: number,
  V: number,
  widestChunk: number,
  maxBindingBytes: number,
  budget = LOGIT_BUDGET,
): number {
  const byBudget = Math.floor(budget / (4 * V));
  const byBinding = Math.floor(maxBindingBytes / (4 * widestChunk));
  const rows = Math.min(byBudget, byBinding);
  return rows >= N ? N : Math.max(64, Math.floor(rows / 64) * 64);
}

/** z [n, Vc] = h·E_kᵀ (+ bias): one vocabulary chunk's logits of n rows of h [n, C]. */
export function headLogits(
  s: StepBuilder,
  label: string,
  h: GraphTensor | TensorRange,
  w: BoundMatrix,
  n: number,
  bias?: BoundVector,
): GraphTensor {
  const [Vc, C] = w.shape;
  const z = s.g.activation(label, [n, Vc]);
  s.g.dispatch(
    label,
    matmulCall(
      { M: n, N: Vc, K: C },
      {
        ...PLAIN_MATMUL,
        xLayout: "mk",
        wLayout: "nk",
        wFormat: w.attrs.wFormat,
        doubleQuant: w.attrs.doubleQuant,
        bias: bias !== undefined,
      },
      s.software,
      { wOffset: w.attrs.wOffset },
    ),
    [z, h, w.data, ...(bias ? [bias.value] : []), ...w.scales],
  );
  return z;
}

/**
 * Σ over rows with a target of w·(lse − logit of the target): the loss, a scalar read back after the run; and in
 * a training graph dh [N, C], the gradient of that loss with respect to h.
 */
export function crossEntropy(
  s: StepBuilder,
  label: string,
  h: GraphTensor,
  head: ChunkedTable,
  targets: TensorRange,
  options: {
    softcap: number | undefined;
    logitBudget?: number;
    /** A classification head's bias [V] (one chunk, one row block): added to the logits, its gradient Σ dz. */
    bias?: BoundVector;
  },
): { loss: GraphTensor; dh: GraphTensor | undefined } {
  const chunks = head.chunks.map((c, k) =>
    s.matrix(c, `${head.name} chunk ${k}`),
  );
  const C = chunks[0]!.shape[1];
  const N = h.size / C;
  const V = chunks.reduce((n, c) => n + c.shape[0], 0);
  const K = chunks.length;
  const starts: number[] = [];
  chunks.reduce((v0, c) => (starts.push(v0), v0 + c.shape[0]), 0);
  const block = rowsPerBlock(
    N,
    V,
    Math.max(...chunks.map((c) => c.shape[0])),
    s.g.limits.maxStorageBufferBindingSize,
    options.logitBudget,
  );
  const { bias } = options;
  if (bias && (K > 1 || block < N))
    throw new ShapeError(
      `${label}: a head bias needs one chunk and one row block, got ${K} chunks and blocks of ${block} of ${N} rows.`,
    );
  const recompute =
    s.training &&
    4 * V * Math.min(block, N) > (options.logitBudget ?? LOGIT_BUDGET);
  const loss = s.g.activation(`${label}.loss`, [1]);
  const dh = s.training ? s.g.activation(`${label}.dh`, [N, C]) : undefined;
  for (let r0 = 0; r0 < N; r0 += block) {
    const n = Math.min(block, N - r0);
    const rows = h.range(r0 * C, n * C);
    const t = subRange(targets, r0, n);
    const at = `${label} rows ${r0}..${r0 + n}`;
    const stats = s.g.activation(`${at}.stats`, [K, n, STATS_WIDTH]);
    const chunkLogits = (k: number, name: string): GraphTensor =>
      headLogits(s, `${at}.${name}`, rows, chunks[k]!, n, bias);
    const logits = chunks.map((w, k) => {
      const z = chunkLogits(k, `logits_${k}`);
      s.g.dispatch(
        `${at} stats ${k}`,
        chunkStatsCall(
          { n, Vc: w.shape[0], v0: starts[k]! },
          k,
          options.softcap,
        ),
        [stats, z, t],
      );
      return z;
    });
    const lse = s.g.activation(`${at}.lse`, [n]);
    s.g.dispatch(`${at} loss`, combineCall(n, K, r0 === 0), [
      lse,
      loss,
      stats,
      t,
    ]);
    if (!dh) continue;
    const dRows = dh.range(r0 * C, n * C);
    logits.forEach((kept, k) => {
      const w = chunks[k]!;
      const Vc = w.shape[0];
      // Past the budget even at the smallest block, each chunk's logits are made again here rather than kept:
      // one chunk alive at a time, for one more head matmul.
      const z = recompute ? chunkLogits(k, `logits_${k} again`) : kept;
      s.g.dispatch(
        `${at} dlogits ${k}`,
        chunkGradCall({ n, Vc, v0: starts[k]! }, options.softcap),
        [z, lse, t],
      );
      if (bias?.grad)
        recordParamGrads(s, `${at} dbias`, biasGrad(n, Vc), [bias.grad], [z]);
      // The head's own gradient when it trains: dE_k (+)= dzᵀ·h over this block's rows.
      if (w.grad)
        s.g.dispatch(
          `${at} dE ${k}`,
          matmulCall(
            { M: Vc, N: C, K: n },
            {
              ...PLAIN_MATMUL,
              xLayout: "km",
              wLayout: "kn",
              wFormat: "float32",
              doubleQuant: false,
              accumulate: r0 === 0 ? "step" : "always",
            },
            s.software,
          ),
          [w.grad, z, rows],
        );
      s.g.dispatch(
        `${at} dh ${k}`,
        matmulCall(
          { M: n, N: C, K: Vc },
          {
            ...PLAIN_MATMUL,
            xLayout: "mk",
            wLayout: "kn",
            wFormat: w.attrs.wFormat,
            doubleQuant: w.attrs.doubleQuant,
            accumulate: k > 0 ? "always" : "none",
          },
          s.software,
          { wOffset: w.attrs.wOffset },
        ),
        [dRows, z, w.data, ...w.scales],
      );
    });
  }
  return { loss, dh };
}

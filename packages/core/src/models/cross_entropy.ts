/**
 * Cross-entropy straight from the final hidden states and the LM head, one block of rows and one vocabulary chunk
 * at a time in both directions, so that training never holds [N, V] logits. tfjs autograd would keep every
 * chunk's logits alive for the backward pass (268 MB for Gemma 3's 262k vocabulary at 256 tokens); here the
 * backward recomputes each chunk's logits from h and the head instead, as the forward made them.
 *
 *   forward:  z = h·E_cᵀ, logit = cap(z), lse = log Σ_v exp(logit_v), loss = Σ_n w_n·(lse_n − logit_n[t_n])
 *   backward: dz = dy·w·(exp(logit − lse) − onehot(t))·cap'(z), dh = Σ_c dz·E_c, dE_c = dzᵀ·h
 *
 * with w_n = valid_n / count and cap(z) = cap·tanh(z / cap) (Gemma's final softcap), or z without one.
 *
 * Letters: N rows (tokens), C hidden size, V vocabulary, Vc one head chunk's slice of it, n rows in one block.
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../errors.js";
import type { Embedding } from "./embedding.js";

/** Labels equal to this are left out of the loss, as in PyTorch and Hugging Face. */
export const IGNORE_INDEX = -100;

/** What both passes share, worked out once on the CPU from the targets. */
interface Plan {
  head: Embedding;
  targets: number[];
  softcap: number | undefined;
  /** valid_n / max(count, 1): each row's weight in the mean. */
  weights: Float32Array;
  /** First vocabulary id of each head chunk. */
  chunkStarts: number[];
  /** [start, rows) of each block of rows whose logits for one chunk fit a binding. */
  blocks: { start: number; rows: number }[];
}

/**
 * Mean cross-entropy of the logits cap(h·Eᵀ) against `targets`, over the targets that are not -100 (0 when all
 * are), exactly as Hugging Face computes it from full logits. Value and gradients are both computed a block of
 * rows and a head chunk at a time, so no [N, V] tensor is ever made, in the forward or the backward pass.
 * Gradients flow to h and, when the head's chunks are trainable tf.Variables (full fine-tuning), to them.
 *
 * @param h final hidden states [N, C]
 * @param head the LM head (or tied embedding) as vocabulary chunks [Vc, C]
 * @param targets N token ids in [0, V), or -100 to ignore a row
 * @param softcap Gemma's final logit softcap (logit = cap·tanh(z / cap)), or undefined for none
 *
 * @example
 * ```ts
 * const loss = chunkedCrossEntropy(h2d, head, [17, 3, -100, 41], undefined); // h2d [4, C] -> scalar
 * ```
 */
export function chunkedCrossEntropy(
  h: tf.Tensor2D,
  head: Embedding,
  targets: number[],
  softcap: number | undefined,
): tf.Scalar {
  const plan = makePlan(h, head, targets, softcap);
  const trainable = trainableChunks(head);
  const f = tf.customGrad((...args) => {
    const save = args.at(-1) as tf.GradSaveFunc;
    const x = args[0] as tf.Tensor2D;
    const lse = logSumExp(x, plan);
    save([x, lse]);
    return {
      value: lossValue(x, lse, plan),
      // tfjs wants one gradient per input: h, then each trainable chunk in order.
      gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => {
        const [xs, lses] = saved as [tf.Tensor2D, tf.Tensor1D];
        const { dh, dChunks } = backward(xs, lses, dy, plan, trainable);
        return [dh, ...dChunks];
      },
    };
  });
  return f(h, ...trainable.map((t) => t.variable)) as tf.Scalar;
}

function makePlan(
  h: tf.Tensor2D,
  head: Embedding,
  targets: number[],
  softcap: number | undefined,
): Plan {
  const [N, C] = h.shape;
  if (h.rank !== 2 || N !== targets.length || C !== head.dim)
    throw new ShapeError(
      `chunkedCrossEntropy: h must be [targets, ${head.dim}] = [${targets.length}, ${head.dim}], got [${h.shape.join(", ")}].`,
    );
  const V = head.vocabSize;
  const bad = targets.findIndex(
    (t) => t !== IGNORE_INDEX && !(Number.isInteger(t) && t >= 0 && t < V),
  );
  // An out-of-range target would gather a wrong row (or zeros) on the GPU and give a silently wrong loss.
  if (bad >= 0)
    throw new ShapeError(
      `chunkedCrossEntropy: target ${targets[bad]} at ${bad} is neither ${IGNORE_INDEX} (ignored) nor a token id in [0, ${V}).`,
    );
  const count = targets.filter((t) => t !== IGNORE_INDEX).length;
  const weights = Float32Array.from(targets, (t) =>
    t === IGNORE_INDEX ? 0 : 1 / Math.max(count, 1),
  );
  const chunkStarts: number[] = [];
  let start = 0;
  for (const chunk of head.chunks) {
    chunkStarts.push(start);
    start += chunk.shape[0];
  }
  const block = head.rowsPerLogitBlock;
  const blocks: Plan["blocks"] = [];
  for (let s = 0; s < N; s += block)
    blocks.push({ start: s, rows: Math.min(block, N - s) });
  return { head, targets, softcap, weights, chunkStarts, blocks };
}

/** The head's chunks that a full fine-tune trains; frozen or packed chunks get no gradient. */
function trainableChunks(
  head: Embedding,
): { index: number; variable: tf.Variable }[] {
  return head.chunks.flatMap((chunk, index) =>
    chunk instanceof tf.Variable && chunk.trainable
      ? [{ index, variable: chunk }]
      : [],
  );
}

/** log Σ_v exp(logit_v) of each row of h [N, C] -> [N], merged chunk by chunk so one chunk of logits lives at a time. */
function logSumExp(h: tf.Tensor2D, plan: Plan): tf.Tensor1D {
  const parts = plan.blocks.map(({ start, rows }) => {
    let lse: tf.Tensor1D | undefined;
    plan.head.chunks.forEach((_, i) => {
      const next = tf.tidy(() => {
        const { logit, tanh } = chunkLogits(rowsOf(h, start, rows), plan, i);
        tanh?.dispose();
        const part = consume(logit, (l) => tf.logSumExp(l, 1) as tf.Tensor1D);
        return lse ? logAddExp(lse, part) : part;
      });
      lse?.dispose();
      lse = next;
    });
    return lse!;
  });
  if (parts.length === 1) return parts[0]!;
  const out = tf.concat(parts);
  tf.dispose(parts);
  return out;
}

/** log(exp(a) + exp(b)), elementwise, without overflow. */
function logAddExp(a: tf.Tensor1D, b: tf.Tensor1D): tf.Tensor1D {
  const m = a.maximum(b);
  return m.add(a.sub(m).exp().add(b.sub(m).exp()).log());
}

/** Σ_n w_n·(lse_n − logit_n[t_n]); the target's logit is h·E[t] (no [N, V] one-hot). */
function lossValue(h: tf.Tensor2D, lse: tf.Tensor1D, plan: Plan): tf.Scalar {
  return tf.tidy(() => {
    const safe = plan.targets.map((t) => (t === IGNORE_INDEX ? 0 : t));
    const embedded = plan.head.lookup(tf.tensor1d(safe, "int32")); // [N, C]
    const z = h.mul(embedded).sum(1); // [N]
    const sc = plan.softcap;
    const targetLogit = sc === undefined ? z : z.div(sc).tanh().mul(sc);
    return lse.sub(targetLogit).mul(tf.tensor1d(plan.weights)).sum();
  });
}

/** The forward in reverse: dh [N, C] and, for each trainable chunk, dE [Vc, C]. */
function backward(
  h: tf.Tensor2D,
  lse: tf.Tensor1D,
  dy: tf.Scalar,
  plan: Plan,
  trainable: { index: number }[],
): { dh: tf.Tensor2D; dChunks: tf.Tensor2D[] } {
  // [N]: each row's share of dy
  const scale = tf.tidy(() => tf.tensor1d(plan.weights).mul(dy) as tf.Tensor1D);
  const dChunks: (tf.Tensor2D | undefined)[] = trainable.map(() => undefined);
  const dhParts = plan.blocks.map(({ start, rows }) => {
    let dh: tf.Tensor2D | undefined;
    plan.head.chunks.forEach((_, i) => {
      const dz = tf.tidy(() =>
        chunkLogitGrad(h, lse, scale, plan, i, start, rows),
      ); // [n, Vc]
      dh = addTo(dh, () => plan.head.backProjectChunk(i, dz)); // [n, Vc]·[Vc, C] -> [n, C]
      const slot = trainable.findIndex((t) => t.index === i);
      if (slot >= 0)
        dChunks[slot] = addTo(dChunks[slot], () =>
          // [n, Vc]ᵀ·[n, C] -> [Vc, C]
          tf.matMul<tf.Tensor2D>(dz, rowsOf(h, start, rows), true, false),
        );
      dz.dispose();
    });
    return dh!;
  });
  scale.dispose();
  const dh = dhParts.length === 1 ? dhParts[0]! : tf.concat(dhParts);
  if (dhParts.length > 1) tf.dispose(dhParts);
  return { dh, dChunks: dChunks.map((d) => d!) };
}

/**
 * dloss/dz for chunk i of rows [start, start + rows): (softmax − onehot(target))·scale·cap'(z) -> [n, Vc], from the
 * chunk's logits recomputed; onehot only where the target falls in this chunk.
 */
function chunkLogitGrad(
  h: tf.Tensor2D,
  lse: tf.Tensor1D,
  scale: tf.Tensor1D,
  plan: Plan,
  i: number,
  start: number,
  rows: number,
): tf.Tensor2D {
  const { logit, tanh } = chunkLogits(rowsOf(h, start, rows), plan, i);
  const Vc = logit.shape[1];
  const lseRows = rowsOf(lse, start, rows).expandDims(1);
  let d = consume(logit, (l) => l.sub(lseRows).exp()); // softmax slice [n, Vc]
  const from = plan.chunkStarts[i]!;
  const local = plan.targets
    .slice(start, start + rows)
    .map((t) => (t >= from && t < from + Vc ? t - from : -1));
  // −1 at each target's column; rows whose target is in another chunk (or ignored) have index −1 and get nothing.
  if (local.some((t) => t >= 0))
    d = consume(d, (p) =>
      p.add(tf.oneHot(tf.tensor1d(local, "int32"), Vc, -1, 0, "float32")),
    );
  const scaleRows = rowsOf(scale, start, rows).expandDims(1);
  d = consume(d, (g) => g.mul(scaleRows));
  if (tanh) {
    // d/dz of cap·tanh(z / cap) is 1 − tanh².
    const slope = consume(tanh, (t) => tf.sub(1, t.square()));
    d = consume(d, (g) => g.mul(slope));
    slope.dispose();
  }
  return d as tf.Tensor2D;
}

/**
 * Chunk i's logits for rows h [n, C]: cap(h·E_iᵀ) [n, Vc] and, with a softcap, tanh(z / cap), which its
 * derivative needs.
 */
function chunkLogits(
  h: tf.Tensor2D,
  plan: Plan,
  i: number,
): { logit: tf.Tensor2D; tanh?: tf.Tensor2D } {
  const z = plan.head.projectChunk(i, h);
  const sc = plan.softcap;
  if (sc === undefined) return { logit: z };
  const tanh = consume(z, (x) => x.div(sc).tanh() as tf.Tensor2D);
  return { logit: tanh.mul(sc), tanh };
}

/** sum + part(), freeing the old sum, so a running sum stays one tensor. */
function addTo(
  sum: tf.Tensor2D | undefined,
  part: () => tf.Tensor2D,
): tf.Tensor2D {
  const next = tf.tidy(() => (sum ? (sum.add(part()) as tf.Tensor2D) : part()));
  sum?.dispose();
  return next;
}

/**
 * f(x), with x freed as soon as f is done: a chunk's [n, Vc] steps chained this way keep two or three such
 * tensors alive at once, where a tidy around them all would keep every one until the chunk ends.
 */
function consume<T extends tf.Tensor>(x: tf.Tensor, f: (x: tf.Tensor) => T): T {
  const y = tf.tidy(() => f(x));
  x.dispose();
  return y;
}

/** Rows [start, start + rows) of x, or x itself when that is all of it. */
function rowsOf<T extends tf.Tensor>(x: T, start: number, rows: number): T {
  if (start === 0 && rows === x.shape[0]) return x;
  const size = [rows, ...x.shape.slice(1)];
  return x.slice([start, ...size.slice(1).map(() => 0)], size) as T;
}

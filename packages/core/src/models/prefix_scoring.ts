/**
 * Scoring k candidate continuations (a classifier's labels) after each prompt, with the prompt run once: the
 * prompt's prefill writes its KV cache and gives the logits that score every label's first token; its cache rows
 * are copied to k rows; then the k labels' remaining tokens run as one batch of short continuations at the
 * prompt's position, every new token's logits read back. Work per example: P + k·(L − 1) tokens instead of
 * k·(P + L) when each candidate runs as a whole row.
 *
 * Prompts of equal length share a batch (E of them: E prefills, E·k continuation rows).
 *
 * Letters: P prompt tokens, k labels, L a label's tokens (Lmax the longest), E examples of a batch, V vocabulary.
 */
import { ShapeError } from "../errors.js";
import type { CausalLM } from "./causal_lm.js";
import { decodeEngine, type DecodeEngine } from "./decoder.js";

/** Continuation rows of a batch at most (E·k). */
const BATCH_ROWS = 64;
/** Tokens a batch holds at most (E·k·(P + Lmax)): the KV caches of a 0.5B model in a few hundred MiB. */
const BATCH_TOKENS = 8192;

export interface LabelScores {
  /** nll[e][j]: −log p(label j's tokens | prompt e), summed over the label's tokens. */
  nll: number[][];
  /** Tokens the model ran: every prompt once, and each continuation row's padded tokens. */
  tokens: number;
}

/** log Σ exp(row) − row[id]: one token's NLL from its logits. */
function tokenNll(row: Float32Array, id: number): number {
  let max = -Infinity;
  for (const z of row) max = Math.max(max, z);
  let sum = 0;
  for (const z of row) sum += Math.exp(z - max);
  return max + Math.log(sum) - row[id]!;
}

/**
 * Each label's NLL after each prompt, through the compiled decoder; undefined where it is not available (then
 * score whole rows, as `rowNlls` does). `labels` are token ids (with an EOS, if it should count), none empty.
 */
export async function prefixLabelNlls(
  lm: CausalLM,
  prompts: number[][],
  labels: number[][],
  signal?: AbortSignal,
): Promise<LabelScores | undefined> {
  if (labels.some((l) => l.length === 0))
    throw new ShapeError("label scoring: a label has no tokens.");
  const engine = decodeEngine(lm);
  if (!engine) return undefined;
  const out: LabelScores = { nll: prompts.map(() => []), tokens: 0 };
  try {
    const byLength = new Map<number, number[]>();
    prompts.forEach((p, e) => {
      if (p.length === 0)
        throw new ShapeError(`label scoring: prompt ${e} has no tokens.`);
      byLength.set(p.length, [...(byLength.get(p.length) ?? []), e]);
    });
    const k = labels.length;
    const Lmax = Math.max(...labels.map((l) => l.length));
    for (const [P, rows] of byLength) {
      if (P + Lmax - 1 > lm.dims.maxPositions)
        throw new ShapeError(
          `label scoring: prompt ${rows[0]} has ${P} tokens; with a label of ${Lmax} that is over the model's ` +
            `${lm.dims.maxPositions} positions.`,
        );
      const E = Math.max(
        1,
        Math.min(
          Math.floor(BATCH_ROWS / k),
          Math.floor(BATCH_TOKENS / (k * (P + Lmax))),
        ),
      );
      for (let at = 0; at < rows.length; at += E) {
        signal?.throwIfAborted();
        const batch = rows.slice(at, at + E);
        const nll = await scoreBatch(
          engine,
          batch.map((e) => prompts[e]!),
          labels,
          P + Lmax - 1,
        );
        batch.forEach((e, b) => (out.nll[e] = nll[b]!));
        out.tokens += batch.length * (P + (Lmax > 1 ? k * (Lmax - 1) : 0));
      }
    }
    return out;
  } finally {
    engine.dispose();
  }
}

/** nll[b][j] for prompts of one length P, over caches of S = P + Lmax − 1 positions. */
async function scoreBatch(
  engine: DecodeEngine,
  prompts: number[][],
  labels: number[][],
  S: number,
): Promise<number[][]> {
  const E = prompts.length;
  const k = labels.length;
  const P = prompts[0]!.length;
  const V = engine.vocabSize;
  const prefix = engine.shared(E, S);
  const first = await engine.run(prefix, prompts, 0);
  const nll = prompts.map((_, b) =>
    labels.map((l) => tokenNll(first.subarray(b * V, (b + 1) * V), l[0]!)),
  );
  const steps = Math.max(...labels.map((l) => l.length)) - 1;
  if (steps === 0) return nll;
  // One label: the prompt's own rows continue (a copy needs two buffers).
  const rows = k === 1 ? prefix : engine.shared(E * k, S);
  const copies =
    k === 1
      ? []
      : prompts.flatMap((_, b) =>
          labels.flatMap((_, j) => prefix.copyRow(b, rows, b * k + j)),
        );
  // Row b·k + j feeds label j's tokens but its last; padding (id 0) after a short label is never scored.
  const inputs = prompts.flatMap(() =>
    labels.map((l) =>
      Array.from({ length: steps }, (_, t) => (t < l.length - 1 ? l[t]! : 0)),
    ),
  );
  const logits = await engine.run(rows, inputs, P, { allRows: true, copies });
  prompts.forEach((_, b) =>
    labels.forEach((l, j) => {
      const r = b * k + j;
      for (let t = 0; t < l.length - 1; t++) {
        const at = (r * steps + t) * V;
        nll[b]![j]! += tokenNll(logits.subarray(at, at + V), l[t + 1]!);
      }
    }),
  );
  return nll;
}

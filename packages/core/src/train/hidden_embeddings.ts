/**
 * Text embeddings from a language model's own final hidden states, for the retrieval baseline's "hidden"
 * retriever: each text's mean over its tokens of the final (normed) hidden state, L2-normalised.
 *
 * Rows are batched by length and padded on the right. The decoder is causal, so a token never sees the padding
 * after it, and the mean is over the text's own tokens only. Letters: B batch, T tokens, C hidden size.
 */
import * as tf from "@tensorflow/tfjs";
import type { CausalLM } from "../models/causal_lm.js";
import type { Tokenizer } from "../models/tokenizer.js";
import { ShapeError } from "../errors.js";
import { embeddingRetriever, type Retriever } from "./retrieval.js";

/** What embedding uses of a model: a PretrainedModel (or a LoraModel's `base`, adapters as they are set). */
export interface HiddenStateModel {
  readonly lm: Pick<CausalLM, "hiddenStates" | "dims">;
}

export interface HiddenStateOptions {
  /** Texts run through the model at once. Default 16. */
  batchSize?: number;
}

/**
 * Each text's mean final hidden state, L2-normalised (a text of no tokens gives the zero vector). Texts longer
 * than the model's positions are embedded from their first `maxPositions` tokens. Every tensor is freed.
 *
 * @example
 * ```ts
 * const vectors = await hiddenStateEmbeddings(model, model.tokenizer!, ["the cat sat", "a dog ran"]);
 * vectors[0].length; // the hidden size
 * ```
 */
export async function hiddenStateEmbeddings(
  model: HiddenStateModel,
  tokenizer: Pick<Tokenizer, "encode">,
  texts: readonly string[],
  options: HiddenStateOptions = {},
): Promise<Float32Array[]> {
  const { maxPositions, vocabSize, hiddenSize } = model.lm.dims;
  const batchSize = options.batchSize ?? 16;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    throw new ShapeError(
      `hiddenStateEmbeddings: batchSize is ${batchSize}; expected an integer >= 1.`,
    );
  const ids = texts.map((text, i) => {
    const row = tokenizer.encode(text).slice(0, maxPositions);
    const bad = row.find((id) => !(id >= 0 && id < vocabSize));
    if (bad !== undefined)
      throw new ShapeError(
        `hiddenStateEmbeddings: text ${i} encodes to token id ${bad}, outside the model's vocabulary [0, ${vocabSize}).`,
      );
    return row;
  });
  // Similar lengths together: less padding to run.
  const order = ids
    .map((_, i) => i)
    .sort((a, b) => ids[a]!.length - ids[b]!.length);
  const out: Float32Array[] = texts.map(() => new Float32Array(hiddenSize));
  for (let start = 0; start < order.length; start += batchSize) {
    const batch = order.slice(start, start + batchSize);
    const vectors = await meanHidden(
      model,
      batch.map((i) => ids[i]!),
    );
    batch.forEach((i, b) =>
      out[i]!.set(vectors.subarray(b * hiddenSize, (b + 1) * hiddenSize)),
    );
  }
  return out;
}

/**
 * A retriever ("hidden") by cosine similarity of {@link hiddenStateEmbeddings}: `docs` are the training rows' texts,
 * `queries` every text `nearest` will be asked about (embedded now, in the same batches).
 *
 * @example
 * ```ts
 * const retriever = await hiddenStateRetriever(model, tok, trainTexts, testTexts);
 * retriever.nearest(testTexts[0], 4);
 * ```
 */
export async function hiddenStateRetriever(
  model: HiddenStateModel,
  tokenizer: Pick<Tokenizer, "encode">,
  docs: readonly string[],
  queries: readonly string[],
  options: HiddenStateOptions = {},
): Promise<Retriever> {
  const unique = [...new Set(queries)];
  const vectors = await hiddenStateEmbeddings(
    model,
    tokenizer,
    [...docs, ...unique],
    options,
  );
  const byText = new Map(unique.map((q, i) => [q, vectors[docs.length + i]!]));
  const embed = (query: string): Float32Array => {
    const v = byText.get(query);
    if (!v)
      throw new ShapeError(
        `hiddenStateRetriever: ${JSON.stringify(query.slice(0, 40))} was not among the queries it embedded; pass every test row's text.`,
      );
    return v;
  };
  return embeddingRetriever(vectors.slice(0, docs.length), embed, "hidden");
}

/** Rows of ids (not empty as a batch) -> their normalised mean hidden states, [B·C] flat. */
async function meanHidden(
  model: HiddenStateModel,
  rows: number[][],
): Promise<Float32Array> {
  const B = rows.length;
  const T = Math.max(1, ...rows.map((r) => r.length));
  // Padding id 0 is never seen by the text's own tokens (causal), and its positions weigh 0 in the mean.
  const padded = rows.map((r) => [
    ...r,
    ...new Array<number>(T - r.length).fill(0),
  ]);
  const weights = rows.flatMap((r) =>
    Array.from({ length: T }, (_, t) => (t < r.length ? 1 / r.length : 0)),
  );
  const pooled = tf.tidy(() => {
    const h = model.lm.hiddenStates(tf.tensor2d(padded, [B, T], "int32")); // [B, T, C]
    const mean = h.mul(tf.tensor3d(weights, [B, T, 1])).sum(1); // [B, C]
    const length = mean.norm("euclidean", 1, true).maximum(1e-12);
    return mean.div(length);
  });
  try {
    return (await pooled.data()) as Float32Array;
  } finally {
    pooled.dispose();
  }
}

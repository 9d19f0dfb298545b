/**
 * Retrieval for the retrieval-augmented baseline (see retrieval_rows.ts): which training rows are nearest a test
 * row, best first.
 *
 * - {@link bm25Retriever}: lexical. MiniSearch's default scoring (BM25+, k 1.2, b 0.7, d 0.5, times the number of
 *   distinct query terms a row matches), exact terms only (no prefix, no fuzzy). Terms are runs of letters or of
 *   digits, lower-cased, so "2038-04-01" is "2038", "04", "01": a date finds dates of the same year and month.
 * - {@link embeddingRetriever}: cosine similarity of vectors, e.g. the model's own mean hidden states
 *   (hidden_embeddings.ts).
 * - {@link retrievalText}: what text stands for a row: what the model is given, never the answer.
 *
 * Both retrievers order equal scores by row index, so a run is the same every time.
 */
import MiniSearch from "minisearch";
import type { Tokenizer } from "../models/tokenizer.js";
import { ConfigError, ShapeError } from "../errors.js";
import {
  IGNORE_INDEX,
  type DatasetFormat,
  type Example,
} from "./data/types.js";

/** A training row and how near it is to the query (higher is nearer). */
export interface Neighbour {
  /** Index into the rows the retriever was built on. */
  index: number;
  score: number;
}

/** Finds the training rows nearest a query text. */
export interface Retriever {
  /** For reports: "bm25", "hidden", ... */
  readonly name: string;
  /**
   * Up to k rows nearest `query`, best first, equal scores by row index; never a row of `exclude`. Fewer than k
   * when fewer rows match at all (BM25: rows with no term in common are no match).
   */
  nearest(query: string, k: number, exclude?: ReadonlySet<number>): Neighbour[];
}

/**
 * The terms BM25 indexes: runs of letters (with their combining marks) or of digits, lower-cased. Punctuation and
 * the boundary between letters and digits split terms.
 *
 * @example
 * ```ts
 * retrievalTerms("Date: 2038-04-01\nWritten out:"); // ["date", "2038", "04", "01", "written", "out"]
 * ```
 */
export function retrievalTerms(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{M}]+|\p{N}+/gu) ?? [];
}

/**
 * A BM25 retriever over `docs` (see the file header for the scoring and the terms).
 *
 * @example
 * ```ts
 * const r = bm25Retriever(train.map((e) => retrievalText(tok, e, "instruction")));
 * r.nearest("Date: 2038-04-01\nWritten out:", 4); // [{ index, score }, ...], best first
 * ```
 */
export function bm25Retriever(docs: readonly string[]): Retriever {
  const index = new MiniSearch<{ id: number; text: string }>({
    fields: ["text"],
    tokenize: retrievalTerms,
    // retrievalTerms already lower-cases; MiniSearch's default would too, this keeps one definition.
    processTerm: (term) => term,
    searchOptions: { prefix: false, fuzzy: false, combineWith: "OR" },
  });
  index.addAll(docs.map((text, id) => ({ id, text })));
  return {
    name: "bm25",
    nearest(query, k, exclude) {
      checkK(k);
      const hits = index
        .search(query)
        .map((hit) => ({ index: hit.id as number, score: hit.score }))
        .filter((hit) => !exclude?.has(hit.index));
      return best(hits, k);
    },
  };
}

/**
 * A retriever by cosine similarity between `embed(query)` and each row's vector (vectors need not be normalised;
 * a zero vector is similar to nothing, score 0). `embed` may look up precomputed vectors.
 *
 * @example
 * ```ts
 * const r = embeddingRetriever(trainVectors, (q) => testVectors.get(q)!, "hidden");
 * r.nearest(testText, 4);
 * ```
 */
export function embeddingRetriever(
  vectors: readonly Float32Array[],
  embed: (query: string) => Float32Array,
  name = "embedding",
): Retriever {
  const dims = vectors[0]?.length ?? 0;
  vectors.forEach((v, i) => {
    if (v.length !== dims)
      throw new ShapeError(
        `embeddingRetriever: vector ${i} has ${v.length} dimensions, vector 0 has ${dims}; embed every row alike.`,
      );
  });
  const norms = vectors.map(norm);
  return {
    name,
    nearest(query, k, exclude) {
      checkK(k);
      const q = embed(query);
      if (vectors.length > 0 && q.length !== dims)
        throw new ShapeError(
          `embeddingRetriever: the query's vector has ${q.length} dimensions, the rows' ${dims}.`,
        );
      const qNorm = norm(q);
      const hits: Neighbour[] = [];
      vectors.forEach((v, index) => {
        if (exclude?.has(index)) return;
        const scale = qNorm * norms[index]!;
        hits.push({ index, score: scale > 0 ? dot(q, v) / scale : 0 });
      });
      return best(hits, k);
    },
  };
}

/**
 * The text that stands for a row in retrieval, what the model is given and never its answer: the prompt
 * (instruction), the text alone (classification: the `text` field, else the prompt, which ends in "\nLabel:"),
 * the decoded row (completion). A row without its prompt text: the decoded tokens before its first loss token.
 *
 * @example
 * ```ts
 * retrievalText(tok, { prompt: "Q: two\nA:", completion: " 2", ... }, "instruction"); // "Q: two\nA:"
 * ```
 */
export function retrievalText(
  tokenizer: Pick<Tokenizer, "decode">,
  example: Example,
  format: DatasetFormat,
): string {
  const decode = (ids: number[]) =>
    tokenizer.decode(ids, { skipSpecialTokens: true });
  if (format === "completion") return decode(example.inputIds);
  if (format === "classification" && example.text !== undefined)
    return example.text;
  if (example.prompt !== undefined) return example.prompt;
  const firstLoss = example.labels.findIndex((l) => l !== IGNORE_INDEX);
  return decode(
    example.inputIds.slice(0, firstLoss < 0 ? undefined : firstLoss),
  );
}

function checkK(k: number): void {
  if (!Number.isSafeInteger(k) || k < 0)
    throw new ConfigError(
      `nearest: k is ${k}; expected an integer >= 0 (the rows to return).`,
    );
}

/** The k best, by score then by row index (a total order: the same result on every run). */
function best(hits: Neighbour[], k: number): Neighbour[] {
  return hits
    .sort((a, b) => b.score - a.score || a.index - b.index)
    .slice(0, k);
}

function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}

function norm(v: Float32Array): number {
  return Math.sqrt(dot(v, v));
}

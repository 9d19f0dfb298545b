/**
 * The retrieval baseline in the worker: core's retrievalEvaluate on the loaded splits, the base model scored with
 * each test row's k nearest training rows in its prompt. Its "hidden" retriever is core's hiddenStateRetriever
 * embedded a chunk of rows at a time, so that Stop and Skip scoring answer between chunks: embedding every
 * training row takes minutes where WebGPU runs on the CPU.
 */
import {
  ConfigError,
  embeddingRetriever,
  hiddenStateEmbeddings,
  retrievalEvaluate,
  retrievalRows,
  retrievalText,
  type DatasetFormat,
  type EvaluationResult,
  type Example,
  type LoraModel,
  type PretrainedModel,
  type RetrievalReport,
  type Retriever,
  type Tokenizer,
} from "@webtune/core";
import type { WorkerRetrievalOptions } from "./api.js";
import type { LoadedData } from "./data.js";

/** Rows embedded between two looks at the signal. */
const EMBED_CHUNK = 64;

/** What the baseline prompts: the base model under `peft`, the loaded training rows, the test rows scored. */
export interface RetrievalInputs {
  peft: LoraModel;
  model: PretrainedModel;
  data: LoadedData;
  test: Example[];
  format: DatasetFormat;
}

/** The retrieval baseline's scores and report (see TrainerApi.retrieval); the adapters are off throughout. */
export async function retrievalBaseline(
  c: RetrievalInputs,
  k: number,
  o: WorkerRetrievalOptions,
  signal: AbortSignal,
): Promise<{ result: EvaluationResult; report: RetrievalReport }> {
  const name = o.retriever ?? "bm25";
  if (name !== "bm25" && name !== "hidden")
    throw new ConfigError(
      `retriever is ${JSON.stringify(name)}; expected "bm25" (the words rows share) or "hidden" (the base model's hidden states).`,
    );
  const tok = c.model.tokenizer!;
  const how = {
    train: c.data.train,
    test: c.test,
    k,
    format: c.format,
    labels: c.data.labels,
    names: { k: "k", train: "the train split", ...o.names },
  };
  // A bad k is refused before any row is embedded.
  retrievalRows(tok, { ...how, test: [] });
  return c.peft.withAdaptersDisabled(async () => {
    const text = (e: Example) => retrievalText(tok, e, c.format);
    const retriever =
      name === "hidden"
        ? await hiddenRetriever(
            c.model,
            tok,
            c.data.train.map(text),
            c.test.map(text),
            signal,
          )
        : undefined;
    return retrievalEvaluate(c.peft, tok, { ...how, retriever, signal });
  });
}

/** core's hiddenStateRetriever over `docs` for `queries`, embedded EMBED_CHUNK texts at a time. */
async function hiddenRetriever(
  model: PretrainedModel,
  tok: Tokenizer,
  docs: string[],
  queries: string[],
  signal: AbortSignal,
): Promise<Retriever> {
  const unique = [...new Set(queries)];
  const texts = [...docs, ...unique];
  const vectors: Float32Array[] = [];
  for (let start = 0; start < texts.length; start += EMBED_CHUNK) {
    signal.throwIfAborted();
    const chunk = texts.slice(start, start + EMBED_CHUNK);
    vectors.push(...(await hiddenStateEmbeddings(model, tok, chunk)));
  }
  signal.throwIfAborted();
  const byText = new Map(unique.map((q, i) => [q, vectors[docs.length + i]!]));
  return embeddingRetriever(
    vectors.slice(0, docs.length),
    (query) => byText.get(query)!,
    "hidden",
  );
}

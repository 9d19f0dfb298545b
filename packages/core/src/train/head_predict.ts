/**
 * What a classification head answers for one text, as HF's pipelines give it:
 * - sequence classification ("text-classification"): each label's probability at the pooled position, best first;
 * - token classification ("token-classification" with aggregation "first"): each word's tag from its first
 *   subword, and the entities those tags spell (IOB2 spans).
 * Words are the text's whitespace-separated pieces with punctuation split off, as the shipped NER data is written.
 */
import * as tf from "@tensorflow/tfjs";
import type { ClassificationHead } from "../models/heads.js";
import { pooledPositions } from "../models/heads.js";
import type { HeadTokenizer } from "./data/head_examples.js";
import { alignTags, wordPredictions } from "./data/token_tags.js";
import { entitySpans } from "./ner_metrics.js";
import type { HeadScorer } from "./head_evaluate.js";

export interface HeadPrediction {
  task: ClassificationHead["task"];
  /** Sequence classification: every label with its probability, the most likely first. */
  scores?: { label: string; score: number }[];
  /** Token classification: the words and the tag of each. */
  words?: string[];
  tags?: string[];
  /** Token classification: the entities the tags spell (strict IOB2), with their words. */
  entities?: { type: string; text: string; start: number; end: number }[];
}

/** A text's words: whitespace-separated, punctuation split off ("Moses," -> "Moses", ","). */
export function splitWords(text: string): string[] {
  return text.match(/[\p{L}\p{N}]+(?:['’][\p{L}]+)*|[^\s\p{L}\p{N}]/gu) ?? [];
}

/**
 * Classifies `text` (seq-cls) or tags its words (token-cls) with `head`, the model's active head.
 *
 * @example
 * ```ts
 * const p = await predictWithHead(peft, model.tokenizer!, peft.head()!, "And Moses went to Egypt.");
 * console.log(p.entities); // [{ type: "PER", text: "Moses", ... }, { type: "LOC", text: "Egypt", ... }]
 * ```
 */
export async function predictWithHead(
  model: HeadScorer,
  tokenizer: HeadTokenizer,
  head: ClassificationHead,
  text: string,
): Promise<HeadPrediction> {
  if (head.task === "seq-cls") {
    const ids = tokenizer.encode(text);
    const probs = await rowProbabilities(model, ids);
    const at = pooledPositions([ids], head.padTokenId)[0]!;
    const L = head.numLabels;
    const scores = head.labels
      .map((label, i) => ({ label, score: probs[at * L + i]! }))
      .sort((a, b) => b.score - a.score);
    return { task: head.task, scores };
  }
  const words = splitWords(text);
  const none = new Map(head.labels.map((l, i) => [l, i]));
  const aligned = alignTags(
    { tokens: words, tags: words.map(() => "O"), line: 0 },
    (w) => tokenizer.encode(` ${w}`, { addSpecialTokens: false }),
    none,
    { labelSubwords: "first", prefix: tokenizer.encode("") },
  );
  const probs = await rowProbabilities(model, aligned.inputIds);
  const L = head.numLabels;
  const perToken = aligned.inputIds.map((_, t) => {
    let best = 0;
    for (let l = 1; l < L; l++)
      if (probs[t * L + l]! > probs[t * L + best]!) best = l;
    return best;
  });
  const tags = wordPredictions(aligned.wordIds, perToken, words.length).map(
    (i) => head.labels[i]!,
  );
  const entities = entitySpans(tags, "strict").map((s) => ({
    ...s,
    text: words.slice(s.start, s.end).join(" "),
  }));
  return { task: head.task, words, tags, entities };
}

/** Softmax over the head's labels at every position of one row: [T·L]. */
async function rowProbabilities(
  model: HeadScorer,
  ids: number[],
): Promise<Float32Array> {
  const probs = tf.tidy(() => tf.softmax(model.logits([ids])));
  const data = (await probs.data()) as Float32Array;
  probs.dispose();
  return data;
}

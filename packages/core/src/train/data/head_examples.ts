/**
 * Examples for a classification head (models/heads.ts): ids and per-token targets that the head's loss reads
 * unshifted.
 * - Sequence classification: the row's text alone, tokenized as HF's tokenizer(text) does (special tokens
 *   included, no template), with the label id at the pooled position (the rightmost non-pad token).
 * - Token classification: `{"tokens","tags"}` rows or CoNLL text, each word encoded as `" " + word` (HF's
 *   `is_split_into_words` with `add_prefix_space`) after the tokenizer's leading special tokens, the tags aligned
 *   to subwords (token_tags.ts).
 */
import { FormatError } from "../../errors.js";
import type { Tokenizer } from "../../models/tokenizer.js";
import { sequenceTargets } from "../../models/heads.js";
import {
  alignTags,
  checkKnownTags,
  checkTagScheme,
  parseConll,
  parseTaggedJsonl,
  tagVocabulary,
  type AlignOptions,
  type TaggedRow,
} from "./token_tags.js";
import type { CleaningReport, Example } from "./types.js";

/** What head examples use of a tokenizer. */
export type HeadTokenizer = Pick<Tokenizer, "encode">;

/**
 * A classification example (from buildDataset) as a sequence-classification head's: its text's ids, cut to
 * `maxLength`, with its label's id at the position HF pools.
 */
export function sequenceExample(
  example: Example,
  tokenizer: HeadTokenizer,
  labels: readonly string[],
  options: {
    maxLength: number;
    padId: number | undefined;
    /** Counts the rows cut to maxLength, when given (a cleaning report's `truncated`). */
    counts?: { truncated: number };
  },
): Example {
  const id = labels.indexOf(example.label ?? "");
  if (example.text === undefined || id < 0)
    throw new FormatError(
      `line ${example.line}: a sequence-classification row needs a text and one of the labels ${labels.join(", ")}` +
        `${example.label === undefined ? "" : `, got "${example.label}"`}.`,
    );
  const all = tokenizer.encode(example.text);
  if (all.length > options.maxLength && options.counts)
    options.counts.truncated++;
  const inputIds = all.slice(0, options.maxLength);
  const [targets] = sequenceTargets([inputIds], [id], options.padId);
  // The head reads the text alone, and its answer is the label: no prompt template around either.
  return {
    ...example,
    inputIds,
    labels: targets!,
    prompt: example.text,
    completion: example.label,
  };
}

/** A token-classification file read: its rows as examples, the tag list, and what was kept. */
export interface TaggedDataset {
  examples: Example[];
  /** The labels (tags) in id order: "O", then B-/I- of each type. */
  labels: string[];
  report: CleaningReport;
}

/**
 * Reads a token-classification file (JSONL `{"tokens","tags"}` rows, or CoNLL text for other names) and aligns
 * it to the tokenizer. `labels` (the training file's) must cover every tag of an evaluation file; without it, the
 * labels are this file's own.
 *
 * @example
 * ```ts
 * const train = taggedDataset(text, tokenizer, { source: "ner/train.jsonl", maxLength: 128, labelSubwords: "first" });
 * const test = taggedDataset(testText, tokenizer, { source: "ner/test.jsonl", maxLength: 128, labelSubwords: "first", labels: train.labels });
 * ```
 */
export function taggedDataset(
  text: string,
  tokenizer: HeadTokenizer,
  options: {
    source: string;
    maxLength: number;
    labelSubwords: AlignOptions["labelSubwords"];
    labels?: string[];
  },
): TaggedDataset {
  const { source } = options;
  const rows = /\.jsonl?$/i.test(source)
    ? parseTaggedJsonl(text, source)
    : parseConll(text, source);
  if (rows.length === 0)
    throw new FormatError(`${source}: no tagged rows to read.`);
  checkTagScheme(rows, source);
  const labels = options.labels ?? tagVocabulary(rows);
  checkKnownTags(rows, labels, source);
  const label2id = new Map(labels.map((tag, id) => [tag, id]));
  // The tokenizer's leading special tokens (a BOS), as it puts them before any text.
  const prefix = tokenizer.encode("");
  const encodeWord = (word: string) =>
    tokenizer.encode(` ${word}`, { addSpecialTokens: false });
  let truncated = 0;
  const examples = rows.map((row: TaggedRow): Example => {
    const aligned = alignTags(row, encodeWord, label2id, {
      labelSubwords: options.labelSubwords,
      prefix,
    });
    const cut = aligned.inputIds.length > options.maxLength;
    if (cut) truncated++;
    const n = Math.min(aligned.inputIds.length, options.maxLength);
    const wordIds = aligned.wordIds.slice(0, n);
    // Words cut off entirely are not scored: a truncated row keeps the tags of the words it still holds.
    const words = cut
      ? Math.max(-1, ...wordIds.map((w) => w ?? -1)) + 1
      : row.tags.length;
    return {
      inputIds: aligned.inputIds.slice(0, n),
      labels: aligned.labels.slice(0, n),
      wordIds,
      tags: row.tags.slice(0, words),
      line: row.line,
    };
  });
  return {
    examples,
    labels,
    report: {
      total: rows.length,
      kept: rows.length,
      dropped: { empty: 0, duplicate: 0, tooLong: 0, malformed: 0 },
      truncated,
      rows: [],
    },
  };
}

/**
 * Token-classification (NER) data: words with IOB2 tags, as CoNLL files and Hugging Face datasets hold them. Read
 * from JSONL or CoNLL columns, check the tags, build the label list, and align word tags to subword tokens as
 * Hugging Face's token-classification example (`run_ner.py`) does.
 */
import { FormatError, ShapeError } from "../../errors.js";
import { splitLines } from "./text_input.js";
import { IGNORE_INDEX, RowFormatError, type RowProblem } from "./types.js";

/**
 * A tagged row at fault, named by file and line. Unlike rowError's, the message offers no skipping: a tagged
 * file is read whole or not at all.
 */
function rowError(
  source: string,
  line: number,
  problem: RowProblem,
  cause?: unknown,
): RowFormatError {
  return new RowFormatError(
    `${source}, line ${line}: ${problem.message.replace(/\.\s*$/, "")}. Fix the row.`,
    { source, line, field: problem.field, cause },
  );
}

/** One sentence: its words and one tag per word. */
export interface TaggedRow {
  tokens: string[];
  tags: string[];
  /** The 1-based line of the file where the row starts. */
  line: number;
}

/** A tag split into its IOB2 prefix and entity type (`"O"` has no type). */
export type TagParts =
  { prefix: "O"; type: "" } | { prefix: "B" | "I"; type: string };

const IOB2_TAG = /^([BI])-(.+)$/;
const OUTSIDE: TagParts = { prefix: "O", type: "" };

/**
 * Splits an IOB2 tag, or returns undefined for anything else (IOBES's `E-`/`S-`, a bare `B`, `B_PER`, ...).
 *
 * @example
 * ```ts
 * splitTag("B-PER"); // { prefix: "B", type: "PER" }
 * splitTag("S-PER"); // undefined
 * ```
 */
export function splitTag(tag: string): TagParts | undefined {
  if (tag === "O") return OUTSIDE;
  const match = IOB2_TAG.exec(tag);
  if (!match) return undefined;
  return { prefix: match[1] as "B" | "I", type: match[2]! };
}

/**
 * Reads JSONL with one sentence per line, `{"tokens": [...], "tags": [...]}`. Hugging Face's field name
 * `ner_tags` is read too when it holds tag names. Blank lines are skipped.
 *
 * @throws RowFormatError naming the file and line of a row that is not valid JSON, lacks a field, holds a
 *   non-string entry (or tag ids), is empty, or has a different number of tokens and tags.
 * @example
 * ```ts
 * parseTaggedJsonl('{"tokens": ["Ada", "Lovelace"], "tags": ["B-PER", "I-PER"]}', "train.jsonl");
 * // [{ tokens: ["Ada", "Lovelace"], tags: ["B-PER", "I-PER"], line: 1 }]
 * ```
 */
export function parseTaggedJsonl(text: string, source: string): TaggedRow[] {
  const rows: TaggedRow[] = [];
  splitLines(stripBom(text)).forEach((lineText, index) => {
    if (lineText.trim() === "") return;
    rows.push(readJsonRow(lineText, source, index + 1));
  });
  return rows;
}

function readJsonRow(text: string, source: string, line: number): TaggedRow {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    const message = `not valid JSON (${why}); JSONL needs one complete object per line`;
    throw rowError(source, line, { message }, e);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    const found = Array.isArray(value) ? "an array" : JSON.stringify(value);
    throw rowError(source, line, {
      message: `holds ${found}; expected a JSON object {"tokens": [...], "tags": [...]}`,
    });
  }
  const record = value as Record<string, unknown>;
  // "tags" is ours; "ner_tags" is what Hugging Face's NER datasets (conll2003, wnut_17, ...) call it.
  const tagField =
    "tags" in record || !("ner_tags" in record) ? "tags" : "ner_tags";
  const tokens = stringList(record, "tokens", source, line);
  const tags = stringList(record, tagField, source, line);
  if (tokens.length === 0) {
    throw rowError(source, line, {
      message: `"tokens" is empty; a row needs at least one word`,
      field: "tokens",
    });
  }
  if (tokens.length !== tags.length) {
    throw rowError(source, line, {
      message: `${tokens.length} tokens but ${tags.length} tags; each word needs exactly one tag`,
      field: tagField,
    });
  }
  return { tokens, tags, line };
}

/** The field as an array of strings, or a row error saying what it holds instead. */
function stringList(
  record: Record<string, unknown>,
  field: string,
  source: string,
  line: number,
): string[] {
  const fail = (message: string) => rowError(source, line, { message, field });
  const value = record[field];
  if (value === undefined) {
    const also = field === "tags" ? ` (nor Hugging Face's "ner_tags")` : "";
    throw fail(
      `has no "${field}" field${also}; expected {"tokens": [...], "tags": [...]}`,
    );
  }
  if (!Array.isArray(value)) {
    throw fail(
      `field "${field}" is ${JSON.stringify(value)}; expected an array of strings`,
    );
  }
  const bad = value.findIndex((entry) => typeof entry !== "string");
  if (bad < 0) return value as string[];
  // HF datasets store tags as ClassLabel ids; the names live in the dataset's features, not in the rows.
  if (field !== "tokens" && typeof value[bad] === "number") {
    throw fail(
      `"${field}" holds tag ids (${JSON.stringify(value[bad])}), not tag names; map the ids to their names first ` +
        `(for a Hugging Face dataset, features["${field}"].feature.names) and write strings such as "B-PER"`,
    );
  }
  throw fail(
    `"${field}" entry ${bad + 1} is ${JSON.stringify(value[bad])}; expected a string`,
  );
}

/**
 * Reads CoNLL columns: one word per line, whitespace-separated columns, the word first and its tag last (so
 * CoNLL-2003's `word POS chunk NER` and two-column `word tag` files both read). Blank lines end sentences;
 * `-DOCSTART-` lines are skipped (and end a sentence, as in Hugging Face's conll2003 loader).
 *
 * @throws RowFormatError naming the file and line of a line with a single column.
 * @example
 * ```ts
 * parseConll("-DOCSTART- -X- O\n\nAda NNP B-PER\nsaid VBD O\n", "train.conll");
 * // [{ tokens: ["Ada", "said"], tags: ["B-PER", "O"], line: 3 }]
 * ```
 */
export function parseConll(text: string, source: string): TaggedRow[] {
  const rows: TaggedRow[] = [];
  let current: TaggedRow | undefined;
  splitLines(stripBom(text)).forEach((lineText, index) => {
    const line = index + 1;
    const columns = lineText.trim().split(/\s+/);
    const word = columns[0]!;
    if (word === "" || word === "-DOCSTART-") {
      current = undefined;
      return;
    }
    if (columns.length < 2) {
      throw rowError(source, line, {
        message: `has one column ("${word}"); CoNLL needs the word first and its tag last, separated by whitespace`,
      });
    }
    if (current === undefined) {
      current = { tokens: [], tags: [], line };
      rows.push(current);
    }
    current.tokens.push(word);
    current.tags.push(columns[columns.length - 1]!);
  });
  return rows;
}

/**
 * Checks that every tag is IOB2: `O`, `B-TYPE` or `I-TYPE`. An `I-X` with no `B-X` before it is allowed (the
 * metrics' default mode reads it as the start of an entity, as seqeval does).
 *
 * @throws RowFormatError naming the row's line, the word and the tag.
 * @example
 * ```ts
 * checkTagScheme(parseConll(text, "train.conll"), "train.conll"); // throws on e.g. "S-PER"
 * ```
 */
export function checkTagScheme(
  rows: readonly TaggedRow[],
  source: string,
): void {
  for (const row of rows) {
    const bad = row.tags.findIndex((tag) => splitTag(tag) === undefined);
    if (bad < 0) continue;
    throw rowError(source, row.line, {
      message:
        `${describeWord(row, bad)} has tag ${JSON.stringify(row.tags[bad])}, which is not IOB2: tags must be "O", ` +
        `"B-TYPE" or "I-TYPE". Convert other schemes (IOBES, BILOU, IOB1) to IOB2 first`,
      field: "tags",
    });
  }
}

/**
 * The label list in a stable order: `"O"`, then for each entity type in sorted order its `B-` and `I-` tags (both,
 * even when the data holds only one, so that a model can predict either). Expects rows that passed
 * {@link checkTagScheme}.
 *
 * @example
 * ```ts
 * tagVocabulary([{ tokens: ["Ada", "in", "Paris"], tags: ["B-PER", "O", "I-LOC"], line: 1 }]);
 * // ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
 * ```
 */
export function tagVocabulary(rows: readonly TaggedRow[]): string[] {
  const types = new Set<string>();
  for (const row of rows) {
    for (const tag of row.tags) {
      const parts = splitTag(tag);
      if (parts === undefined) {
        throw new FormatError(
          `tag ${JSON.stringify(tag)} on line ${row.line} is not IOB2; run checkTagScheme on the rows first`,
        );
      }
      if (parts.prefix !== "O") types.add(parts.type);
    }
  }
  return ["O", ...[...types].sort().flatMap((t) => [`B-${t}`, `I-${t}`])];
}

/**
 * Checks that every tag is one of `labels`: test data with a tag that the training data never had would need an
 * output the model does not have.
 *
 * @throws RowFormatError naming the row's line, the word, the tag and the known labels.
 * @example
 * ```ts
 * const labels = tagVocabulary(trainRows);
 * checkKnownTags(testRows, labels, "test.jsonl");
 * ```
 */
export function checkKnownTags(
  rows: readonly TaggedRow[],
  labels: readonly string[],
  source: string,
): void {
  const known = new Set(labels);
  for (const row of rows) {
    const bad = row.tags.findIndex((tag) => !known.has(tag));
    if (bad < 0) continue;
    throw rowError(source, row.line, {
      message:
        `${describeWord(row, bad)} has tag ${JSON.stringify(row.tags[bad])}, which the training data never has ` +
        `(its labels: ${labels.join(", ")}); the model has no output for it. Add training rows with it, or map it ` +
        `to a known tag`,
      field: "tags",
    });
  }
}

/** How subword tokens are labelled and what goes before the words. */
export interface AlignOptions {
  /**
   * "first": the first subword of a word gets its label and the rest -100 (HF's default); "all": every subword
   * gets the word's label, except that continuation subwords of a B-X word get I-X (HF's label_all_tokens with
   * b_to_i_label).
   */
  labelSubwords: "first" | "all";
  /** Token ids put before the words (e.g. a BOS), labelled -100. */
  prefix?: number[];
}

/** A row as model input: token ids, one label per token, and the word each token came from. */
export interface AlignedTags {
  inputIds: number[];
  /** The label id of each token, or -100 (no loss) for prefix tokens and, with "first", continuation subwords. */
  labels: number[];
  /** Hugging Face's `word_ids()`: the index of each token's word, null for prefix tokens. */
  wordIds: (number | null)[];
}

/**
 * Encodes each word and labels its subword tokens, as Hugging Face's token-classification example does with
 * `is_split_into_words`. `encodeWord` encodes one word (e.g. `" " + word` with the model's tokenizer, as
 * `add_prefix_space` does).
 *
 * @throws FormatError for a word that encodes to no tokens or a tag missing from `label2id`.
 * @example
 * ```ts
 * const label2id = new Map(tagVocabulary(rows).map((tag, id) => [tag, id]));
 * const { inputIds, labels } = alignTags(row, (w) => tokenizer.encode(" " + w), label2id, {
 *   labelSubwords: "first",
 *   prefix: [tokenizer.bosTokenId],
 * });
 * ```
 */
export function alignTags(
  row: TaggedRow,
  encodeWord: (word: string, index: number) => number[],
  label2id: ReadonlyMap<string, number>,
  options: AlignOptions,
): AlignedTags {
  const prefix = options.prefix ?? [];
  const inputIds = [...prefix];
  const labels = prefix.map(() => IGNORE_INDEX);
  const wordIds: (number | null)[] = prefix.map(() => null);
  row.tokens.forEach((word, w) => {
    const ids = encodeWord(word, w);
    if (ids.length === 0) {
      throw new FormatError(
        `line ${row.line}: ${describeWord(row, w)} encodes to no tokens, so its tag cannot be learned; remove ` +
          `or replace the word`,
      );
    }
    const [first, rest] = subwordLabels(
      row,
      w,
      label2id,
      options.labelSubwords,
    );
    ids.forEach((id, k) => {
      inputIds.push(id);
      labels.push(k === 0 ? first : rest);
      wordIds.push(w);
    });
  });
  return { inputIds, labels, wordIds };
}

/** The label of a word's first subword and of its other subwords. */
function subwordLabels(
  row: TaggedRow,
  w: number,
  label2id: ReadonlyMap<string, number>,
  labelSubwords: AlignOptions["labelSubwords"],
): [number, number] {
  const tag = row.tags[w]!;
  const id = label2id.get(tag);
  if (id === undefined) {
    throw new FormatError(
      `line ${row.line}: ${describeWord(row, w)} has tag ${JSON.stringify(tag)}, which has no label id; build ` +
        `label2id from tagVocabulary and check the rows with checkKnownTags`,
    );
  }
  if (labelSubwords === "first") return [id, IGNORE_INDEX];
  // HF's b_to_i_label: a B-X word's later pieces are inside the entity; it keeps B-X when there is no I-X label.
  const parts = splitTag(tag);
  const inside =
    parts?.prefix === "B" ? label2id.get(`I-${parts.type}`) : undefined;
  return [id, inside ?? id];
}

/**
 * The prediction for each word, taken from its first subword token (how evaluation maps token predictions back
 * to words, matching the "first" labelling).
 *
 * @throws ShapeError when the lengths differ or a word has no token (e.g. the sequence was cut; cut the words and
 *   their gold tags to those that fit before scoring).
 * @example
 * ```ts
 * wordPredictions([null, 0, 0, 1], [7, 3, 4, 0], 2); // [3, 0]
 * ```
 */
export function wordPredictions(
  wordIds: readonly (number | null)[],
  tokenPredictions: readonly number[],
  numWords: number,
): number[] {
  if (wordIds.length !== tokenPredictions.length) {
    throw new ShapeError(
      `${wordIds.length} word ids but ${tokenPredictions.length} token predictions; pass one prediction per ` +
        `token of the aligned input`,
    );
  }
  const words = new Array<number | undefined>(numWords).fill(undefined);
  wordIds.forEach((w, t) => {
    if (w === null || words[w] !== undefined) return;
    if (w < 0 || w >= numWords) {
      throw new ShapeError(
        `token ${t} has word index ${w}, but there are ${numWords} words`,
      );
    }
    words[w] = tokenPredictions[t];
  });
  const missing = words.indexOf(undefined);
  if (missing >= 0) {
    throw new ShapeError(
      `word index ${missing} (of ${numWords} words) has no token (was the sequence cut?); score only the words that have tokens`,
    );
  }
  return words as number[];
}

/** "word 3 ("Paris")", 1-based, for messages. */
function describeWord(row: TaggedRow, w: number): string {
  return `word ${w + 1} (${JSON.stringify(row.tokens[w])})`;
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Entity-level precision, recall and F1 for token classification (NER), as the Python library seqeval computes
 * them. Tags are IOB2 (`O`, `B-TYPE`, `I-TYPE`); entities are spans of words, and a predicted entity is correct
 * only when a gold entity has the same type, start and end in the same sentence.
 *
 * Two ways to read entities from tags, seqeval's two modes:
 * - `"default"`: seqeval's default, conlleval-compatible chunking (`get_entities`): an `I-X` after `O` or after
 *   another type starts an entity, and `B-PER I-LOC` is two entities.
 * - `"strict"`: seqeval's `mode="strict", scheme=IOB2`: an entity is a `B-X` followed by any `I-X` of the same
 *   type; an `I-X` that does not continue one is no entity at all.
 *
 * Scores, per type and micro-averaged over all entities:
 *   precision = correct / predicted   (0 when nothing is predicted)
 *   recall    = correct / support     (0 when there is no gold entity)
 *   f1        = 2·P·R / (P + R)       (0 when P + R = 0)
 * which is seqeval's `zero_division="warn"` default (0, and a warning there). Macro values are unweighted means of
 * the per-type values over the types found in gold or predictions.
 */
import { FormatError, ShapeError } from "../errors.js";
import { splitTag, type TagParts } from "./data/token_tags.js";

/** How entities are read from tags: seqeval's default chunking, or its strict IOB2 mode. */
export type NerMode = "default" | "strict";

/** An entity: its type and the words it spans, `start` included, `end` excluded. */
export interface EntitySpan {
  type: string;
  start: number;
  end: number;
}

/** Precision, recall and F1, with the counts they come from. */
export interface EntityScores {
  precision: number;
  recall: number;
  f1: number;
  /** Gold entities. */
  support: number;
  /** Predicted entities. */
  predicted: number;
  /** Predicted entities that match a gold entity exactly. */
  correct: number;
}

/** Entity-level scores: micro-averaged, macro-averaged, and per entity type. */
export interface NerMetrics {
  /** Over all entities together (seqeval's default `average="micro"`). */
  micro: EntityScores;
  /** Unweighted means of the per-type values (seqeval's `average="macro"`); 0 when there is no type. */
  macro: { precision: number; recall: number; f1: number };
  /** Each entity type found in gold or predictions, in sorted order. */
  perType: Record<string, EntityScores>;
  mode: NerMode;
}

const OUTSIDE: TagParts = { prefix: "O", type: "" };

/**
 * The entities in one sentence's tags.
 *
 * @throws FormatError for a tag that is not IOB2.
 * @example
 * ```ts
 * entitySpans(["B-PER", "I-PER", "O", "I-LOC"], "default"); // [PER 0..2, LOC 3..4]
 * entitySpans(["B-PER", "I-PER", "O", "I-LOC"], "strict"); // [PER 0..2]
 * ```
 */
export function entitySpans(
  tags: readonly string[],
  mode: NerMode,
): EntitySpan[] {
  return spansOf(tags, mode, "");
}

function spansOf(
  tags: readonly string[],
  mode: NerMode,
  where: string,
): EntitySpan[] {
  const parts = tags.map((tag, i) => {
    const split = splitTag(tag);
    if (split === undefined) {
      throw new FormatError(
        `${where}tag ${i} is ${JSON.stringify(tag)}, which is not IOB2; tags must be "O", "B-TYPE" or "I-TYPE"`,
      );
    }
    return split;
  });
  return mode === "strict" ? strictSpans(parts) : defaultSpans(parts);
}

/** seqeval's `get_entities`: walk the tags plus a closing `O`, ending and starting chunks between neighbours. */
function defaultSpans(parts: readonly TagParts[]): EntitySpan[] {
  const spans: EntitySpan[] = [];
  let prev = OUTSIDE;
  let begin = 0;
  [...parts, OUTSIDE].forEach((tag, i) => {
    if (endsChunk(prev, tag))
      spans.push({ type: prev.type, start: begin, end: i });
    if (startsChunk(prev, tag)) begin = i;
    prev = tag;
  });
  return spans;
}

/** seqeval's `end_of_chunk`, for B/I/O tags: an entity ends unless an I- of its own type follows. */
function endsChunk(prev: TagParts, tag: TagParts): boolean {
  if (prev.prefix === "O") return false;
  return tag.prefix !== "I" || tag.type !== prev.type;
}

/** seqeval's `start_of_chunk`, for B/I/O tags: a B-, or an I- that does not continue the entity before it. */
function startsChunk(prev: TagParts, tag: TagParts): boolean {
  if (tag.prefix === "B") return true;
  return tag.prefix === "I" && (prev.prefix === "O" || prev.type !== tag.type);
}

/** seqeval's `Tokens.entities` with IOB2: a B-X and the I-X that follow it; stray I- tags start nothing. */
function strictSpans(parts: readonly TagParts[]): EntitySpan[] {
  const spans: EntitySpan[] = [];
  let i = 0;
  while (i < parts.length) {
    const tag = parts[i]!;
    if (tag.prefix !== "B") {
      i++;
      continue;
    }
    let end = i + 1;
    while (parts[end]?.prefix === "I" && parts[end]!.type === tag.type) end++;
    spans.push({ type: tag.type, start: i, end });
    i = end;
  }
  return spans;
}

/**
 * Entity-level precision, recall and F1 of predicted tags against gold tags, as seqeval's
 * `classification_report` gives them (`mode="strict", scheme=IOB2` by default here, or seqeval's default mode).
 *
 * @throws ShapeError when the sentence counts, or the lengths of a sentence, differ; FormatError for a tag that is
 *   not IOB2.
 * @example
 * ```ts
 * // seqeval's README example: MISC is predicted one word too early, PER is right.
 * const m = nerMetrics(
 *   [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
 *   [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
 *   "default",
 * );
 * m.micro.f1; // 0.5
 * m.perType.MISC.f1; // 0
 * ```
 */
export function nerMetrics(
  gold: readonly (readonly string[])[],
  predicted: readonly (readonly string[])[],
  mode: NerMode = "strict",
): NerMetrics {
  checkShapes(gold, predicted);
  const counts = new Map<
    string,
    { support: number; predicted: number; correct: number }
  >();
  const countsOf = (type: string) => {
    let c = counts.get(type);
    if (c === undefined)
      counts.set(type, (c = { support: 0, predicted: 0, correct: 0 }));
    return c;
  };
  gold.forEach((goldTags, s) => {
    const goldSpans = spansOf(goldTags, mode, `gold sentence index ${s}: `);
    const predSpans = spansOf(
      predicted[s]!,
      mode,
      `predicted sentence index ${s}: `,
    );
    const goldKeys = new Set(goldSpans.map(spanKey));
    for (const span of goldSpans) countsOf(span.type).support++;
    for (const span of predSpans) {
      const c = countsOf(span.type);
      c.predicted++;
      if (goldKeys.has(spanKey(span))) c.correct++;
    }
  });
  const types = [...counts.keys()].sort();
  const perType = Object.fromEntries(
    types.map((type) => [type, scores(counts.get(type)!)]),
  );
  const total = { support: 0, predicted: 0, correct: 0 };
  for (const c of counts.values()) {
    total.support += c.support;
    total.predicted += c.predicted;
    total.correct += c.correct;
  }
  const typeScores = Object.values(perType);
  const macro = {
    precision: mean(typeScores.map((t) => t.precision)),
    recall: mean(typeScores.map((t) => t.recall)),
    f1: mean(typeScores.map((t) => t.f1)),
  };
  return { micro: scores(total), macro, perType, mode };
}

function checkShapes(
  gold: readonly (readonly string[])[],
  predicted: readonly (readonly string[])[],
): void {
  if (gold.length !== predicted.length) {
    throw new ShapeError(
      `gold has ${gold.length} sentences but predicted has ${predicted.length}; pass one predicted tag ` +
        `sequence per gold sentence, in the same order`,
    );
  }
  gold.forEach((goldTags, s) => {
    const predTags = predicted[s]!;
    if (goldTags.length !== predTags.length) {
      throw new ShapeError(
        `sentence index ${s}: gold has ${goldTags.length} tags but predicted has ${predTags.length}; predict one tag ` +
          `per word (map token predictions to words with wordPredictions)`,
      );
    }
  });
}

function spanKey(span: EntitySpan): string {
  return `${span.type}\u0000${span.start}:${span.end}`;
}

/** P, R and F1 from counts, with seqeval's zero_division default: 0 where a denominator is 0. */
function scores(c: {
  support: number;
  predicted: number;
  correct: number;
}): EntityScores {
  const precision = c.predicted === 0 ? 0 : c.correct / c.predicted;
  const recall = c.support === 0 ? 0 : c.correct / c.support;
  // seqeval computes F from P and R (not from the counts), so the floats match its own.
  const f1 =
    precision + recall === 0
      ? 0
      : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1, ...c };
}

function mean(values: readonly number[]): number {
  return values.length === 0
    ? 0
    : values.reduce((a, b) => a + b, 0) / values.length;
}

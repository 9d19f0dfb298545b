/**
 * EDA, "Easy Data Augmentation" (Wei & Zou 2019): new training texts from old ones by four word-level operations,
 * synonym replacement, random insertion, random swap and random deletion, each changing about `alpha` of the
 * words. Seeded per row, so a row's variants are the same whatever the other rows are.
 */
import { ConfigError } from "../../../errors.js";
import { checkInteger, mulberry32, shuffled, streamSeed } from "../random.js";
import type { Lexicon } from "./lexicon.js";
import { STOP_WORDS } from "./stop_words.js";
import {
  deleteWords,
  detokenize,
  matchCase,
  tokenize,
  wordPositions,
  type Token,
} from "./words.js";

/** EDA's operations, in the paper's order. */
export const EDA_OPS = ["synonym", "insert", "swap", "delete"] as const;
export type EdaOp = (typeof EDA_OPS)[number];

export interface AugmentOptions {
  /** The operations to apply, in order, each once. */
  ops: readonly EdaOp[];
  /** EDA's alpha, the share of words changed, in (0, 1]: n = max(1, round(alpha·words)); deletion's p. Default 0.1. */
  alpha?: number;
  /** Synonyms for "synonym" and "insert"; required by them. */
  lexicon?: Lexicon;
  /** Uniform numbers in [0, 1): `Math.random`, or a seeded generator for repeatable output. */
  random: () => number;
}

export interface EdaOptions {
  /** How many variants to make (fewer when the text has fewer distinct ones). */
  count: number;
  /** EDA's alpha, as in {@link AugmentOptions.alpha}. Default 0.1. */
  alpha?: number;
  /** The operations to cycle through, one a variant. Default: all four, which needs `lexicon`. */
  ops?: readonly EdaOp[];
  /** Synonyms for "synonym" and "insert"; required by them. */
  lexicon?: Lexicon;
  /** Integer seed of the whole augmentation. */
  seed: number;
  /** The row's index in its dataset: with `seed`, it seeds this row's variants alone. */
  rowIndex: number;
}

const DEFAULT_ALPHA = 0.1;
const EDA_STREAM = 0xedaa;
// Draws per operation before a variant slot gives up on it (its results so far were all seen already).
const TRIES = 5;

/**
 * Applies `ops` to a text, in order. Words keep their punctuation and a replaced word keeps its case (`Job` ->
 * `Occupation`); whitespace becomes single spaces.
 *
 * @throws ConfigError for an unknown op, alpha out of (0, 1], or "synonym"/"insert" without a lexicon.
 *
 * @example
 * ```ts
 * augmentText("A big dog barked.", { ops: ["synonym"], alpha: 0.5, lexicon, random: Math.random });
 * // "A large dog barked." (of these words, WordNet's lexicon has synonyms for "big" only)
 * ```
 */
export function augmentText(text: string, options: AugmentOptions): string {
  const alpha = options.alpha ?? DEFAULT_ALPHA;
  checkEdaOptions(options.ops, alpha, options.lexicon);
  return applyOps(
    tokenize(text),
    options.ops,
    alpha,
    options.lexicon,
    options.random,
  );
}

/**
 * Up to `count` distinct variants of a text, none equal to it (after whitespace normalisation). Variant k uses one
 * op, `ops[k % ops.length]`, as EDA does; when its draws only repeat earlier texts, the next ops are tried. The
 * randomness comes from (seed, rowIndex) alone.
 *
 * @throws ConfigError for bad options, or "synonym"/"insert" without a lexicon.
 *
 * @example
 * ```ts
 * const lexicon = parseLexicon(tsvText, "synonyms.tsv");
 * edaVariants("You will find great happiness in a new job.", { count: 3, lexicon, seed: 0, rowIndex: 0 });
 * ```
 */
export function edaVariants(text: string, options: EdaOptions): string[] {
  const { count, seed, rowIndex, lexicon } = options;
  const ops = options.ops ?? EDA_OPS;
  const alpha = options.alpha ?? DEFAULT_ALPHA;
  checkInteger(count, "EDA count", 0);
  checkInteger(seed, "EDA seed");
  checkInteger(rowIndex, "EDA rowIndex", 0);
  checkEdaOptions(ops, alpha, lexicon);
  const random = mulberry32(streamSeed(seed, streamSeed(rowIndex, EDA_STREAM)));
  const tokens = tokenize(text);
  const seen = new Set([detokenize(tokens)]);
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const variant = newVariant(k, ops, seen, (op) =>
      applyOps(tokens, [op], alpha, lexicon, random),
    );
    if (variant === undefined) continue;
    seen.add(variant);
    out.push(variant);
  }
  return out;
}

/** Variant slot k's text: op k first, then the next ones, TRIES draws each; undefined if all were seen. */
function newVariant(
  k: number,
  ops: readonly EdaOp[],
  seen: ReadonlySet<string>,
  draw: (op: EdaOp) => string,
): string | undefined {
  for (let o = 0; o < ops.length; o++) {
    const op = ops[(k + o) % ops.length]!;
    for (let t = 0; t < TRIES; t++) {
      const text = draw(op);
      if (!seen.has(text)) return text;
    }
  }
  return undefined;
}

function applyOps(
  start: readonly Token[],
  ops: readonly EdaOp[],
  alpha: number,
  lexicon: Lexicon | undefined,
  random: () => number,
): string {
  // n counts the text's own words, not those an earlier op added or removed.
  const n = Math.max(1, Math.round(alpha * wordPositions(start).length));
  let tokens = [...start];
  for (const op of ops) {
    if (op === "synonym") tokens = replaceSynonyms(tokens, n, lexicon!, random);
    else if (op === "insert")
      tokens = insertSynonyms(tokens, n, lexicon!, random);
    else if (op === "swap") tokens = swapWords(tokens, n, random);
    else tokens = deleteRandomWords(tokens, alpha, random);
  }
  return detokenize(tokens);
}

/** Synonym replacement: n distinct words that have synonyms (not stop words), each by a random synonym. */
function replaceSynonyms(
  tokens: Token[],
  n: number,
  lexicon: Lexicon,
  random: () => number,
): Token[] {
  const chosen = shuffled(withSynonyms(tokens, lexicon), random).slice(0, n);
  for (const i of chosen) {
    const token = tokens[i]!;
    const synonym = pick(lexicon.synonyms(token.word), random);
    tokens[i] = { ...token, word: matchCase(token.word, synonym) };
  }
  return tokens;
}

/**
 * Random insertion, n times: a random synonym of a random word of the text (not a stop word), put before a random
 * token. Never after the last one, as in EDA, so a sentence's final punctuation stays last.
 */
function insertSynonyms(
  tokens: Token[],
  n: number,
  lexicon: Lexicon,
  random: () => number,
): Token[] {
  const sources = withSynonyms(tokens, lexicon).map((i) => tokens[i]!.word);
  if (sources.length === 0) return tokens;
  for (let k = 0; k < n; k++) {
    const synonym = pick(lexicon.synonyms(pick(sources, random)), random);
    const at = Math.floor(random() * tokens.length);
    tokens.splice(at, 0, { before: "", word: synonym, after: "" });
  }
  return tokens;
}

/** Random swap, n times: the words at two distinct random positions trade places (punctuation stays). */
function swapWords(tokens: Token[], n: number, random: () => number): Token[] {
  const positions = wordPositions(tokens);
  if (positions.length < 2) return tokens;
  for (let k = 0; k < n; k++) {
    const a = Math.floor(random() * positions.length);
    const b =
      (a + 1 + Math.floor(random() * (positions.length - 1))) %
      positions.length;
    const [i, j] = [positions[a]!, positions[b]!];
    const [wordI, wordJ] = [tokens[i]!.word, tokens[j]!.word];
    tokens[i] = { ...tokens[i]!, word: wordJ };
    tokens[j] = { ...tokens[j]!, word: wordI };
  }
  return tokens;
}

/** Random deletion: each word goes with probability p; when all would, one random word stays (EDA). */
function deleteRandomWords(
  tokens: Token[],
  p: number,
  random: () => number,
): Token[] {
  const positions = wordPositions(tokens);
  if (positions.length < 2) return tokens;
  const deleted = new Set(positions.filter(() => random() < p));
  if (deleted.size === positions.length) {
    deleted.delete(positions[Math.floor(random() * positions.length)]!);
  }
  return deleteWords(tokens, deleted);
}

/** The positions of words that have synonyms and are not stop words. */
function withSynonyms(tokens: readonly Token[], lexicon: Lexicon): number[] {
  return wordPositions(tokens).filter((i) => {
    const word = tokens[i]!.word;
    return (
      !STOP_WORDS.has(word.toLowerCase()) && lexicon.synonyms(word).length > 0
    );
  });
}

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

/** Throws a ConfigError for an unknown or missing op, alpha out of (0, 1], or a lexicon op without a lexicon. */
function checkEdaOptions(
  ops: readonly EdaOp[],
  alpha: number,
  lexicon: Lexicon | undefined,
): void {
  const known: readonly string[] = EDA_OPS;
  const unknown = ops.filter((op) => !known.includes(op));
  if (ops.length === 0 || unknown.length > 0) {
    throw new ConfigError(
      `EDA ops are [${ops.join(", ")}]; expected one or more of ${EDA_OPS.join(", ")}.`,
    );
  }
  if (!(Number.isFinite(alpha) && alpha > 0 && alpha <= 1)) {
    throw new ConfigError(
      `EDA alpha is ${alpha}; expected the share of words to change, in (0, 1] (EDA's default is 0.1).`,
    );
  }
  const needLexicon = [
    ...new Set(ops.filter((op) => op === "synonym" || op === "insert")),
  ];
  if (needLexicon.length > 0 && lexicon === undefined) {
    const which =
      needLexicon.length === 1
        ? `op ${needLexicon[0]} needs`
        : `ops ${needLexicon.join(" and ")} need`;
    throw new ConfigError(
      `EDA ${which} a synonym lexicon and none was given; pass lexicon (parseLexicon of ` +
        `demo/public/data/lexicon/synonyms.tsv) or use only the ops swap and delete.`,
    );
  }
}

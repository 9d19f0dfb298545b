/**
 * A text as EDA sees it: whitespace-separated tokens, each a word with the punctuation attached before and after
 * it (`"(well-known),"` is `(`, `well-known`, `),`). EDA's operations move, replace and delete the words; the
 * punctuation stays where it was, so `a new job.` with `job` deleted reads `a new.`, not `a new .`.
 */

/** One whitespace-separated piece of text. `word` is empty for punctuation alone (`—`, `...`). */
export interface Token {
  readonly before: string;
  readonly word: string;
  readonly after: string;
}

// A word runs from the first letter or digit to the last, keeping inner apostrophes, hyphens and dots.
const TOKEN =
  /^([^\p{L}\p{N}]*)(?:([\p{L}\p{N}](?:.*[\p{L}\p{N}])?)([^\p{L}\p{N}]*))?$/su;

/** Splits a text into tokens at runs of whitespace. */
export function tokenize(text: string): Token[] {
  return text
    .split(/\s+/u)
    .filter((piece) => piece !== "")
    .map((piece) => {
      const [, before = "", word = "", after = ""] = TOKEN.exec(piece)!;
      return { before, word, after };
    });
}

/** The tokens joined by single spaces. */
export function detokenize(tokens: readonly Token[]): string {
  return tokens
    .map((t) => t.before + t.word + t.after)
    .filter((piece) => piece !== "")
    .join(" ");
}

/** The positions of the tokens that hold a word. */
export function wordPositions(tokens: readonly Token[]): number[] {
  const out: number[] = [];
  tokens.forEach((t, i) => {
    if (t.word !== "") out.push(i);
  });
  return out;
}

/**
 * `replacement` written in the case of `original`: Title case for Title case, all capitals for all capitals (of
 * two letters or more), else as the lexicon gives it (lowercase).
 */
export function matchCase(original: string, replacement: string): string {
  const upper = original.toUpperCase();
  const lower = original.toLowerCase();
  if (original === lower) return replacement;
  if (original === upper && [...original].length > 1) {
    return replacement.toUpperCase();
  }
  const [first = "", ...rest] = original;
  if (
    first === first.toUpperCase() &&
    rest.join("") === rest.join("").toLowerCase()
  ) {
    return replacement.charAt(0).toUpperCase() + replacement.slice(1);
  }
  return replacement;
}

/**
 * The tokens without the words at `deleted` positions. A deleted word's trailing punctuation joins the word before
 * it (`new job.` -> `new.`, `Hello, world.` -> `Hello.`) and its leading punctuation the word after it; a word
 * wrapped on both sides (`(job)`), or a deleted run that opens and closes (`(a job)`), goes with its wrapping.
 */
export function deleteWords(
  tokens: readonly Token[],
  deleted: ReadonlySet<number>,
): Token[] {
  const out: Token[] = [];
  let carried = "";
  tokens.forEach((token, i) => {
    if (!deleted.has(i)) {
      out.push({ ...token, before: carried + token.before });
      carried = "";
    } else if (token.after === "") {
      carried += token.before;
    } else if (token.before !== "" || carried !== "") {
      carried = "";
    } else if (out.length > 0) {
      const last = out.pop()!;
      out.push({ ...last, after: joinPunctuation(last.after, token.after) });
    }
  });
  return out;
}

/** Punctuation `after` moved onto a word that ends in `before`: a comma, colon or semicolon gives way to the other. */
function joinPunctuation(before: string, after: string): string {
  if (before === "") return after;
  if (/^[,;:]+$/u.test(after)) return before;
  return before.replace(/[,;:]+$/u, "") + after;
}

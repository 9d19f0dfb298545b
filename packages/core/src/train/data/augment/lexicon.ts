/**
 * A synonym lexicon for EDA augmentation, read from a tab-separated file: `word<TAB>syn1 syn2 ...`, one word a
 * line, `#` lines are comments. webtune ships one made from WordNet 3.0 (demo/public/data/lexicon/synonyms.tsv,
 * written by scripts/lexicon/wordnet.py).
 */
import { FormatError } from "../../../errors.js";

/** Synonyms by word. Lookups ignore case; synonyms are lowercase. */
export interface Lexicon {
  /** How many words have synonyms. */
  readonly size: number;
  /** The synonyms of `word` (any case), or none. */
  synonyms(word: string): readonly string[];
}

const NONE: readonly string[] = Object.freeze([]);

/**
 * Reads a synonym lexicon. Each line is a word, a tab, then its synonyms separated by single spaces; blank lines
 * and lines starting with `#` are skipped. Words and synonyms are stored lowercase.
 *
 * @param text The file's text.
 * @param source The file's name, for error messages.
 * @throws FormatError naming `source` and the line, for a malformed or repeated line, or when no word is listed.
 *
 * @example
 * ```ts
 * const lexicon = parseLexicon(await (await fetch("data/lexicon/synonyms.tsv")).text(), "synonyms.tsv");
 * lexicon.synonyms("Big"); // ["large"]
 * ```
 */
export function parseLexicon(text: string, source: string): Lexicon {
  const table = new Map<string, readonly string[]>();
  const firstLine = new Map<string, number>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "" || line.startsWith("#")) return;
    const [word, synonyms] = parseLine(line, source, i + 1);
    const earlier = firstLine.get(word);
    if (earlier !== undefined) {
      throw new FormatError(
        `${source}, line ${i + 1}: "${word}" is listed again (first on line ${earlier}); give each word one line.`,
      );
    }
    firstLine.set(word, i + 1);
    table.set(word, Object.freeze(synonyms));
  });
  if (table.size === 0) {
    throw new FormatError(
      `${source} lists no word; expected lines "word<TAB>synonym synonym ..." (see demo/public/data/lexicon/).`,
    );
  }
  return {
    size: table.size,
    synonyms: (word) => table.get(word.toLowerCase()) ?? NONE,
  };
}

/** One `word<TAB>syn1 syn2` line, lowercased; throws a FormatError naming the line when it is not that. */
function parseLine(
  line: string,
  source: string,
  lineNumber: number,
): [string, string[]] {
  const fields = line.toLowerCase().split("\t");
  const word = fields[0]!;
  const synonyms = (fields[1] ?? "").split(" ");
  const problem = lineProblem(fields.length, word, synonyms);
  if (problem === undefined) return [word, synonyms];
  throw new FormatError(
    `${source}, line ${lineNumber} ${problem}; expected "word<TAB>synonym synonym ..." (one word, one tab, ` +
      `synonyms separated by single spaces). Found: ${JSON.stringify(line.slice(0, 80))}.`,
  );
}

/** What is wrong with a line of `fieldCount` tab-separated fields, or undefined. */
function lineProblem(
  fieldCount: number,
  word: string,
  synonyms: readonly string[],
): string | undefined {
  if (fieldCount !== 2) return `has ${fieldCount - 1} tabs`;
  if (word === "" || /\s/.test(word)) return `has the word "${word}"`;
  if (synonyms.some((s) => s === "" || /\s/.test(s))) {
    return "has an empty synonym (no synonyms, or two spaces in a row)";
  }
  if (synonyms.includes(word)) return `lists "${word}" as its own synonym`;
  return undefined;
}

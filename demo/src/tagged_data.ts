/**
 * Token-classification data as the page shows it before a job reads it: its sentences, their tags and a preview
 * with the entities marked. The worker's loadData reads files for the language model only, so a token-classification
 * job reads, checks and tokenizes these rows itself when it starts; its data event then replaces this summary.
 */
import type { DataSummary } from "@webtune/worker";

/** One sentence: its words and one tag per word, and the line it starts on. */
export interface TaggedSentence {
  tokens: string[];
  tags: string[];
  line: number;
}

/** A token-classification file's name and text. */
export interface TaggedFile {
  source: string;
  text: string;
}

const PREVIEW_ROWS = 5;

/**
 * The sentences of a JSONL file of `{"tokens", "tags"}` rows (or Hugging Face's `ner_tags` as names), or of CoNLL
 * columns (the word first, its tag last; a blank line ends a sentence) for any other name, as the job reads them.
 */
export function readTagged(file: TaggedFile): TaggedSentence[] {
  return /\.jsonl?$/i.test(file.source) ? readJsonl(file) : readConll(file);
}

function readJsonl({ source, text }: TaggedFile): TaggedSentence[] {
  return text.split(/\r?\n/).flatMap((lineText, i) => {
    if (lineText.trim() === "") return [];
    const fail = (why: string) =>
      new Error(
        `${source}, line ${i + 1}: ${why}; a token-classification row is {"tokens": [...], "tags": [...]}.`,
      );
    let row: { tokens?: unknown; tags?: unknown; ner_tags?: unknown };
    try {
      row = JSON.parse(lineText) as typeof row;
    } catch {
      throw fail("not valid JSON");
    }
    const tokens = row.tokens;
    const tags = row.tags ?? row.ner_tags;
    if (!isWords(tokens) || !isWords(tags) || tokens.length !== tags.length)
      throw fail("no words with one tag (a string) each");
    return [{ tokens, tags, line: i + 1 }];
  });
}

const isWords = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((v) => typeof v === "string");

function readConll({ text }: TaggedFile): TaggedSentence[] {
  const out: TaggedSentence[] = [];
  let current: TaggedSentence | undefined;
  text.split(/\r?\n/).forEach((lineText, i) => {
    const columns = lineText.trim().split(/\s+/);
    if (columns[0] === "" || columns[0] === "-DOCSTART-") {
      current = undefined;
      return;
    }
    if (!current) out.push((current = { tokens: [], tags: [], line: i + 1 }));
    current.tokens.push(columns[0]!);
    current.tags.push(columns.at(-1)!);
  });
  return out;
}

/** The labels a job makes of these tags: "O", then B- and I- of each entity type in sorted order. */
export function tagLabels(sentences: readonly TaggedSentence[]): string[] {
  const types = new Set(
    sentences.flatMap((s) =>
      s.tags.filter((t) => t !== "O").map((t) => t.replace(/^[BI]-/, "")),
    ),
  );
  return ["O", ...[...types].sort().flatMap((t) => [`B-${t}`, `I-${t}`])];
}

/** A sentence with its entities marked, e.g. "So [Absalom]PER fled , and went to [Geshur]LOC". */
export function markEntities(
  tokens: readonly string[],
  tags: readonly string[],
): string {
  const out: string[] = [];
  let open: string | undefined;
  tokens.forEach((word, i) => {
    const tag = tags[i] ?? "O";
    const type = tag === "O" ? undefined : tag.slice(2);
    const continues = tag.startsWith("I-") && type === open;
    if (open && !continues) out[out.length - 1] += `]${open}`;
    if (type && !continues) out.push(`[${word}`);
    else out.push(word);
    open = type;
  });
  if (open) out[out.length - 1] += `]${open}`;
  return out.join(" ");
}

/**
 * How many of `n` rows a job holds out for validation and test, as core's splitDataset counts them: rounded, at
 * least one each when asked for, and one left to train.
 */
export function splitSizes(
  n: number,
  val: number,
  test: number,
): { train: number; val: number; test: number } {
  let nVal = Math.round(n * val);
  let nTest = Math.round(n * test);
  const room = Math.max(n - 1, 0);
  while (nVal + nTest > room) {
    if (nTest >= nVal) nTest--;
    else nVal--;
  }
  if (val > 0 && nVal === 0 && nVal + nTest < room) nVal = 1;
  if (test > 0 && nTest === 0 && nVal + nTest < room) nTest = 1;
  return { train: n - nVal - nTest, val: nVal, test: nTest };
}

/**
 * What the data panel shows of tagged files before a job reads them: rows, labels, the splits the job will make
 * (a test file, or a share of the training file) and the first sentences with their entities marked.
 */
export function taggedSummary(
  train: TaggedFile,
  test: TaggedFile | undefined,
  split: { val: number; test: number },
): DataSummary {
  const rows = readTagged(train);
  const testRows = test ? readTagged(test) : [];
  if (rows.length === 0)
    throw new Error(`${train.source}: no tagged sentences to read.`);
  const sizes = splitSizes(rows.length, split.val, test ? 0 : split.test);
  const seen = new Set(rows.map((s) => s.tokens.join(" ")));
  const shared = testRows.filter((s) => seen.has(s.tokens.join(" ")));
  const preview = (sentences: TaggedSentence[]) =>
    sentences.slice(0, PREVIEW_ROWS).map((s) => ({
      target: markEntities(s.tokens, s.tags),
      tokens: s.tokens.length,
    }));
  return {
    format: "tagged",
    report: {
      total: rows.length,
      kept: rows.length,
      dropped: { empty: 0, duplicate: 0, tooLong: 0, malformed: 0 },
      truncated: 0,
      rows: [],
    },
    labels: tagLabels(rows),
    sizes: { ...sizes, test: test ? testRows.length : sizes.test },
    preview: { train: preview(rows), test: preview(testRows) },
    overlap: {
      rows: shared.length,
      lines: shared.slice(0, 10).map((s) => s.line),
    },
  };
}

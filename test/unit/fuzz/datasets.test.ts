/**
 * Fuzzing the dataset readers: parseRows on random bytes and text (JSONL, CSV, TSV, plain text; odd delimiters,
 * quotes, lone surrogates, invalid UTF-8) and buildDataset on random JSON rows in every format (random values in
 * text, prompt, completion, instruction, output, messages, label, input_ids, labels), with the tiny ChatML
 * tokenizer. Each file reads or is refused with a WebtuneError (a RowFormatError, EmptyDatasetError, ...); never a
 * TypeError or RangeError.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import type { Tokenizer } from "../../../packages/core/src/models/tokenizer.js";
import {
  buildDataset,
  parseRows,
  type BuildOptions,
} from "../../../packages/core/src/train/data/index.js";
import { loadTokenizer } from "../train/data_fixture.js";
import { fuzzParameters, Outcomes } from "./fuzz.js";

let tokenizer: Tokenizer;
beforeAll(async () => {
  tokenizer = await loadTokenizer();
});

const SOURCES = [
  "train.jsonl",
  "train.csv",
  "train.tsv",
  "notes.txt",
  "data.json",
  "https://example.com/d.csv?x=1.txt",
  "noextension",
  "",
];

const text = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20, unit: "binary" }) },
  {
    weight: 2,
    arbitrary: fc
      .array(
        fc.constantFrom(
          '"',
          ",",
          "\t",
          "\n",
          "\r",
          "\r\n",
          "{",
          "}",
          "a",
          " ",
          "\\",
          "\uFEFF",
          "\ud800",
        ),
        {
          maxLength: 30,
        },
      )
      .map((parts) => parts.join("")),
  },
);

const parseOptions = fc.record({
  source: fc.constantFrom(...SOURCES),
  fileType: fc.constantFrom(undefined, "jsonl", "csv", "text"),
  delimiter: fc.constantFrom(
    undefined,
    ",",
    "\t",
    ";",
    "",
    "ab",
    '"',
    "\n",
    "\r",
    "\ud800",
  ),
  onError: fc.constantFrom(undefined, "throw", "skip"),
  textRows: fc.constantFrom(undefined, "line", "document"),
});

const json = fc.jsonValue({ maxDepth: 2 });
const field = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
  json,
);
const message = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      role: fc.oneof(
        fc.constantFrom("system", "user", "assistant", "tool", ""),
        json,
      ),
      content: field,
    }),
  },
  json,
);
const ids = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.array(fc.integer({ min: -101, max: 500 }), { maxLength: 8 }),
  },
  fc.array(fc.constantFrom(0.5, 1e300, -1, 2 ** 31, 2 ** 53, -100), {
    maxLength: 4,
  }),
  json,
);

/** A row shaped like one format, with random values, or random JSON. */
const row = fc.oneof(
  fc.record({ text: field }, { requiredKeys: [] }),
  fc.record({ prompt: field, completion: field }, { requiredKeys: [] }),
  fc.record(
    { instruction: field, input: field, output: field },
    { requiredKeys: [] },
  ),
  fc.record(
    { messages: fc.oneof(fc.array(message, { maxLength: 4 }), json) },
    { requiredKeys: [] },
  ),
  fc.record({ text: field, label: field }, { requiredKeys: [] }),
  fc.record({ input_ids: ids, labels: ids }, { requiredKeys: ["input_ids"] }),
  fc.dictionary(
    fc.constantFrom("__proto__", "constructor", "text", "format", "toString"),
    json,
    {
      maxKeys: 3,
    },
  ),
  json,
);

/** Options, mostly ones that fit together, so that most files get past the option checks to their rows. */
const buildOptions = fc.record({
  format: fc.oneof(
    { weight: 4, arbitrary: fc.constant(undefined) },
    fc.constantFrom(
      "completion",
      "instruction",
      "chat",
      "classification",
      "tokens",
    ),
  ),
  maxLength: fc.constantFrom(undefined, 1, 4, 64),
  truncate: fc.oneof(
    { weight: 3, arbitrary: fc.constant(false) },
    fc.constant(true),
  ),
  dedupe: fc.constantFrom(undefined, true, false),
  onError: fc.constantFrom(undefined, "throw", "skip", "skip"),
  textBlocks: fc.oneof(
    { weight: 6, arbitrary: fc.constant(undefined) },
    fc.constantFrom({ size: 4, unit: "tokens" }, { size: 3, unit: "chars" }),
  ),
  vocabSize: fc.constantFrom(undefined, 100, 500),
  instructionTemplate: fc.constantFrom(undefined, "default", "chat"),
});

describe("fuzz: dataset readers", () => {
  it("parseRows: random bytes and text, every file type and delimiter", () => {
    const outcomes = new Outcomes();
    fc.assert(
      fc.property(
        fc.oneof(text, fc.uint8Array({ maxLength: 60 })),
        parseOptions,
        (input, options) => {
          outcomes.checkSync(() => parseRows(input, options as never));
        },
      ),
      fuzzParameters(1000, 21),
    );
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 10);
    expect(outcomes.refused).toBeGreaterThan(0);
  });

  it("buildDataset: random JSON rows in every format, as JSONL and CSV", () => {
    const outcomes = new Outcomes();
    fc.assert(
      fc.property(
        fc.array(row, { maxLength: 5 }),
        fc.constantFrom("train.jsonl", "train.csv", "train.txt"),
        buildOptions,
        fc.option(text, { nil: undefined }),
        (rows, source, options, garbage) => {
          const lines = source.endsWith(".csv")
            ? csvOf(rows)
            : rows.map((r) =>
                source.endsWith(".txt")
                  ? String(JSON.stringify(r))
                  : JSON.stringify(r),
              );
          if (garbage !== undefined) lines.push(garbage);
          const file = lines.join("\n");
          const build = { source, ...options } as BuildOptions;
          outcomes.checkSync(() => buildDataset(file, tokenizer, build));
        },
      ),
      fuzzParameters(600, 22),
    );
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 20);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });
});

/** Rows as CSV with a header of every key; values that are not strings as JSON, quoted where needed. */
function csvOf(rows: unknown[]): string[] {
  const objects = rows.filter(
    (r): r is Record<string, unknown> =>
      typeof r === "object" && r !== null && !Array.isArray(r),
  );
  const keys = [...new Set(objects.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => {
    const s = typeof v === "string" ? v : String(JSON.stringify(v) ?? "");
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [
    keys.map(cell).join(","),
    ...objects.map((r) => keys.map((k) => cell(r[k])).join(",")),
  ];
}

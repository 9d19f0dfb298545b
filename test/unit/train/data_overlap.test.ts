/**
 * Test rows that are also training rows (contamination), found on the record key that deduplication uses; token
 * ids checked against the model's vocabulary when the file is read; messages that name the caller's own options.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import type { Tokenizer } from "../../../packages/core/src/models/tokenizer.js";
import {
  buildDataset,
  EmptyDatasetError,
  findOverlap,
  RowFormatError,
  splitDataset,
} from "../../../packages/core/src/train/data/index.js";
import { loadTokenizer } from "./data_fixture.js";

let tok: Tokenizer;
beforeAll(async () => {
  tok = await loadTokenizer();
});

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n");

describe("findOverlap", () => {
  const train = jsonl([
    { prompt: "2+2=", completion: " 4" },
    { prompt: "3+3=", completion: " 6" },
    { prompt: "5+5=", completion: " 10" },
  ]);

  it("counts the test rows whose record is in the training file and lists their lines", () => {
    const test = jsonl([
      { prompt: "1+1=", completion: " 2" },
      // Fields that the format does not read do not count, as in deduplication.
      { prompt: "3+3=", completion: " 6", id: 17 },
      { prompt: "4+4=", completion: " 8" },
      { prompt: "2+2=", completion: " 4" },
      // The same prompt with another answer is another record.
      { prompt: "5+5=", completion: " 11" },
    ]);
    const a = buildDataset(train, tok, { source: "train.jsonl" });
    const b = buildDataset(test, tok, { source: "test.jsonl", dedupe: false });
    expect(findOverlap(a.examples, b.examples)).toEqual({
      rows: 2,
      lines: [2, 4],
    });
    expect(findOverlap(a.examples, a.examples).rows).toBe(3);
  });

  it("counts every copy of a repeated test row, and lists at most maxLines lines", () => {
    const test = jsonl(
      Array.from({ length: 12 }, () => ({ prompt: "2+2=", completion: " 4" })),
    );
    const a = buildDataset(train, tok, { source: "train.jsonl" });
    const b = buildDataset(test, tok, { source: "test.jsonl", dedupe: false });
    expect(b.examples).toHaveLength(12);
    const overlap = findOverlap(a.examples, b.examples, 3);
    expect(overlap).toEqual({ rows: 12, lines: [1, 2, 3] });
  });

  it("finds none between the splits of one cleaned file, and none in disjoint files", () => {
    const rows = jsonl(
      Array.from({ length: 40 }, (_, i) => ({ text: `row ${i % 30}` })),
    );
    const data = buildDataset(rows, tok, { source: "all.jsonl" });
    expect(data.report.dropped.duplicate).toBe(10);
    const split = splitDataset(data.examples, { val: 0, test: 0.3, seed: 1 });
    expect(findOverlap(split.train, split.test)).toEqual({
      rows: 0,
      lines: [],
    });
  });

  it("compares examples made without buildDataset on their ids and labels", () => {
    const a = [{ inputIds: [1, 2], labels: [1, 2], line: 1 }];
    const b = [
      { inputIds: [1, 2], labels: [1, 2], line: 5 },
      { inputIds: [1, 2], labels: [-100, 2], line: 6 },
    ];
    expect(findOverlap(a, b)).toEqual({ rows: 1, lines: [5] });
  });

  it("gives equal records equal keys and different records different keys", () => {
    const data = buildDataset(
      jsonl([{ text: "a" }, { text: "b" }, { text: "a", extra: 1 }]),
      tok,
      { source: "k.jsonl", dedupe: false },
    );
    const [a, b, a2] = data.examples.map((e) => e.key);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(a2).toBe(a);
    expect(b).not.toBe(a);
  });
});

describe("token ids and the model's vocabulary", () => {
  const read = (rows: object[], vocabSize = 100) =>
    buildDataset(jsonl(rows), tok, { source: "ids.jsonl", vocabSize });

  it("a row with an id at or above the vocabulary size is a FormatError naming the file, line, id and size", () => {
    const rows = [{ input_ids: [1, 2, 3] }, { input_ids: [4, 100, 5] }];
    const error = (() => {
      try {
        read(rows);
      } catch (e) {
        return e;
      }
      return undefined;
    })() as RowFormatError;
    expect(error).toBeInstanceOf(RowFormatError);
    expect(error.line).toBe(2);
    expect(error.field).toBe("input_ids[1]");
    expect(error.message).toBe(
      `ids.jsonl, line 2: field "input_ids[1]" is 100; the model's vocabulary has 100 ids (0 to 99), so these ` +
        `ids were made for another model or tokenizer. Fix the row, or pass onError: "skip" to drop such rows ` +
        `(they are counted in the report as malformed).`,
    );
    expect(read(rows, 101).examples).toHaveLength(2);
  });

  it("refuses negative and fractional ids, and labels outside the vocabulary other than -100", () => {
    expect(() => read([{ input_ids: [1, -1] }])).toThrow(
      /ids\.jsonl, line 1: field "input_ids\[1\]" is -1; expected a token id \(an integer >= 0 below the vocabulary size, 100\)/,
    );
    expect(() => read([{ input_ids: [1.5] }])).toThrow(
      /field "input_ids\[0\]" is 1\.5; expected a token id/,
    );
    expect(() => read([{ input_ids: [1, 2], labels: [-100, 250] }])).toThrow(
      /field "labels\[1\]" is 250; the model's vocabulary has 100 ids/,
    );
    expect(
      read([{ input_ids: [1, 2], labels: [-100, 2] }]).examples[0]!.labels,
    ).toEqual([-100, 2]);
  });

  it("rows skipped for out-of-vocabulary ids are counted as malformed", () => {
    const data = buildDataset(
      jsonl([{ input_ids: [1, 2] }, { input_ids: [7, 999] }]),
      tok,
      { source: "ids.jsonl", vocabSize: 100, onError: "skip" },
    );
    expect(data.report.dropped.malformed).toBe(1);
    expect(data.report.rows[0]).toMatchObject({ line: 2, reason: "malformed" });
  });

  it("text whose tokens fall outside the model's vocabulary means the tokenizer does not match the model", () => {
    expect(() =>
      buildDataset(jsonl([{ text: "hello" }]), tok, {
        source: "t.jsonl",
        vocabSize: 10,
      }),
    ).toThrow(
      /t\.jsonl, line 1: token 0 has id \d+, outside the model's vocabulary of 10 ids \(0 to 9\); the tokenizer does not match the model/,
    );
  });

  it("a vocabulary size that is not a positive integer is a ConfigError", () => {
    expect(() =>
      buildDataset("{}", tok, { source: "t.jsonl", vocabSize: 0 }),
    ).toThrow(ConfigError);
  });
});

describe("messages name the caller's options", () => {
  const cli = {
    skip: "pass --skip-bad-rows",
    maxLength: "--seq-len",
    truncate: null,
    format: "--format",
  };

  it("a malformed row's advice names optionNames.skip", () => {
    const read = (optionNames?: typeof cli) => () =>
      buildDataset('{"text":"a"}\n{"text":3}', tok, {
        source: "bad.jsonl",
        optionNames,
      });
    expect(read()).toThrow(/pass onError: "skip" to drop such rows/);
    expect(read(cli)).toThrow(
      /^bad\.jsonl, line 2: field "text" is a number; expected a string\. Fix the row, or pass --skip-bad-rows to drop such rows/,
    );
    expect(() =>
      buildDataset(new Uint8Array([0x7b, 0xff, 0x7d]), tok, {
        source: "latin1.jsonl",
        optionNames: cli,
      }),
    ).toThrow(/not valid UTF-8.*pass --skip-bad-rows/);
  });

  it("a row that fits no format names optionNames.format", () => {
    expect(() =>
      buildDataset('{"q":1}', tok, { source: "q.jsonl", optionNames: cli }),
    ).toThrow(/or pass --format explicitly/);
    expect(() =>
      buildDataset('{"q":1}', tok, {
        source: "q.jsonl",
        optionNames: { format: null },
      }),
    ).toThrow(/Rename the columns\.$/);
  });

  it("a file that leaves no example says why, shows the first dropped row and names only options that help", () => {
    const long = jsonl([
      { prompt: "the cat sat on the mat", completion: " x" },
    ]);
    const error = (() => {
      try {
        buildDataset(long, tok, {
          source: "long.jsonl",
          maxLength: 2,
          truncate: true,
          optionNames: cli,
        });
      } catch (e) {
        return e;
      }
      return undefined;
    })() as EmptyDatasetError;
    expect(error).toBeInstanceOf(EmptyDatasetError);
    expect(error.message).toMatch(
      /^long\.jsonl gave no examples: all 1 rows were dropped \(1 tooLong\)\. First: line 1, tooLong: \d+ tokens; --seq-len is 2, and the prompt alone fills it\. To keep rows, raise --seq-len \(the prompts alone fill it\)\.$/,
    );
    expect(error.message).not.toMatch(/dedupe|truncate: true|onError/);
    expect(() =>
      buildDataset(long, tok, { source: "long.jsonl", maxLength: 2 }),
    ).toThrow(/raise maxLength or pass truncate: true\.$/);
  });
});

/**
 * Cleaning counts on a fixture with known empty, duplicate, overlong and malformed rows; truncation; errors that
 * name the line; option checks.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import type { Tokenizer } from "../../../packages/core/src/models/tokenizer.js";
import {
  buildDataset,
  EmptyDatasetError,
  RowFormatError,
} from "../../../packages/core/src/train/data/index.js";
import {
  EOS,
  I,
  loadTokenizer,
  readDataset,
  readDatasetBytes,
} from "./data_fixture.js";

let tok: Tokenizer;
beforeAll(async () => {
  tok = await loadTokenizer();
});

const source = "cleaning.jsonl";

describe("cleaning report", () => {
  it("counts each dropped row under one reason, and keeps the rest in order", () => {
    const data = buildDataset(readDataset(source), tok, {
      source,
      maxLength: 20,
      onError: "skip",
    });
    expect(data.report).toMatchObject({
      total: 10,
      kept: 3,
      dropped: { empty: 2, duplicate: 2, tooLong: 1, malformed: 2 },
      truncated: 0,
    });
    expect(data.examples.map((e) => e.line)).toEqual([1, 3, 11]);
    expect(data.report.rows.map((r) => [r.line, r.reason])).toEqual([
      [2, "empty"],
      [4, "duplicate"],
      [5, "malformed"],
      [6, "empty"],
      [8, "malformed"],
      [9, "tooLong"],
      [10, "duplicate"],
    ]);
    expect(data.report.rows.find((r) => r.line === 9)!.message).toBe(
      "241 tokens; maxLength is 20",
    );
    expect(data.report.rows.find((r) => r.line === 8)!.message).toBe(
      'field "text" is a number; expected a string',
    );
  });

  it("reads bytes the same as text", () => {
    const fromBytes = buildDataset(readDatasetBytes(source), tok, {
      source,
      maxLength: 20,
      onError: "skip",
    });
    const fromText = buildDataset(readDataset(source), tok, {
      source,
      maxLength: 20,
      onError: "skip",
    });
    expect(fromBytes).toEqual(fromText);
  });

  it("truncates overlong rows to maxLength instead, with truncate", () => {
    const data = buildDataset(readDataset(source), tok, {
      source,
      maxLength: 20,
      truncate: true,
      onError: "skip",
    });
    expect(data.report).toMatchObject({
      kept: 4,
      dropped: { tooLong: 0 },
      truncated: 1,
    });
    const cut = data.examples.find((e) => e.line === 9)!;
    expect(cut.inputIds).toHaveLength(20);
    expect(cut.inputIds).toEqual(
      tok.encode("Hello world Hello world Hello world").slice(0, 20),
    );
    expect(cut.labels).toEqual(cut.inputIds);
  });

  it("drops a truncated row whose prompt alone fills maxLength", () => {
    const rows =
      '{"prompt":"Hello world","completion":"Hi"}\n{"prompt":"Hi","completion":" world"}';
    const data = buildDataset(rows, tok, {
      source: "i.jsonl",
      maxLength: 6,
      truncate: true,
    });
    expect(data.report).toMatchObject({
      kept: 1,
      dropped: { tooLong: 1 },
      truncated: 1,
    });
    expect(data.examples[0]!.labels).toEqual([I, I, 278, 78, 81, 75]);
    expect(data.report.rows[0]!.message).toMatch(/the prompt alone fills it/);
  });

  it("keeps duplicates with dedupe: false", () => {
    const data = buildDataset(readDataset(source), tok, {
      source,
      dedupe: false,
      onError: "skip",
    });
    expect(data.report.dropped).toEqual({
      empty: 2,
      duplicate: 0,
      tooLong: 0,
      malformed: 2,
    });
    expect(data.report.kept).toBe(6);
  });

  it("counts a row with no loss token (pre-tokenized, all -100) as empty", () => {
    const rows =
      '{"input_ids":[1,2],"labels":[-100,-100]}\n{"input_ids":[]}\n{"input_ids":[3]}';
    const data = buildDataset(rows, tok, { source: "t.jsonl" });
    expect(data.report.dropped.empty).toBe(2);
    expect(data.examples).toEqual([
      { inputIds: [3], labels: [3], line: 3, key: expect.any(String) },
    ]);
  });
});

describe("malformed rows with onError throw (the default)", () => {
  it("throws at the first malformed row, naming the source and line", () => {
    try {
      buildDataset(readDataset(source), tok, { source, maxLength: 20 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(RowFormatError);
      expect((e as RowFormatError).line).toBe(5);
      expect((e as Error).message).toMatch(
        /^cleaning\.jsonl, line 5: not valid JSON/,
      );
    }
  });

  it("names the field of a row of the wrong type", () => {
    const text = readDataset(source).replace("not json {", "");
    try {
      buildDataset(text, tok, { source });
      expect.unreachable();
    } catch (e) {
      expect((e as RowFormatError).line).toBe(8);
      expect((e as RowFormatError).field).toBe("text");
      expect((e as Error).message).toContain(
        'line 8: field "text" is a number; expected a string',
      );
    }
  });

  it("makes a row that the tokenizer cannot encode malformed, naming its line", () => {
    const picky = {
      encode: (text: string, options?: { addSpecialTokens?: boolean }) => {
        if (text.includes("☃"))
          throw new FormatError(
            `"${text}" has a piece that picky cannot encode`,
          );
        return tok.encode(text, options);
      },
      encodeChat: tok.encodeChat.bind(tok),
      eosTokenId: tok.eosTokenId,
    };
    const rows = '{"text":"Hi"}\n{"text":"snow ☃"}\n{"text":"Paris."}';
    expect(() => buildDataset(rows, picky, { source: "s.jsonl" })).toThrow(
      /^s\.jsonl, line 2: "snow ☃" has a piece that picky cannot encode/,
    );
    const data = buildDataset(rows, picky, {
      source: "s.jsonl",
      onError: "skip",
    });
    expect(data.report).toMatchObject({ kept: 2, dropped: { malformed: 1 } });
    expect(data.report.rows[0]!.line).toBe(2);
  });
});

describe("nothing left, and option checks", () => {
  it("throws an EmptyDatasetError carrying the report when every row is dropped", () => {
    try {
      buildDataset('{"text":""}\n{"text":"Hi"}\n', tok, {
        source: "e.jsonl",
        maxLength: 1,
      });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(EmptyDatasetError);
      expect((e as Error).message).toMatch(
        /all 2 rows were dropped \(1 empty, 1 tooLong\)/,
      );
      expect((e as EmptyDatasetError).report.rows).toHaveLength(2);
    }
  });

  it("throws a FormatError for a file with no rows", () => {
    expect(() => buildDataset("\n\n", tok, { source: "blank.jsonl" })).toThrow(
      /has no rows to read/,
    );
  });

  it("rejects a non-positive maxLength and truncate without maxLength", () => {
    expect(() =>
      buildDataset('{"text":"a"}', tok, { source, maxLength: 0 }),
    ).toThrow(ConfigError);
    expect(() =>
      buildDataset('{"text":"a"}', tok, { source, truncate: true }),
    ).toThrow(/maxLength is not set/);
  });

  it("appends no EOS when the tokenizer has none", () => {
    const noEos = {
      encode: tok.encode.bind(tok),
      encodeChat: tok.encodeChat.bind(tok),
      eosTokenId: undefined,
    };
    const data = buildDataset('{"text":"Hi"}', noEos, { source: "c.jsonl" });
    expect(data.examples[0]!.inputIds).toEqual([39, 72]);
    expect(
      buildDataset('{"text":"Hi"}', tok, { source: "c.jsonl" }).examples[0]!
        .inputIds,
    ).toEqual([39, 72, EOS]);
  });
});

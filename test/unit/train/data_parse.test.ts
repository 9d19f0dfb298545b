/**
 * Reading dataset files into rows: JSONL, CSV (RFC 4180 edge cases), plain text, bytes, file type inference, and
 * the errors that name the line of a bad row.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import {
  parseRows,
  RowFormatError,
} from "../../../packages/core/src/train/data/index.js";
import { readDataset } from "./data_fixture.js";

const csv = (text: string, delimiter?: string) =>
  parseRows(text, { source: "t.csv", ...(delimiter ? { delimiter } : {}) });

/** The RowFormatError that `fn` throws. */
function rowErrorOf(fn: () => unknown): RowFormatError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RowFormatError);
    expect(e).toBeInstanceOf(FormatError);
    return e as RowFormatError;
  }
  throw new Error("expected a RowFormatError");
}

describe("JSONL", () => {
  it("reads one object per line, skipping blank lines, with their line numbers", () => {
    const parsed = parseRows('{"text":"a"}\r\n\n  \n{"text":"b","n":1}\n', {
      source: "d.jsonl",
    });
    expect(parsed.rows).toEqual([{ text: "a" }, { text: "b", n: 1 }]);
    expect(parsed.lineNumbers).toEqual([1, 4]);
    expect(parsed.fileType).toBe("jsonl");
    expect(parsed.malformed).toBe(0);
  });

  it("throws a FormatError naming the source and line of invalid JSON", () => {
    const error = rowErrorOf(() =>
      parseRows('{"text":"a"}\n{"text": "b",\n', { source: "d.jsonl" }),
    );
    expect(error.line).toBe(2);
    expect(error.source).toBe("d.jsonl");
    expect(error.message).toMatch(/^d\.jsonl, line 2: not valid JSON/);
    expect(error.message).toContain('onError: "skip"');
  });

  it("rejects a line that is not an object, and hints at JSON array files", () => {
    expect(
      rowErrorOf(() => parseRows("[1, 2]", { source: "d.jsonl" })).message,
    ).toMatch(
      /line 1: holds an array; expected a JSON object \(a JSON array file/,
    );
    expect(
      rowErrorOf(() => parseRows('{"a":1}\n"x"', { source: "d.jsonl" })).line,
    ).toBe(2);
  });

  it("with onError skip, counts and lists malformed lines instead", () => {
    const parsed = parseRows('{"text":"a"}\nnope\n[1]\n{"text":"b"}', {
      source: "d.jsonl",
      onError: "skip",
    });
    expect(parsed.rows).toEqual([{ text: "a" }, { text: "b" }]);
    expect(parsed.lineNumbers).toEqual([1, 4]);
    expect(parsed.malformed).toBe(2);
    expect(parsed.problems.map((p) => [p.line, p.reason])).toEqual([
      [2, "malformed"],
      [3, "malformed"],
    ]);
  });
});

describe("CSV", () => {
  it("reads quoted commas, doubled quotes and quoted CRLF line breaks (fixture)", () => {
    const parsed = parseRows(readDataset("classify.csv"), {
      source: "classify.csv",
    });
    expect(parsed.fileType).toBe("csv");
    expect(parsed.rows).toEqual([
      { text: "Great film, loved it", label: "pos" },
      { text: "Terrible", label: "neg" },
      { text: 'He said "wow"', label: "pos" },
      { text: "Line one\r\nline two", label: "neg" },
      { text: "Fine", label: "neu" },
    ]);
    expect(parsed.lineNumbers).toEqual([2, 3, 4, 5, 7]);
  });

  it("keeps empty fields, a trailing empty field, and empty quoted fields", () => {
    expect(csv('a,b,c\n,x,\n"",,""\n').rows).toEqual([
      { a: "", b: "x", c: "" },
      { a: "", b: "", c: "" },
    ]);
  });

  it("reads a last record without a line break, lone CR line ends, and skips blank lines", () => {
    const parsed = csv("a,b\r1,2\r\r\n\n3,4");
    expect(parsed.rows).toEqual([
      { a: "1", b: "2" },
      { a: "3", b: "4" },
    ]);
    expect(parsed.lineNumbers).toEqual([2, 5]);
  });

  it("keeps a quote inside an unquoted field as text, as Python's csv does", () => {
    expect(csv('a,b\n5" screen,x\n').rows).toEqual([
      { a: '5" screen', b: "x" },
    ]);
  });

  it("counts lines inside quoted fields for the rows after them", () => {
    const parsed = csv('a,b\n"1\n2\n3",x\ny,z\n');
    expect(parsed.rows[0]).toEqual({ a: "1\n2\n3", b: "x" });
    expect(parsed.lineNumbers).toEqual([2, 5]);
  });

  it("reads other delimiters, and tabs for .tsv sources", () => {
    expect(csv('a;b\n"x;y";z\n', ";").rows).toEqual([{ a: "x;y", b: "z" }]);
    expect(parseRows("a\tb\nx,y\tz\n", { source: "d.tsv" }).rows).toEqual([
      { a: "x,y", b: "z" },
    ]);
    expect(() => csv("a\n", '"')).toThrow(ConfigError);
  });

  it("names the line of a row with the wrong number of fields", () => {
    const error = rowErrorOf(() => csv("text,label\nok,pos\na,b,c\n"));
    expect(error.line).toBe(3);
    expect(error.message).toContain(
      "has 3 fields; the header has 2 (text, label)",
    );
  });

  it("names the line of text after a closing quote, and goes on reading when skipping", () => {
    const text = 'a,b\n"x"y,1\n"ok",2\n';
    expect(rowErrorOf(() => csv(text)).line).toBe(2);
    const parsed = parseRows(text, { source: "t.csv", onError: "skip" });
    expect(parsed.rows).toEqual([{ a: "ok", b: "2" }]);
    expect(parsed.lineNumbers).toEqual([3]);
    expect(parsed.malformed).toBe(1);
  });

  it("names the line where an unclosed quoted field opens", () => {
    const error = rowErrorOf(() => csv('a,b\n1,2\n3,"never closed\n4,5\n'));
    expect(error.line).toBe(3);
    expect(error.message).toMatch(
      /quoted field opened on line 3 is never closed/,
    );
  });

  it("rejects a header with a repeated or empty column name", () => {
    expect(rowErrorOf(() => csv("text,text\na,b\n")).message).toMatch(
      /"text" is repeated/,
    );
    expect(rowErrorOf(() => csv("text,,label\na,b,c\n")).message).toMatch(
      /column 2 has no name/,
    );
  });
});

describe("plain text and file types", () => {
  it("gives one {text} row per non-blank line, or one row for the whole file", () => {
    const text = readDataset("plain.txt");
    const lines = parseRows(text, { source: "plain.txt" });
    expect(lines.rows).toEqual([
      { text: "Hello world" },
      { text: "Hi there" },
      { text: "Paris." },
    ]);
    expect(lines.lineNumbers).toEqual([1, 3, 4]);
    expect(
      parseRows(text, { source: "plain.txt", textRows: "document" }).rows,
    ).toEqual([{ text }]);
  });

  it("infers JSONL from a first line starting with { when the name has no known extension", () => {
    expect(parseRows('\n {"text":"a"}', { source: "upload" }).fileType).toBe(
      "jsonl",
    );
    expect(
      parseRows("just text", { source: "https://x.org/data?x=1" }).fileType,
    ).toBe("text");
    expect(parseRows('{"text":"a"}', { source: "d.txt" }).fileType).toBe(
      "text",
    );
    expect(
      parseRows("a\nb", { source: "upload", fileType: "csv" }).rows,
    ).toEqual([{ a: "b" }]);
  });
});

describe("bytes", () => {
  const encode = (s: string) => new TextEncoder().encode(s);

  it("decodes UTF-8 bytes and ArrayBuffers, dropping a byte-order mark", () => {
    const bytes = encode('\uFEFF{"text":"café 😀"}\n');
    expect(parseRows(bytes, { source: "d.jsonl" }).rows).toEqual([
      { text: "café 😀" },
    ]);
    expect(parseRows(bytes.slice().buffer, { source: "d.jsonl" }).rows).toEqual(
      [{ text: "café 😀" }],
    );
    expect(parseRows("\uFEFFa,b\n1,2", { source: "d.csv" }).rows).toEqual([
      { a: "1", b: "2" },
    ]);
  });

  it("names the line whose bytes are not UTF-8, or skips that row", () => {
    const good = encode('{"text":"a"}\n{"text":"');
    const bytes = new Uint8Array([
      ...good,
      0xe9,
      ...encode('t\u00e9"}\n{"text":"b"}\n'),
    ]);
    const error = rowErrorOf(() =>
      parseRows(bytes, { source: "latin1.jsonl" }),
    );
    expect(error.line).toBe(2);
    expect(error.message).toMatch(/not valid UTF-8/);
    const parsed = parseRows(bytes, {
      source: "latin1.jsonl",
      onError: "skip",
    });
    expect(parsed.rows).toEqual([{ text: "a" }, { text: "b" }]);
    expect(parsed.problems).toEqual([
      {
        line: 2,
        reason: "malformed",
        message: "the bytes of this line are not valid UTF-8",
      },
    ]);
  });
});

/**
 * What `webtune serve` may stream of a continuation still being generated: never text that could be the start of
 * a stop string, nor half of a multi-byte character, and the deltas always add up to the final text.
 */
import { describe, expect, it } from "vitest";
import {
  sendableLength,
  StreamedText,
} from "../../../packages/cli/src/serve/index.js";

describe("sendableLength", () => {
  it("sends everything when there is no stop string", () => {
    expect(sendableLength("Hello, world", [])).toBe(12);
  });

  it("holds back a suffix that is the start of a stop string", () => {
    expect(sendableLength("line one\n", ["\n\n"])).toBe(8);
    expect(sendableLength("a cat is an ani", ["animal"])).toBe(12);
    expect(sendableLength("END", ["END."])).toBe(0);
  });

  it("holds back the longest such suffix over every stop string", () => {
    // "ab" starts "abc"; "b" alone starts "bx": the longer hold wins.
    expect(sendableLength("xxab", ["abc", "bx"])).toBe(2);
    expect(sendableLength("xxab", ["bx", "abc"])).toBe(2);
  });

  it("sends a suffix that only resembles a stop string's middle or end", () => {
    expect(sendableLength("the end", ["end."])).toBe(4);
    expect(sendableLength("say nd", ["end"])).toBe(6);
  });

  it("holds back trailing U+FFFD, a multi-byte character not complete yet", () => {
    expect(sendableLength("caf\uFFFD", [])).toBe(3);
    expect(sendableLength("caf\uFFFD\uFFFD", ["x"])).toBe(3);
    expect(sendableLength("\uFFFDa", [])).toBe(2);
  });

  it("holds back nothing for an empty text", () => {
    expect(sendableLength("", ["stop"])).toBe(0);
  });
});

describe("StreamedText", () => {
  /** The deltas sent for a sequence of decoded texts, then the final one. */
  function deltas(stops: string[], decoded: string[], final: string): string[] {
    const stream = new StreamedText(stops);
    return [...decoded.map((t) => stream.next(t)), stream.finish(final)];
  }

  it("releases held text once the next token shows it is not a stop string", () => {
    expect(deltas(["\n\n"], ["a", "a\n", "a\nb"], "a\nb")).toEqual([
      "a",
      "",
      "\nb",
      "",
    ]);
  });

  it("never sends the start of a stop string that then completes", () => {
    // generate cuts the text before "\n\n" once it appears: the held "\n" is never sent.
    const sent = deltas(["\n\n"], ["word", "word\n", "word"], "word");
    expect(sent.join("")).toBe("word");
    expect(sent).not.toContain("\n");
  });

  it("sends the held tail at the end when generation stops for another reason", () => {
    expect(deltas(["\n\n"], ["x", "x\n"], "x\n")).toEqual(["x", "", "\n"]);
  });

  it("waits for a character decoded in two tokens", () => {
    expect(deltas([], ["caf\uFFFD", "café"], "café")).toEqual(["caf", "é", ""]);
  });

  it("never sends what the finished answer lacks, one character per token, for several stop sets", () => {
    const model = "A cat, n. (Zool.) A small animal. See Kitten.";
    // Stops whose starts appear and then diverge ("A smile", "animal!"), one that completes ("animal."), none.
    for (const stops of [
      ["A smile", "animal!"],
      ["animal."],
      ["(Zox", "See K"],
      [],
    ]) {
      // What core's generate reports after each token: the text so far, cut before a complete stop string.
      const decoded: string[] = [];
      let final = model;
      for (let i = 1; i <= model.length; i++) {
        const text = model.slice(0, i);
        const hit = Math.min(
          ...stops.map((s) => text.indexOf(s)).filter((at) => at >= 0),
        );
        decoded.push(Number.isFinite(hit) ? text.slice(0, hit) : text);
        if (Number.isFinite(hit)) {
          final = text.slice(0, hit);
          break;
        }
      }
      const stream = new StreamedText(stops);
      let sent = "";
      for (const text of decoded) {
        sent += stream.next(text);
        expect(
          final.startsWith(sent),
          `${JSON.stringify(stops)}: ${sent}`,
        ).toBe(true);
      }
      sent += stream.finish(final);
      expect(sent).toBe(final);
    }
  });
});

/**
 * The demo datasets as shipped under demo/public/data: each reads cleanly with the demo base model's tokenizer,
 * the held-out splits share nothing with training, the date answers follow the rule (checked against JavaScript's
 * own calendar, not the generator), and the classification task has real classes.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildDataset, Tokenizer } from "@webtune/core";

const DATA = fileURLToPath(
  new URL("../../../demo/public/data/", import.meta.url),
);
const MODEL = fileURLToPath(
  new URL("../../../demo/public/models/webtune-demo-base/", import.meta.url),
);
const rows = (file: string) =>
  readFileSync(`${DATA}${file}`, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, string>);

let tokenizer: Tokenizer;
beforeAll(async () => {
  const read = (f: string) => readFileSync(`${MODEL}${f}`, "utf8");
  tokenizer = await Tokenizer.fromFiles({
    tokenizerJson: read("tokenizer.json"),
    tokenizerConfig: read("tokenizer_config.json"),
    generationConfig: read("generation_config.json"),
  });
});

const FILES = {
  "dates/train.jsonl": "instruction",
  "dates/test.jsonl": "instruction",
  "fortunes/train.jsonl": "classification",
  "fortunes/test.jsonl": "classification",
  "kjv/train.jsonl": "completion",
  "kjv/test.jsonl": "completion",
  "reference.jsonl": "completion",
} as const;

describe("demo datasets", () => {
  for (const [file, format] of Object.entries(FILES)) {
    it(`${file} reads as ${format} with no row dropped`, () => {
      const data = buildDataset(readFileSync(`${DATA}${file}`), tokenizer, {
        source: file,
        maxLength: 256,
      });
      expect(data.format).toBe(format);
      expect(data.report.kept).toBe(data.report.total);
      expect(data.report.truncated).toBe(0);
    });
  }

  it("dates: test dates are not in training, and every answer is the date written out", () => {
    const train = rows("dates/train.jsonl");
    const test = rows("dates/test.jsonl");
    const prompts = new Set(train.map((r) => r["prompt"]));
    expect(test.filter((r) => prompts.has(r["prompt"]))).toEqual([]);
    for (const r of [...train, ...test]) {
      const iso = /^Date: (\d{4}-\d{2}-\d{2})\nWritten out:$/.exec(
        r["prompt"]!,
      )![1]!;
      const written = new Date(`${iso}T00:00:00Z`).toLocaleDateString("en-US", {
        year: "numeric",
        month: "long",
        day: "numeric",
        timeZone: "UTC",
      });
      expect(r["completion"], iso).toBe(` ${written}`);
    }
  });

  it("fortunes: at least 3 classes and a few hundred rows, test labels seen in training, no text in both", () => {
    const train = rows("fortunes/train.jsonl");
    const test = rows("fortunes/test.jsonl");
    const labels = new Set(train.map((r) => r["label"]));
    expect(labels.size).toBeGreaterThanOrEqual(3);
    expect(train.length + test.length).toBeGreaterThanOrEqual(300);
    expect(test.every((r) => labels.has(r["label"]))).toBe(true);
    const texts = new Set(train.map((r) => r["text"]));
    expect(test.filter((r) => texts.has(r["text"]))).toEqual([]);
  });

  it("kjv and reference: held-out passages are not training passages", () => {
    const train = new Set(rows("kjv/train.jsonl").map((r) => r["text"]));
    expect(rows("kjv/test.jsonl").filter((r) => train.has(r["text"]))).toEqual(
      [],
    );
    const reference = rows("reference.jsonl").map((r) => r["text"]!);
    expect(reference.filter((t) => train.has(t))).toEqual([]);
  });
});

/**
 * Each dataset format end to end with the tiny-chatml tokenizer: exact ids, labels -100 exactly on prompt tokens
 * and equal to the ids on completion tokens, EOS appended; format detection.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import type { Tokenizer } from "../../../packages/core/src/models/tokenizer.js";
import {
  alpacaPrompt,
  buildDataset,
  classificationPair,
  detectFormat,
  RowFormatError,
  type Example,
} from "../../../packages/core/src/train/data/index.js";
import { EOS, I, loadTokenizer, readDataset } from "./data_fixture.js";

let tok: Tokenizer;
beforeAll(async () => {
  tok = await loadTokenizer();
});

const HELLO = [39, 343, 78];
const WORLD = [278, 78, 81, 75, 67]; // " world"
const HI = [39, 72];

/** Labels are -100 on the first `promptLength` tokens and equal to the ids after. */
function expectLossAfter(example: Example, promptLength: number) {
  const { inputIds, labels } = example;
  expect(labels).toHaveLength(inputIds.length);
  expect(labels.slice(0, promptLength).every((l) => l === I)).toBe(true);
  expect(labels.slice(promptLength)).toEqual(inputIds.slice(promptLength));
}

describe("detectFormat", () => {
  it.each([
    [{ text: "a" }, "completion"],
    [{ text: "a", label: 1 }, "classification"],
    [{ prompt: "a", completion: "b" }, "instruction"],
    [{ instruction: "a", input: "", output: "b" }, "instruction"],
    [{ instruction: "a", output: "b" }, "instruction"],
    [{ messages: [] }, "chat"],
    [{ input_ids: [1], text: "a" }, "tokens"],
  ] as const)("%j is %s", (row, format) => {
    expect(detectFormat(row)).toBe(format);
  });

  it("throws a FormatError listing the fields found and those expected", () => {
    expect(() => detectFormat({ question: "a", answer: "b" })).toThrow(
      /fields \(question, answer\) fits no dataset format; expected "text"/,
    );
  });

  it("names the first line when no row of a file fits a format", () => {
    const run = () =>
      buildDataset('\n{"q":1}\n{"q":2}', tok, { source: "q.jsonl" });
    expect(run).toThrow(RowFormatError);
    expect(run).toThrow(
      /^q\.jsonl, line 2 \(and every other row\): A row with fields \(q\)/,
    );
  });
});

describe("completion", () => {
  it("tokenizes the text, appends EOS, and puts the loss on every token", () => {
    const data = buildDataset('{"text":"Hello world"}\n{"text":"Hi"}\n', tok, {
      source: "c.jsonl",
    });
    expect(data.format).toBe("completion");
    expect(data.examples).toEqual([
      {
        inputIds: [...HELLO, ...WORLD, EOS],
        labels: [...HELLO, ...WORLD, EOS],
        line: 1,
        key: expect.any(String),
      },
      {
        inputIds: [...HI, EOS],
        labels: [...HI, EOS],
        line: 2,
        key: expect.any(String),
      },
    ]);
  });

  it("reads plain text line by line", () => {
    const data = buildDataset(readDataset("plain.txt"), tok, {
      source: "plain.txt",
    });
    expect(data.fileType).toBe("text");
    expect(data.examples.map((e) => [tok.decode(e.inputIds), e.line])).toEqual([
      ["Hello world<|im_end|>", 1],
      ["Hi there<|im_end|>", 3],
      ["Paris.<|im_end|>", 4],
    ]);
  });

  it("cuts plain text into blocks of N characters, EOS after the last only", () => {
    const data = buildDataset("Hello\nworld!", tok, {
      source: "p.txt",
      textBlocks: { size: 5, unit: "chars" },
    });
    expect(data.examples.map((e) => [tok.decode(e.inputIds), e.line])).toEqual([
      ["Hello", 1],
      ["\nworl", 1],
      ["d!<|im_end|>", 2],
    ]);
  });

  it("cuts plain text into blocks of N tokens of the whole file, EOS at its end", () => {
    const data = buildDataset("Hello world\nHi", tok, {
      source: "p.txt",
      textBlocks: { size: 4, unit: "tokens" },
    });
    const all = [...tok.encode("Hello world\nHi"), EOS];
    expect(data.examples.map((e) => e.inputIds)).toEqual([
      all.slice(0, 4),
      all.slice(4, 8),
      all.slice(8),
    ]);
    expect(
      data.examples.every((e) => e.labels.join() === e.inputIds.join()),
    ).toBe(true);
    expect(() =>
      buildDataset("a b", tok, {
        source: "p.txt",
        format: "chat",
        textBlocks: { size: 4, unit: "tokens" },
      }),
    ).toThrow(/textBlocks makes completion examples/);
    expect(() =>
      buildDataset('{"text":"a"}', tok, {
        source: "a.jsonl",
        textBlocks: { size: 4, unit: "tokens" },
      }),
    ).toThrow(ConfigError);
  });
});

describe("instruction", () => {
  it("{prompt, completion}: prompt verbatim, loss on the completion and EOS", () => {
    const data = buildDataset('{"prompt":"Hi","completion":" world"}', tok, {
      source: "i.jsonl",
    });
    expect(data.format).toBe("instruction");
    const [example] = data.examples;
    expect(example).toEqual({
      inputIds: [...HI, ...WORLD, EOS],
      labels: [I, I, ...WORLD, EOS],
      prompt: "Hi",
      completion: " world",
      line: 1,
      key: expect.any(String),
    });
  });

  it("Alpaca rows use the Stanford Alpaca prompt, with or without input", () => {
    const data = buildDataset(readDataset("alpaca.jsonl"), tok, {
      source: "alpaca.jsonl",
      dedupe: false,
    });
    const [withInput, noInput, noField] = data.examples;
    const expected =
      "Below is an instruction that describes a task, paired with an input that provides further context. " +
      "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd\n\n### Input:\n2+3?" +
      "\n\n### Response:\n";
    expect(withInput!.prompt).toBe(expected);
    const promptIds = tok.encode(expected);
    expect(withInput!.inputIds).toEqual([...promptIds, 20, EOS]); // "5" is token 20
    expectLossAfter(withInput!, promptIds.length);
    expect(noInput!.prompt).toBe(
      alpacaPrompt({ instruction: "Hi", input: "" }),
    );
    expect(noInput!.prompt).not.toContain("### Input:");
    expect(noField!.inputIds).toEqual(noInput!.inputIds);
    expect(noInput!.labels.slice(-2)).toEqual([388, EOS]); // " there", EOS
  });

  it("a custom template function makes the prompt", () => {
    const data = buildDataset(
      '{"instruction":"Hi","input":"x","output":"5"}',
      tok,
      {
        source: "a.jsonl",
        instructionTemplate: ({ instruction }) => `${instruction} world`,
      },
    );
    expect(data.examples[0]!.inputIds).toEqual([...HI, ...WORLD, 20, EOS]);
    expect(data.examples[0]!.labels).toEqual([I, I, I, I, I, I, I, 20, EOS]);
  });

  it('with instructionTemplate "chat", renders a user and an assistant turn with the chat template', () => {
    const data = buildDataset('{"prompt":"Hi","completion":"Hello"}', tok, {
      source: "i.jsonl",
      instructionTemplate: "chat",
    });
    const chat = tok.encodeChat([
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello" },
    ]);
    const example = data.examples[0]!;
    expect(example.inputIds).toEqual(chat.ids);
    // loss on "Hello<|im_end|>\n", the assistant turn
    expect(example.labels.slice(-5)).toEqual([...HELLO, EOS, 198]);
    expectLossAfter(example, chat.ids.length - 5);
  });
});

describe("chat", () => {
  it("renders with the chat template, loss on assistant turns only (fixture)", () => {
    const data = buildDataset(readDataset("chat.jsonl"), tok, {
      source: "chat.jsonl",
      onError: "skip",
    });
    expect(data.format).toBe("chat");
    expect(data.examples).toHaveLength(2);
    const [one, two] = data.examples;
    expect(tok.decode(one!.inputIds)).toBe(
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" +
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n",
    );
    expectLossAfter(one!, one!.inputIds.length - 5);
    // two assistant turns: "Hello<|im_end|>\n" and "Hi<|im_end|>\n"
    const lossTokens = two!.labels.filter((l) => l !== I);
    expect(lossTokens).toEqual([...HELLO, EOS, 198, ...HI, EOS, 198]);
    expect(data.report.dropped).toEqual({
      empty: 1,
      duplicate: 0,
      tooLong: 0,
      malformed: 1,
    });
    expect(data.report.rows.map((r) => [r.line, r.reason])).toEqual([
      [3, "empty"],
      [4, "malformed"],
    ]);
  });

  it("names the line and field of a message with a wrong type", () => {
    const run = () =>
      buildDataset(readDataset("chat.jsonl"), tok, { source: "chat.jsonl" });
    expect(run).toThrow(
      /^chat\.jsonl, line 4: field "messages\[1\]\.content" is a number; expected a string/,
    );
    try {
      run();
    } catch (e) {
      expect((e as RowFormatError).field).toBe("messages[1].content");
    }
  });
});

describe("classification", () => {
  it('renders "text\\nLabel: label" EOS with loss on " label" EOS, and keeps the sorted label set', () => {
    const data = buildDataset(
      '{"text":"Hello","label":"pos"}\n{"text":"Hi","label":"neg"}',
      tok,
      {
        source: "c.jsonl",
      },
    );
    expect(data.format).toBe("classification");
    expect(data.labels).toEqual(["neg", "pos"]);
    const prefix = [...HELLO, 198, 43, 64, 65, 273, 25]; // "Hello\nLabel:"
    expect(data.examples[0]).toEqual({
      inputIds: [...prefix, 369, 78, 82, EOS], // " pos"
      labels: [...prefix.map(() => I), 369, 78, 82, EOS],
      prompt: "Hello\nLabel:",
      completion: " pos",
      label: "pos",
      // The text alone, which a sequence-classification head reads.
      text: "Hello",
      line: 1,
      key: expect.any(String),
    });
  });

  it("classificationPair gives evaluation the same prefix and label tokens as training", () => {
    const data = buildDataset(readDataset("classify.csv"), tok, {
      source: "classify.csv",
    });
    expect(data.labels).toEqual(["neg", "neu", "pos"]);
    for (const example of data.examples) {
      const text = example.prompt!.slice(0, -"\nLabel:".length);
      const { prefixIds, labelIds } = classificationPair(
        tok,
        text,
        example.label!,
      );
      expect(example.inputIds).toEqual([...prefixIds, ...labelIds]);
      expectLossAfter(example, prefixIds.length);
    }
  });

  it("takes numeric labels as text and a custom separator", () => {
    const data = buildDataset('{"text":"Hi","label":1}', tok, {
      source: "c.jsonl",
      classificationTemplate: { separator: " world", labelPrefix: "" },
    });
    expect(data.labels).toEqual(["1"]);
    expect(data.examples[0]!.inputIds).toEqual([...HI, ...WORLD, 16, EOS]);
    expect(data.examples[0]!.labels).toEqual([I, I, I, I, I, I, I, 16, EOS]);
  });
});

describe("tokens", () => {
  it("keeps pre-tokenized ids, with labels as given or equal to the ids", () => {
    const data = buildDataset(readDataset("tokens.jsonl"), tok, {
      source: "tokens.jsonl",
    });
    expect(data.format).toBe("tokens");
    expect(data.examples).toEqual([
      {
        inputIds: [1, 2, 3],
        labels: [1, 2, 3],
        line: 1,
        key: expect.any(String),
      },
      {
        inputIds: [4, 5, 6],
        labels: [I, 5, 6],
        line: 2,
        key: expect.any(String),
      },
    ]);
  });

  it("names bad ids and mismatched labels", () => {
    const build = (row: string) => () =>
      buildDataset(row, tok, { source: "t.jsonl" });
    expect(build('{"input_ids":[1,-2]}')).toThrow(
      /line 1: field "input_ids\[1\]" is -2; expected a token id/,
    );
    expect(build('{"input_ids":[1,2],"labels":[1]}')).toThrow(
      /field "labels" has 1 entries; input_ids has 2/,
    );
    expect(build('{"input_ids":"nope"}')).toThrow(
      /field "input_ids" is a string; expected an array/,
    );
  });

  it("reads JSON arrays from CSV cells", () => {
    const data = buildDataset('input_ids,labels\n"[1,2]","[-100,2]"\n', tok, {
      source: "t.csv",
    });
    expect(data.examples[0]).toMatchObject({
      inputIds: [1, 2],
      labels: [I, 2],
    });
  });
});

describe("explicit format", () => {
  it("reads every row in the given format and names missing fields", () => {
    const run = () =>
      buildDataset('{"text":"a","label":"x"}', tok, {
        source: "d.jsonl",
        format: "instruction",
      });
    expect(run).toThrow(FormatError);
    expect(run).toThrow(/line 1: field "prompt" is missing; expected a string/);
    const data = buildDataset('{"text":"Hi","label":"x"}', tok, {
      source: "d.jsonl",
      format: "completion",
    });
    expect(data.examples[0]!.inputIds).toEqual([...HI, EOS]);
  });
});

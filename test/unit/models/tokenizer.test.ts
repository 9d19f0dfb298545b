/**
 * The tokenizer wrapper on the tiny fixtures of test/fixtures/tokenizers/ (made by scripts/make_test_tokenizer.ts):
 * round trips, special tokens, BOS handling, chat templates, the assistant mask, and the errors users meet.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import {
  Tokenizer,
  type ChatMessage,
  type TokenizerFiles,
} from "../../../packages/core/src/models/tokenizer.js";

type Fixture = "tiny-chatml" | "tiny-llama3";

function readFixture(name: Fixture, file: string): string {
  const url = new URL(
    `../../fixtures/tokenizers/${name}/${file}`,
    import.meta.url,
  );
  return readFileSync(url, "utf8");
}

function files(name: Fixture): TokenizerFiles {
  return {
    tokenizerJson: readFixture(name, "tokenizer.json"),
    tokenizerConfig: JSON.parse(readFixture(name, "tokenizer_config.json")),
    ...(name === "tiny-llama3"
      ? { generationConfig: readFixture(name, "generation_config.json") }
      : {}),
  };
}

const load = (name: Fixture) =>
  Tokenizer.fromFiles(files(name), { source: name });

/** files(name) with tokenizer_config.json edited. */
function withConfig(
  name: Fixture,
  edit: (config: Record<string, unknown>) => void,
): TokenizerFiles {
  const f = files(name);
  edit(f.tokenizerConfig as Record<string, unknown>);
  return f;
}

const conversation: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "What is the capital of France?" },
  { role: "assistant", content: "Paris." },
  { role: "user", content: "And of Italy?" },
  { role: "assistant", content: "Rome, since 1871." },
  { role: "user", content: "Thanks! 😀" },
  { role: "assistant", content: "You're welcome." },
];

afterEach(() => {
  vi.restoreAllMocks();
});

describe("byte-level BPE round trips (tiny-chatml)", () => {
  const texts = {
    ascii: "Hello world! The capital of France is Paris.",
    punctuation:
      "It's 2024: we're 365 days in; don't   stop (ok?) [x] {y} #1 -> a+b",
    accents: "Le café est très bon. Où est la gare? Über naïve crème brûlée",
    emoji: "😀 thumbs 👍🏽 family 👩‍👩‍👧 flag 🇫🇷",
    cjk: "東京は日本の首都です。北京是中国的首都。서울",
    whitespace: "  two  leading\tand\ttabs \n\n\r\n trailing   ",
    newlinesOnly: "\n\n\n",
  };

  for (const [what, text] of Object.entries(texts)) {
    it(`decode(encode(text)) gives back ${what} text exactly`, async () => {
      const tok = await load("tiny-chatml");
      const ids = tok.encode(text);
      expect(
        ids.every((id) => Number.isInteger(id) && id < tok.vocabSize),
      ).toBe(true);
      expect(tok.decode(ids)).toBe(text);
    });
  }

  it("encodes as Hugging Face tokenizers (Rust) does", async () => {
    const tok = await load("tiny-chatml");
    // ids from tokenizers 0.23 `Tokenizer.from_file(...).encode(text).ids` on this fixture.
    expect(tok.encode(texts.ascii)).toEqual([
      39, 343, 78, 278, 78, 81, 75, 67, 0, 319, 328, 331, 361, 281, 363, 337,
      346, 13,
    ]);
    expect(tok.encode("café 😀 naïve 東京 ")).toEqual([
      66, 64, 69, 360, 220, 172, 253, 246, 222, 368, 64, 127, 107, 85, 68, 220,
      162, 251, 109, 160, 118, 105, 220,
    ]);
  });

  it("encodes the empty string to no ids, and decodes no ids to the empty string", async () => {
    const tok = await load("tiny-chatml");
    expect(tok.encode("")).toEqual([]);
    expect(tok.decode([])).toBe("");
  });

  it("decodes typed arrays like plain ones", async () => {
    const tok = await load("tiny-chatml");
    const ids = tok.encode(texts.accents);
    expect(tok.decode(Int32Array.from(ids))).toBe(texts.accents);
  });
});

describe("special tokens (tiny-chatml)", () => {
  it("reads the special token ids from tokenizer_config.json", async () => {
    const tok = await load("tiny-chatml");
    expect(tok.vocabSize).toBe(393);
    expect(tok.tokenToId("<|endoftext|>")).toBe(390);
    expect(tok.bosTokenId).toBe(391); // SmolLM2 names <|im_start|> its bos_token
    expect(tok.eosTokenId).toBe(392);
    expect(tok.padTokenId).toBe(392);
    expect(tok.unkTokenId).toBe(390);
    expect(tok.stopTokenIds).toEqual([392]);
    expect(tok.source).toBe("tiny-chatml");
  });

  it("maps tokens and ids both ways, in the vocabulary's byte-level form", async () => {
    const tok = await load("tiny-chatml");
    expect(tok.idToToken(392)).toBe("<|im_end|>");
    expect(tok.tokenToId("Ġthe")).toBeDefined();
    expect(tok.idToToken(tok.tokenToId("Ġthe")!)).toBe("Ġthe");
    expect(tok.tokenToId("not a token")).toBeUndefined();
    expect(tok.idToToken(10_000)).toBeUndefined();
  });

  it("turns special-token text into single ids, and adds none of its own", async () => {
    const tok = await load("tiny-chatml");
    const ids = tok.encode("<|im_start|>user\nhi<|im_end|>");
    expect(ids[0]).toBe(391);
    expect(ids.at(-1)).toBe(392);
    expect(ids.filter((id) => tok.isSpecial(id))).toEqual([391, 392]);
    expect(tok.encode("hi")).toEqual(
      tok.encode("hi", { addSpecialTokens: false }),
    );
  });

  it("knows which ids are special", async () => {
    const tok = await load("tiny-chatml");
    expect([390, 391, 392].map((id) => tok.isSpecial(id))).toEqual([
      true,
      true,
      true,
    ]);
    expect(tok.isSpecial(tok.tokenToId("H")!)).toBe(false);
  });

  it("keeps special tokens when decoding, and drops them with skipSpecialTokens", async () => {
    const tok = await load("tiny-chatml");
    const ids = tok.encode(
      "<|im_start|>assistant\nSure.<|im_end|><|endoftext|>",
    );
    expect(tok.decode(ids)).toBe(
      "<|im_start|>assistant\nSure.<|im_end|><|endoftext|>",
    );
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(
      "assistant\nSure.",
    );
  });

  it("decodes an id beyond the vocabulary (a padded embedding row) to nothing, as Hugging Face does", async () => {
    const tok = await load("tiny-chatml");
    expect(tok.decode([...tok.encode("ok"), 500, -1])).toBe("ok");
  });

  it("refuses ids that are not integers", async () => {
    const tok = await load("tiny-chatml");
    expect(() => tok.decode([1, 2.5])).toThrow(ConfigError);
    expect(() => tok.decode([1, Number.NaN])).toThrow(/expected integers/);
  });

  it("accepts special tokens stored as AddedToken objects in tokenizer_config.json", async () => {
    const tok = await Tokenizer.fromFiles(
      withConfig("tiny-chatml", (c) => {
        c["eos_token"] = {
          __type: "AddedToken",
          content: "<|im_end|>",
          special: true,
        };
        c["additional_special_tokens"] = [
          { content: "<|im_start|>" },
          "<|im_end|>",
        ];
      }),
    );
    expect(tok.eosTokenId).toBe(392);
    expect(tok.isSpecial(391)).toBe(true);
  });
});

describe("BOS handling (tiny-llama3)", () => {
  it("adds BOS through the post-processor, unless addSpecialTokens is false", async () => {
    const tok = await load("tiny-llama3");
    const bos = tok.bosTokenId!;
    expect(tok.tokenToId("<|begin_of_text|>")).toBe(bos);
    const plain = tok.encode("Hello world", { addSpecialTokens: false });
    expect(tok.encode("Hello world")).toEqual([bos, ...plain]);
    expect(tok.encode("")).toEqual([bos]);
    expect(tok.decode(tok.encode("Hello world"))).toBe(
      "<|begin_of_text|>Hello world",
    );
    expect(
      tok.decode(tok.encode("Hello world"), { skipSpecialTokens: true }),
    ).toBe("Hello world");
  });

  it("writes BOS once in a chat: the template writes it, tokenizing adds none", async () => {
    const tok = await load("tiny-llama3");
    const ids = tok.applyChatTemplate(conversation, { tokenize: true });
    expect(ids[0]).toBe(tok.bosTokenId);
    expect(ids.filter((id) => id === tok.bosTokenId)).toHaveLength(1);
  });

  it("stops on the EOS token and every eos_token_id of generation_config.json", async () => {
    const tok = await load("tiny-llama3");
    expect(tok.eosTokenId).toBe(tok.tokenToId("<|eot_id|>"));
    expect(tok.stopTokenIds).toEqual([
      tok.tokenToId("<|eot_id|>"),
      tok.tokenToId("<|end_of_text|>"),
    ]);
    expect(tok.padTokenId).toBe(tok.eosTokenId); // no pad_token: EOS stands in
  });

  it("cleans up spaces before punctuation when the config says so, unless told not to", async () => {
    const tok = await load("tiny-llama3"); // clean_up_tokenization_spaces: true, as Llama 3's
    const ids = tok.encode("Hello , world !", { addSpecialTokens: false });
    expect(tok.decode(ids)).toBe("Hello, world!");
    expect(tok.decode(ids, { cleanUpTokenizationSpaces: false })).toBe(
      "Hello , world !",
    );
  });
});

describe("chat templates", () => {
  const chatml =
    "<|im_start|>system\nBe brief.<|im_end|>\n" +
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
    "<|im_start|>assistant\nParis.<|im_end|>\n" +
    "<|im_start|>user\nAnd of Italy?<|im_end|>\n" +
    "<|im_start|>assistant\nRome, since 1871.<|im_end|>\n" +
    "<|im_start|>user\nThanks! 😀<|im_end|>\n" +
    "<|im_start|>assistant\nYou're welcome.<|im_end|>\n";

  it("renders ChatML exactly, with and without the generation prompt", async () => {
    const tok = await load("tiny-chatml");
    expect(tok.applyChatTemplate(conversation)).toBe(chatml);
    expect(
      tok.applyChatTemplate(conversation, { addGenerationPrompt: true }),
    ).toBe(chatml + "<|im_start|>assistant\n");
  });

  it("adds SmolLM2's default system prompt when the conversation has none", async () => {
    const tok = await load("tiny-chatml");
    const text = tok.applyChatTemplate([{ role: "user", content: "Hi" }], {
      addGenerationPrompt: true,
    });
    expect(text).toBe(
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" +
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("renders Llama 3 exactly, with BOS and trimmed contents", async () => {
    const tok = await load("tiny-llama3");
    const messages = [
      { role: "user", content: "  Hi there \n" },
      { role: "assistant", content: "Hello!" },
    ];
    const expected =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>";
    expect(tok.applyChatTemplate(messages)).toBe(expected);
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: true })).toBe(
      expected + "<|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("tokenizes the rendered text without adding special tokens", async () => {
    const tok = await load("tiny-chatml");
    expect(tok.applyChatTemplate(conversation, { tokenize: true })).toEqual(
      tok.encode(chatml, { addSpecialTokens: false }),
    );
  });

  it("picks a template by name from a list, `default` when none is named", async () => {
    const tok = await Tokenizer.fromFiles(
      withConfig("tiny-chatml", (c) => {
        c["chat_template"] = [
          {
            name: "default",
            template: "{% for m in messages %}{{ m.content }};{% endfor %}",
          },
          {
            name: "shout",
            template:
              "{% for m in messages %}{{ m.content | upper }}!{% endfor %}",
          },
        ];
      }),
    );
    const messages = [{ role: "user", content: "hi" }];
    expect(tok.chatTemplateNames).toEqual(["default", "shout"]);
    expect(tok.applyChatTemplate(messages)).toBe("hi;");
    expect(tok.applyChatTemplate(messages, { templateName: "shout" })).toBe(
      "HI!",
    );
    expect(() =>
      tok.applyChatTemplate(messages, { templateName: "tool_use" }),
    ).toThrow(/no chat template named "tool_use"; it has "default", "shout"/);
  });

  it("prefers chat_template.jinja's text to tokenizer_config.json's template", async () => {
    const tok = await Tokenizer.fromFiles({
      ...files("tiny-chatml"),
      chatTemplate:
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
    });
    expect(tok.applyChatTemplate([{ role: "user", content: "hi" }])).toBe(
      "[user] hi\n",
    );
  });
});

describe("assistant mask", () => {
  it("marks exactly the assistant turns of a 3-turn ChatML conversation", async () => {
    const tok = await load("tiny-chatml");
    // The conversation as prompt and answer pieces, written out by hand.
    const pieces: [text: string, trained: boolean][] = [
      [
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n",
        false,
      ],
      ["<|im_start|>assistant\n", false],
      ["Paris.<|im_end|>\n", true],
      [
        "<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n",
        false,
      ],
      ["Rome, since 1871.<|im_end|>\n", true],
      [
        "<|im_start|>user\nThanks! 😀<|im_end|>\n<|im_start|>assistant\n",
        false,
      ],
      ["You're welcome.<|im_end|>\n", true],
    ];
    const expectedIds = pieces.flatMap(([text]) => tok.encode(text));
    const expectedMask = pieces.flatMap(([text, trained]) =>
      tok.encode(text).map(() => (trained ? 1 : 0)),
    );

    const enc = tok.encodeChat(conversation);
    expect(enc.text).toBe(pieces.map(([text]) => text).join(""));
    expect(enc.ids).toEqual(expectedIds);
    expect(enc.ids).toEqual(
      tok.applyChatTemplate(conversation, { tokenize: true }),
    );
    expect(enc.assistantMask).toEqual(expectedMask);
    expect(enc.assistantSpans.map((s) => s.messageIndex)).toEqual([2, 4, 6]);
    expect(
      enc.assistantSpans.map(({ start, end }) =>
        tok.decode(enc.ids.slice(start, end)),
      ),
    ).toEqual([
      "Paris.<|im_end|>\n",
      "Rome, since 1871.<|im_end|>\n",
      "You're welcome.<|im_end|>\n",
    ]);
  });

  it("marks the assistant turns of a Llama 3 conversation, end-of-turn token included", async () => {
    const tok = await load("tiny-llama3");
    const enc = tok.encodeChat(conversation);
    expect(enc.ids).toEqual(
      tok.applyChatTemplate(conversation, { tokenize: true }),
    );
    const masked = enc.assistantSpans.map(({ start, end }) =>
      tok.decode(enc.ids.slice(start, end)),
    );
    expect(masked).toEqual([
      "Paris.<|eot_id|>",
      "Rome, since 1871.<|eot_id|>",
      "You're welcome.<|eot_id|>",
    ]);
    const eot = tok.tokenToId("<|eot_id|>")!;
    // Every <|eot_id|> that closes an assistant turn is trained, the others are not.
    const eotMask = enc.ids.flatMap((id, i) =>
      id === eot ? [enc.assistantMask[i]] : [],
    );
    expect(eotMask).toEqual([0, 0, 1, 0, 1, 0, 1]);
  });

  it("counts a token that straddles a turn boundary as part of the assistant turn", async () => {
    const tok = await load("tiny-chatml");
    // No newline after the header, so BPE merges "assistant" with the answer's first letters: " the" spans both.
    const ids = tok.encode(" the");
    expect(ids).toHaveLength(1);
    const glued =
      "{% for m in messages %}{% if m.role == 'assistant' %} t{% endif %}{{ m.content }}|{% endfor %}" +
      "{% if add_generation_prompt %} t{% endif %}";
    const chat = await Tokenizer.fromFiles({
      ...files("tiny-chatml"),
      chatTemplate: glued,
    });
    const enc = chat.encodeChat([
      { role: "user", content: "q" },
      { role: "assistant", content: "he end" },
    ]);
    expect(enc.text).toBe("q| the end|");
    const [span] = enc.assistantSpans;
    expect(chat.decode(enc.ids.slice(span!.start, span!.end))).toBe(
      " the end|",
    );
  });

  it("refuses a template that renders earlier turns differently as the conversation grows", async () => {
    const tok = await Tokenizer.fromFiles({
      ...files("tiny-chatml"),
      chatTemplate:
        "{{ messages | length }}{% for m in messages %}{{ m.content }}{% endfor %}",
    });
    expect(() =>
      tok.encodeChat([
        { role: "user", content: "a" },
        { role: "assistant", content: "b" },
      ]),
    ).toThrow(/does not render conversations incrementally.*message 1/);
  });
});

describe("errors", () => {
  it("says which tokenizer has no chat template and how to give one", async () => {
    const tok = await Tokenizer.fromFiles(
      withConfig("tiny-chatml", (c) => delete c["chat_template"]),
      { source: "openai-community/gpt2" },
    );
    expect(tok.chatTemplateNames).toEqual([]);
    const messages = [{ role: "user", content: "hi" }];
    expect(() => tok.applyChatTemplate(messages)).toThrow(ConfigError);
    expect(() => tok.encodeChat(messages)).toThrow(
      /openai-community\/gpt2 has no chat template.*TokenizerFiles\.chatTemplate/,
    );
  });

  it("names the source of a tokenizer.json that is not valid JSON", async () => {
    const broken = {
      ...files("tiny-chatml"),
      tokenizerJson: '{"model": {"type": "BPE", ',
    };
    const load = Tokenizer.fromFiles(broken, { source: "my-org/broken" });
    await expect(load).rejects.toThrow(FormatError);
    await expect(load).rejects.toThrow(
      /tokenizer\.json of my-org\/broken is not valid JSON/,
    );
  });

  it("names the source of a tokenizer.json that is not a tokenizer", async () => {
    const notTokenizer = {
      ...files("tiny-chatml"),
      tokenizerJson: { vocab: {} },
    };
    await expect(
      Tokenizer.fromFiles(notTokenizer, { source: "my-org/slow" }),
    ).rejects.toThrow(/tokenizer\.json of my-org\/slow has no "model" object/);
    const unknownModel = {
      ...files("tiny-chatml"),
      tokenizerJson: { model: { type: "Mystery" } },
    };
    await expect(
      Tokenizer.fromFiles(unknownModel, { source: "my-org/odd" }),
    ).rejects.toThrow(
      /tokenizer\.json of my-org\/odd could not be read \(Unknown TokenizerModel type: Mystery\)/,
    );
    const array = { ...files("tiny-chatml"), tokenizerJson: "[]" };
    await expect(Tokenizer.fromFiles(array)).rejects.toThrow(
      /tokenizer\.json of the given tokenizer files holds an array; expected a JSON object/,
    );
  });

  it("names the field of a malformed tokenizer_config.json or generation_config.json", async () => {
    const badTemplate = withConfig(
      "tiny-chatml",
      (c) => (c["chat_template"] = 42),
    );
    await expect(
      Tokenizer.fromFiles(badTemplate, { source: "x" }),
    ).rejects.toThrow(
      /tokenizer_config\.json of x: "chat_template" is a number/,
    );
    const badToken = withConfig(
      "tiny-chatml",
      (c) => (c["eos_token"] = { id: 3 }),
    );
    await expect(Tokenizer.fromFiles(badToken)).rejects.toThrow(
      /"eos_token" is \{"id":3\}/,
    );
    const badEos = {
      ...files("tiny-chatml"),
      generationConfig: { eos_token_id: "2" },
    };
    await expect(Tokenizer.fromFiles(badEos)).rejects.toThrow(FormatError);
  });

  it("refuses text that a tokenizer without unk_token cannot encode", async () => {
    const wordPiece = {
      model: {
        type: "WordPiece",
        vocab: { hello: 0, "##s": 1 },
        continuing_subword_prefix: "##",
        max_input_chars_per_word: 100,
      },
      pre_tokenizer: { type: "WhitespaceSplit" },
      decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    };
    const tok = await Tokenizer.fromFiles(
      { tokenizerJson: wordPiece, tokenizerConfig: {} },
      { source: "hand-made" },
    );
    expect(tok.encode("hello hellos")).toEqual([0, 0, 1]);
    expect(() => tok.encode("hello world")).toThrow(
      /"hello world" has a piece that hand-made cannot encode/,
    );
  });

  it("names a message that is not {role, content}", async () => {
    const tok = await load("tiny-chatml");
    const bad = [{ role: "user", content: null }] as unknown as ChatMessage[];
    expect(() => tok.applyChatTemplate(bad)).toThrow(
      /Message 0 .* expected \{"role": string, "content": string\}/,
    );
  });

  it("wraps an error raised by the template", async () => {
    const tok = await Tokenizer.fromFiles(
      {
        ...files("tiny-chatml"),
        chatTemplate:
          "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}" +
          "{% endif %}{{ m.content }}{% endfor %}",
      },
      { source: "gemma-like" },
    );
    expect(() => tok.applyChatTemplate(conversation)).toThrow(FormatError);
    expect(() => tok.applyChatTemplate(conversation)).toThrow(
      /chat template of gemma-like failed on this conversation: System role not supported/,
    );
  });
});

describe("no network", () => {
  it("never fetches, and closes transformers.js' hub and caches", async () => {
    const fetchSpy = vi.spyOn(globalThis, "fetch");
    const tok = await load("tiny-llama3");
    tok.encodeChat(conversation);
    tok.decode(tok.encode("hi"));
    expect(fetchSpy).not.toHaveBeenCalled();
    const { env } = await import("@xenova/transformers");
    expect(env.allowRemoteModels).toBe(false);
    expect(env.allowLocalModels).toBe(false);
    expect(env.useBrowserCache).toBe(false);
    expect(env.useFSCache).toBe(false);
  });
});

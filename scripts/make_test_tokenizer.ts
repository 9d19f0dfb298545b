/**
 * Writes the tiny tokenizers under test/fixtures/tokenizers/: real byte-level BPE tokenizers (GPT-2 style: the 256
 * byte tokens, merges learned here from a short corpus, special tokens), small enough to commit and to read.
 *
 *   npx tsx scripts/make_test_tokenizer.ts
 *
 * - tiny-chatml: GPT-2 pre-tokenizer and decoder, <|endoftext|>, <|im_start|>, <|im_end|>, and SmolLM2-Instruct's
 *   ChatML template (with its default system prompt); encode adds no special tokens.
 * - tiny-llama3: the same BPE, Llama-3's special tokens, a post-processor that prepends <|begin_of_text|> (as
 *   Llama 3's does), Llama-3-Instruct's template (which writes bos_token itself), and a generation_config.json
 *   whose eos_token_id is a list.
 *
 * The output is deterministic: rerunning the script rewrites the same bytes.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as prettier from "prettier";

const OUT = fileURLToPath(
  new URL("../test/fixtures/tokenizers/", import.meta.url),
);
const NUM_MERGES = 400;

// GPT-2's pre-tokenizer split (the one ByteLevel uses when use_regex is true).
const GPT2_SPLIT =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

// Text the merges are learned from: chat words, a little code and a few accented words, so common pieces merge.
const CORPUS = `
Hello! How are you today? I am fine, thank you. What can I help you with?
You are a helpful AI assistant. The user asks a question and the assistant answers it.
The system prompt tells the assistant how to behave. Please answer the question in one sentence.
What is the capital of France? The capital of France is Paris. What is the capital of Italy? It is Rome.
Can you write a function that adds two numbers? Here is the function: def add(a, b): return a + b
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
Training a model on the user's data in the browser keeps the data on the user's machine.
We fine-tune the model with low-rank adapters, and then we export the adapter for other tools.
Le café est très bon. Où est la gare? Je voudrais un thé, s'il vous plaît. Über den Wolken.
It's 2024 and there are 365 days in a year, 24 hours in a day, and 60 minutes in an hour.
Thanks for your help! You're welcome. Let me know if there is anything else I can do for you.
`;

type Merge = readonly [string, string];

/** GPT-2's reversible map from bytes to printable characters, so that BPE never sees spaces or control bytes. */
function bytesToUnicode(): Map<number, string> {
  const printable = [
    ...range(0x21, 0x7e),
    ...range(0xa1, 0xac),
    ...range(0xae, 0xff),
  ];
  const map = new Map<number, string>();
  for (const b of printable) map.set(b, String.fromCodePoint(b));
  let next = 0;
  for (let b = 0; b < 256; b++) {
    if (!map.has(b)) map.set(b, String.fromCodePoint(256 + next++));
  }
  return map;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/** Words of the corpus in byte-level form, each with how often it occurs. */
function wordCounts(corpus: string, byteChar: Map<number, string>) {
  const encoder = new TextEncoder();
  const counts = new Map<string, number>();
  for (const word of corpus.match(GPT2_SPLIT) ?? []) {
    const chars = Array.from(encoder.encode(word), (b) => byteChar.get(b)!);
    const key = chars.join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, count]) => ({
    symbols: Array.from(key),
    count,
  }));
}

/** Classic BPE training: merge the most frequent adjacent pair, ties broken by the pair's text, until none repeats. */
function learnMerges(
  words: { symbols: string[]; count: number }[],
  maxMerges: number,
): Merge[] {
  const merges: Merge[] = [];
  while (merges.length < maxMerges) {
    const best = mostFrequentPair(words);
    if (best === undefined) break;
    merges.push(best);
    for (const word of words) word.symbols = applyMerge(word.symbols, best);
  }
  return merges;
}

function mostFrequentPair(
  words: { symbols: string[]; count: number }[],
): Merge | undefined {
  const pairs = new Map<string, number>();
  for (const { symbols, count } of words) {
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = `${symbols[i]} ${symbols[i + 1]}`;
      pairs.set(key, (pairs.get(key) ?? 0) + count);
    }
  }
  let bestKey: string | undefined;
  let bestCount = 1; // a pair seen once teaches nothing
  for (const [key, count] of pairs) {
    if (
      count > bestCount ||
      (count === bestCount && bestKey !== undefined && key < bestKey)
    ) {
      bestKey = key;
      bestCount = count;
    }
  }
  if (bestKey === undefined) return undefined;
  const [a, b] = bestKey.split(" ") as [string, string];
  return [a, b];
}

function applyMerge(symbols: string[], [a, b]: Merge): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (symbols[i] === a && symbols[i + 1] === b) {
      out.push(a + b);
      i++;
    } else {
      out.push(symbols[i]!);
    }
  }
  return out;
}

/** The model vocabulary: the 256 byte tokens in GPT-2's order, then one token per merge. */
function buildVocab(byteChar: Map<number, string>, merges: Merge[]) {
  const vocab: Record<string, number> = {};
  const order = [...byteChar.entries()].sort(
    ([, x], [, y]) => x.codePointAt(0)! - y.codePointAt(0)!,
  );
  for (const [, char] of order) vocab[char] = Object.keys(vocab).length;
  for (const [a, b] of merges) vocab[a + b] ??= Object.keys(vocab).length;
  return vocab;
}

function addedTokens(contents: string[], firstId: number) {
  return contents.map((content, i) => ({
    id: firstId + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
}

const BYTE_LEVEL = {
  type: "ByteLevel",
  add_prefix_space: false,
  trim_offsets: true,
  use_regex: true,
};

function tokenizerJson(
  vocab: Record<string, number>,
  merges: Merge[],
  specials: string[],
  postProcessor: object,
) {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens(specials, Object.keys(vocab).length),
    normalizer: null,
    pre_tokenizer: BYTE_LEVEL,
    post_processor: postProcessor,
    decoder: BYTE_LEVEL,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

// SmolLM2-Instruct's template, verbatim: ChatML with a default system prompt when the conversation has none.
const CHATML_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// Llama-3-Instruct's template, verbatim: it writes bos_token into the text itself.
const LLAMA3_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

function chatml(vocab: Record<string, number>, merges: Merge[]) {
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  return {
    "tokenizer.json": tokenizerJson(vocab, merges, specials, {
      ...BYTE_LEVEL,
      trim_offsets: false,
    }),
    "tokenizer_config.json": {
      add_prefix_space: false,
      additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
      bos_token: "<|im_start|>",
      chat_template: CHATML_TEMPLATE,
      clean_up_tokenization_spaces: false,
      eos_token: "<|im_end|>",
      model_max_length: 2048,
      pad_token: "<|im_end|>",
      tokenizer_class: "GPT2Tokenizer",
      unk_token: "<|endoftext|>",
      vocab_size: Object.keys(vocab).length + specials.length,
    },
  };
}

function llama3(vocab: Record<string, number>, merges: Merge[]) {
  const specials = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
  ];
  const firstSpecial = Object.keys(vocab).length;
  const bos = { id: "<|begin_of_text|>", type_id: 0 };
  return {
    "tokenizer.json": tokenizerJson(vocab, merges, specials, {
      type: "Sequence",
      processors: [
        { ...BYTE_LEVEL, trim_offsets: false },
        {
          type: "TemplateProcessing",
          single: [
            { SpecialToken: bos },
            { Sequence: { id: "A", type_id: 0 } },
          ],
          pair: [
            { SpecialToken: bos },
            { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { ...bos, type_id: 1 } },
            { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: {
            "<|begin_of_text|>": {
              id: "<|begin_of_text|>",
              ids: [firstSpecial],
              tokens: ["<|begin_of_text|>"],
            },
          },
        },
      ],
    }),
    "tokenizer_config.json": {
      bos_token: "<|begin_of_text|>",
      chat_template: LLAMA3_TEMPLATE,
      clean_up_tokenization_spaces: true,
      eos_token: "<|eot_id|>",
      model_input_names: ["input_ids", "attention_mask"],
      model_max_length: 8192,
      tokenizer_class: "PreTrainedTokenizerFast",
    },
    "generation_config.json": {
      bos_token_id: firstSpecial,
      eos_token_id: [firstSpecial + 1, firstSpecial + 4],
    },
  };
}

async function writeFixture(name: string, files: Record<string, object>) {
  const dir = `${OUT}${name}/`;
  mkdirSync(dir, { recursive: true });
  for (const [file, json] of Object.entries(files)) {
    // Prettier's layout, so the repo-wide `prettier --check` accepts the files as written.
    const text = await prettier.format(JSON.stringify(json), {
      parser: "json",
    });
    writeFileSync(dir + file, text);
    console.log(`${dir}${file}: ${text.length} bytes`);
  }
}

const byteChar = bytesToUnicode();
const merges = learnMerges(wordCounts(CORPUS, byteChar), NUM_MERGES);
const vocab = buildVocab(byteChar, merges);
await writeFixture("tiny-chatml", chatml(vocab, merges));
await writeFixture("tiny-llama3", llama3(vocab, merges));

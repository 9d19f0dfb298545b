/**
 * A Hugging Face tokenizer as llama.cpp's `tokenizer.ggml.*` keys (conversion/base.py `_set_vocab_gpt2` and
 * `_set_vocab_sentencepiece`, src/llama-vocab.cpp at llama.cpp 80fb11a).
 *
 * Byte-level BPE (GPT-2, SmolLM2, Qwen2) is the "gpt2" model with its merges, and a pre-tokenizer name that picks
 * llama.cpp's split regex. llama.cpp's converter finds that name by hashing a sample's token ids, which fails for
 * any vocabulary it has not seen (the demo model's); here it is read from tokenizer.json's pre_tokenizer, which is
 * what the regex must match. Gemma's byte-fallback BPE over "▁" is SentencePiece to llama.cpp (the "llama" model),
 * whose merges follow token scores: each token scores minus the rank of the merge that makes it.
 */
import { ConfigError } from "../errors.js";
import type { Tokenizer } from "../models/tokenizer.js";
import { bool, str, u32, type GgufValue } from "./format.js";

/** llama.cpp's token types (gguf-py TokenType). */
const TOKEN_TYPE = {
  normal: 1,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

interface TokenizerJson {
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: (string | [string, string])[];
    byte_fallback?: boolean;
  };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  pre_tokenizer?: PreTokenizer | null;
  normalizer?: unknown;
}

interface PreTokenizer {
  type: string;
  use_regex?: boolean;
  individual_digits?: boolean;
  pattern?: { Regex?: string; String?: string };
  pretokenizers?: PreTokenizer[];
}

/** The part of Qwen2's split regex that no other supported tokenizer has (single digits, letters after a mark). */
const QWEN2_SPLIT = String.raw`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|`;

/**
 * The `tokenizer.*` keys of a model's tokenizer, with `vocabSize` tokens (ids the tokenizer lacks, in an
 * embedding padded for speed, become unused `[PAD<id>]` tokens, as llama.cpp's converter writes them).
 *
 * @example
 * ```ts
 * const keys = vocabularyMetadata(model.tokenizer!, JSON.parse(await model.files!.text("tokenizer.json")), V);
 * ```
 */
export function vocabularyMetadata(
  tokenizer: Tokenizer,
  json: TokenizerJson,
  vocabSize: number,
): Record<string, GgufValue> {
  const model = json.model;
  if (model?.type !== "BPE" || !model.vocab)
    throw new ConfigError(
      `${tokenizer.source}: GGUF export writes BPE tokenizers; this tokenizer.json's model is ${JSON.stringify(model?.type)}.`,
    );
  const merges = (model.merges ?? []).map((m) =>
    Array.isArray(m) ? m.join(" ") : m,
  );
  const sentencePiece = model.byte_fallback === true;
  const tokens = new Array<string>(vocabSize);
  const types = new Int32Array(vocabSize).fill(TOKEN_TYPE.normal);
  for (const [token, id] of Object.entries(model.vocab)) {
    if (id >= vocabSize) throw tooLarge(tokenizer, token, id, vocabSize);
    tokens[id] = token;
    if (sentencePiece && /^<0x[0-9A-F]{2}>$/.test(token))
      types[id] = TOKEN_TYPE.byte;
  }
  for (const added of json.added_tokens ?? []) {
    if (added.id >= vocabSize)
      throw tooLarge(tokenizer, added.content, added.id, vocabSize);
    tokens[added.id] = added.content;
    types[added.id] = added.special
      ? TOKEN_TYPE.control
      : TOKEN_TYPE.userDefined;
  }
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] !== undefined) continue;
    tokens[id] = `[PAD${id}]`;
    types[id] = TOKEN_TYPE.unused;
  }
  // SentencePiece merges by token score; byte-level BPE by its merge list and the pre-tokenizer's split.
  const modelKeys: Record<string, GgufValue> = sentencePiece
    ? {
        "tokenizer.ggml.model": str("llama"),
        "tokenizer.ggml.pre": str("default"),
        "tokenizer.ggml.scores": {
          type: "array",
          of: "float32",
          value: mergeScores(tokens, merges),
        },
        "tokenizer.ggml.add_space_prefix": bool(false),
      }
    : {
        "tokenizer.ggml.model": str("gpt2"),
        "tokenizer.ggml.pre": str(preTokenizerName(tokenizer, json)),
        "tokenizer.ggml.merges": { type: "array", of: "string", value: merges },
      };
  return {
    ...modelKeys,
    "tokenizer.ggml.tokens": { type: "array", of: "string", value: tokens },
    "tokenizer.ggml.token_type": { type: "array", of: "int32", value: types },
    ...specialTokenKeys(tokenizer),
  };
}

function tooLarge(
  tokenizer: Tokenizer,
  token: string,
  id: number,
  vocabSize: number,
): ConfigError {
  return new ConfigError(
    `${tokenizer.source}: the token ${JSON.stringify(token)} has id ${id}, but the model's embedding has ${vocabSize} rows.`,
  );
}

/** Which of llama.cpp's byte-level split regexes tokenizer.json's pre_tokenizer is. */
function preTokenizerName(tokenizer: Tokenizer, json: TokenizerJson): string {
  const pre = json.pre_tokenizer;
  const steps =
    pre?.type === "Sequence" ? (pre.pretokenizers ?? []) : pre ? [pre] : [];
  const kinds = steps.map((s) => s.type).join(",");
  const byteLevel = steps.at(-1);
  if (kinds === "ByteLevel" && byteLevel?.use_regex !== false) return "gpt-2";
  if (
    kinds === "Digits,ByteLevel" &&
    steps[0]!.individual_digits &&
    byteLevel?.use_regex !== false
  )
    return "smollm";
  if (
    kinds === "Split,ByteLevel" &&
    byteLevel?.use_regex === false &&
    steps[0]!.pattern?.Regex?.includes(QWEN2_SPLIT)
  )
    return "qwen2";
  throw new ConfigError(
    `${tokenizer.source}: GGUF export knows the pre-tokenizers of GPT-2, SmolLM2 and Qwen2; this tokenizer.json's is ` +
      `${JSON.stringify(pre).slice(0, 200)}, and llama.cpp would split its text differently.`,
  );
}

/** SentencePiece scores for a BPE vocabulary: a token made by merge i scores -i, so earlier merges win. */
function mergeScores(tokens: string[], merges: string[]): Float32Array {
  const rank = new Map<string, number>();
  merges.forEach((m, i) => {
    const joined = m.replace(" ", "");
    if (!rank.has(joined)) rank.set(joined, i);
  });
  return Float32Array.from(tokens, (t) => -(rank.get(t) ?? 0));
}

/** BOS/EOS/pad/unk ids, whether encoding adds BOS or EOS, and the chat template, as webtune's tokenizer has them. */
function specialTokenKeys(tokenizer: Tokenizer): Record<string, GgufValue> {
  const keys: Record<string, GgufValue> = {};
  const ids: [string, number | undefined][] = [
    ["bos_token_id", tokenizer.bosTokenId],
    ["eos_token_id", tokenizer.eosTokenId],
    ["unknown_token_id", tokenizer.unkTokenId],
    ["padding_token_id", tokenizer.padTokenId],
  ];
  for (const [key, id] of ids)
    if (id !== undefined) keys[`tokenizer.ggml.${key}`] = u32(id);
  // What encode adds around a text is what llama.cpp must add when asked to add special tokens.
  const plain = tokenizer.encode("a", { addSpecialTokens: false });
  const special = tokenizer.encode("a", { addSpecialTokens: true });
  const addsBos =
    special.length > plain.length && special[0] === tokenizer.bosTokenId;
  const addsEos =
    special.length > plain.length && special.at(-1) === tokenizer.eosTokenId;
  keys["tokenizer.ggml.add_bos_token"] = bool(addsBos);
  keys["tokenizer.ggml.add_eos_token"] = bool(addsEos);
  const template = tokenizer.chatTemplate();
  if (template !== undefined) keys["tokenizer.chat_template"] = str(template);
  return keys;
}

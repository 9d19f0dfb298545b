/**
 * llama.cpp itself, through node-llama-cpp's prebuilt CPU binary, as the oracle for GGUF export: the tiny golden
 * models with small synthetic tokenizers (their fixtures have none), llama.cpp's next-token log-probabilities at
 * every position, and its greedy continuation.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import {
  getLlama,
  LlamaLogLevel,
  type Llama,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { GOLDEN_DIR } from "./golden.js";

let started: Promise<Llama> | undefined;

/** The CPU build that ships in the npm package: nothing is downloaded or compiled. */
export function llamaCpp(): Promise<Llama> {
  started ??= getLlama({
    gpu: false,
    build: "never",
    logLevel: LlamaLogLevel.error,
  });
  return started;
}

export async function loadGguf(path: string): Promise<LlamaModel> {
  return (await llamaCpp()).loadModel({ modelPath: path });
}

async function sequence(
  model: LlamaModel,
  lora?: string,
): Promise<LlamaContextSequence> {
  const context = await model.createContext({
    contextSize: 128,
    // ggml's CPU threads wait for each other by spinning, which crawls on shared cores; one thread does not wait.
    threads: 1,
    // llama.cpp keeps keys and values in f16 by default; the comparison is of f32 maths.
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
  });
  return context.getSequence();
}

/**
 * llama.cpp's log-probabilities of its `topK` most likely next tokens after each position of `ids`. With
 * temperature 0 node-llama-cpp softmaxes the raw logits of the whole vocabulary, so these are llama.cpp's logits
 * less their log-sum-exp.
 */
export async function llamaLogProbs(
  model: LlamaModel,
  ids: number[],
  options: { lora?: string; topK?: number } = {},
): Promise<Map<number, number>[]> {
  const seq = await sequence(model, options.lora);
  try {
    const next = {
      generateNext: { probabilities: true, options: { temperature: 0 } },
    };
    const out = await seq.controlledEvaluate(
      tokens(ids).map((t) => [t, next] as [Token, typeof next]),
    );
    return out.map((step) => {
      const probs = [...step!.next!.probabilities!.entries()].slice(
        0,
        options.topK ?? 20,
      );
      return new Map(probs.map(([t, p]) => [t, Math.log(p)]));
    });
  } finally {
    await seq.context.dispose();
  }
}

/** node-llama-cpp brands token ids; webtune's are plain numbers. */
const tokens = (ids: number[]) => ids as Token[];

/** llama.cpp's greedy continuation of `ids`. */
export async function llamaGreedy(
  model: LlamaModel,
  ids: number[],
  count: number,
  lora?: string,
): Promise<number[]> {
  const seq = await sequence(model, lora);
  try {
    const out: number[] = [];
    for await (const t of seq.evaluate(tokens(ids), { temperature: 0 })) {
      if (model.isEogToken(t)) break;
      out.push(t);
      if (out.length >= count) break;
    }
    return out;
  } finally {
    await seq.context.dispose();
  }
}

/** webtune's logits [1, T, V], one row per position. */
export async function logitRows(logits: tf.Tensor3D): Promise<Float32Array[]> {
  const values = (await logits.data()) as Float32Array;
  const V = logits.shape[2];
  return Array.from({ length: logits.shape[1] }, (_, t) =>
    values.slice(t * V, (t + 1) * V),
  );
}

/**
 * The worst relative difference between llama.cpp's logits and webtune's over llama.cpp's top tokens at every
 * position: |(logp + c) - z| / max|z|, where z is webtune's logit row and c the row's log-sum-exp, fitted as the mean
 * of z - logp over those tokens (node-llama-cpp gives probabilities, which are the logits less that constant).
 * Relative to the row's largest logit, because a logit near zero has no meaningful relative error of its own.
 */
export function worstLogitDifference(
  llama: Map<number, number>[],
  mine: Float32Array[],
): number {
  let worst = 0;
  llama.forEach((top, t) => {
    const z = mine[t]!;
    let scale = 0;
    for (const v of z) scale = Math.max(scale, Math.abs(v));
    const pairs = [...top].map(([token, lp]) => [z[token]!, lp] as const);
    const c = pairs.reduce((sum, [zi, lp]) => sum + zi - lp, 0) / pairs.length;
    for (const [zi, lp] of pairs)
      worst = Math.max(worst, Math.abs(lp + c - zi) / scale);
  });
  return worst;
}

/** The top token of each row (the same for logits and log-probabilities). */
export function argmaxRows(rows: Float32Array[]): number[] {
  return rows.map((r) => r.indexOf(Math.max(...r)));
}

const CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'!";
/** Merges in order; each joins tokens that exist by then. */
const MERGES = [
  "t h",
  "th e",
  "a t",
  "i n",
  "o n",
  "e r",
  "a n",
  "r e",
  "e n",
  "i t",
  "o r",
  "e s",
  "a r",
  "s t",
  "e d",
  "in g",
  "o u",
  "t o",
  "a l",
  "l e",
  "c at",
  "m at",
  "s at",
  "h e",
  "i s",
  "o f",
  "a s",
  "l l",
  "1 2",
  "3 4",
  "e a",
  "n d",
  "o m",
  "i c",
  "a m",
  "u r",
  "w h",
  "wh at",
  "o w",
  "c h",
  "ch e",
  "s h",
  "d e",
  "l o",
  "lo w",
  "n o",
  "g o",
  "b e",
  "u n",
  "r a",
  "l a",
  "m e",
  "p e",
  "k e",
  "f o",
  "fo r",
  "d o",
  "w e",
  "y o",
  "yo u",
  "a y",
  "a d",
  "i d",
  "s o",
  "b y",
  "t e",
  "h a",
  "h i",
  "n e",
  "c o",
  "c e",
  "r o",
  "v e",
  "l y",
  "p o",
  "c a",
  "u s",
  "m o",
  "s e",
  "a c",
  "w a",
  "i l",
  "r i",
  "l i",
];

/**
 * A copy of a tiny golden model's folder with a tokenizer of exactly its vocabulary size: byte-level BPE (the
 * pre-tokenizer chosen by `style`) or, for Gemma, SentencePiece-style byte-fallback BPE over "▁".
 */
export function tinyModelWithTokenizer(
  name: string,
  style: "gpt-2" | "smollm" | "qwen2" | "sentencepiece",
): string {
  const dir = mkdtempSync(join(tmpdir(), `webtune-gguf-${name}-`));
  cpSync(`${GOLDEN_DIR}tiny/${name}`, dir, { recursive: true });
  const config = JSON.parse(
    readFileSync(`${GOLDEN_DIR}tiny/${name}/config.json`, "utf8"),
  ) as Record<string, number>;
  const V = config["vocab_size"]!;
  const spm = style === "sentencepiece";
  const specials = spm
    ? ["<pad>", "<eos>", "<bos>", "<unk>"]
    : ["<|pad|>", "<|bos|>", "<|eos|>"];
  const bos = config["bos_token_id"]!;
  const eos = config["eos_token_id"]!;
  const tokens = [...specials, ...(spm ? ["<0x0A>", "▁"] : ["Ġ"]), ...CHARS];
  const space = spm ? "▁" : "Ġ";
  const merges: string[] = [];
  for (const m of [`${space} t`, `${space} c`, `${space} m`, ...MERGES]) {
    if (tokens.length >= V) break;
    const joined = m.replace(" ", "");
    if (tokens.includes(joined)) continue;
    tokens.push(joined);
    merges.push(m);
  }
  const vocab = Object.fromEntries(
    tokens
      .map((t, i) => [t, i] as const)
      .filter(([, i]) => i >= specials.length),
  );
  const added = specials.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenAt = (id: number) => tokens[id]!;
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: spm
      ? { type: "Replace", pattern: { String: " " }, content: "▁" }
      : null,
    pre_tokenizer: spm ? null : preTokenizer(style),
    post_processor: spm
      ? {
          type: "TemplateProcessing",
          single: [
            { SpecialToken: { id: tokenAt(bos), type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
          ],
          pair: [
            { SpecialToken: { id: tokenAt(bos), type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
            { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: {
            [tokenAt(bos)]: {
              id: tokenAt(bos),
              ids: [bos],
              tokens: [tokenAt(bos)],
            },
          },
        }
      : {
          type: "ByteLevel",
          add_prefix_space: false,
          trim_offsets: true,
          use_regex: true,
        },
    decoder: spm
      ? {
          type: "Sequence",
          decoders: [
            { type: "Replace", pattern: { String: "▁" }, content: " " },
            { type: "ByteFallback" },
            { type: "Fuse" },
          ],
        }
      : {
          type: "ByteLevel",
          add_prefix_space: false,
          trim_offsets: true,
          use_regex: true,
        },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: spm ? "<unk>" : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: spm,
      byte_fallback: spm,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      bos_token: tokenAt(bos),
      eos_token: tokenAt(eos),
      ...(spm ? { unk_token: "<unk>", pad_token: "<pad>" } : {}),
      chat_template:
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}",
    }),
  );
  return dir;
}

function preTokenizer(style: "gpt-2" | "smollm" | "qwen2"): object {
  const byteLevel = (useRegex: boolean) => ({
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: useRegex,
  });
  if (style === "gpt-2") return byteLevel(true);
  if (style === "smollm")
    return {
      type: "Sequence",
      pretokenizers: [
        { type: "Digits", individual_digits: true },
        byteLevel(true),
      ],
    };
  return {
    type: "Sequence",
    pretokenizers: [
      {
        type: "Split",
        pattern: {
          Regex:
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        behavior: "Isolated",
        invert: false,
      },
      byteLevel(false),
    ],
  };
}

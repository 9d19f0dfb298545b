/**
 * Autoregressive generation with a KV cache: the prompt runs once, then one token per step. Stops at an EOS
 * token, at a stop string, or after maxNewTokens.
 */
import { ConfigError } from "../errors.js";
import { trimBufferPool } from "../backend/buffers.js";
import type { CausalLM } from "./causal_lm.js";
import { tokenDecoder, type TokenDecoder } from "./decoder.js";
import {
  sampleNext,
  seededRandom,
  validateSampling,
  type SamplingOptions,
} from "./sampling.js";

/** The part of a tokenizer generation needs. */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
}

export interface GenerateOptions extends SamplingOptions {
  /** Default 64. */
  maxNewTokens?: number;
  /** Seed of the sampler; the same seed, prompt and options give the same tokens. Default 0. */
  seed?: number;
  /** Generation ends when the decoded continuation contains one of these; the text stops before it. */
  stop?: string[];
  /** Token ids that end generation (default: the model's eos_token_id). */
  eosTokenIds?: number[];
  /** Called after each new token, with the continuation decoded so far. */
  onToken?: (token: { id: number; text: string }) => void;
  /** Checked before each step (the prompt's prefill included): an abort rejects with its reason, cache freed. */
  signal?: AbortSignal;
  /**
   * Which path decodes (see models/decoder.ts): by default the compiled engine path wherever it is available
   * (WebGPU), else tfjs ops ("tape"). Both give the same tokens; forcing "tape" is for comparisons.
   */
  decodePath?: "engine" | "tape";
}

/** Positions a generation of `newTokens` after `prompt` tokens reaches (its last token is not fed back). */
function positionsFor(
  model: CausalLM,
  prompt: number,
  newTokens: number,
): number {
  return Math.min(model.dims.maxPositions, prompt + newTokens);
}

export interface GenerateResult {
  /** The new token ids (without the prompt, and without a final EOS). */
  ids: number[];
  /** The decoded continuation, cut before any stop string. Empty without a tokenizer. */
  text: string;
  stopReason: "eos" | "stop" | "length";
}

export async function generate(
  model: CausalLM,
  promptIds: number[],
  codec: TextCodec | undefined,
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const sampling = validateSampling(options);
  const maxNewTokens = options.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new ConfigError(
      `generate: maxNewTokens must be a positive integer, got ${maxNewTokens}.`,
    );
  }
  if (promptIds.length === 0)
    throw new ConfigError(
      "generate: the prompt is empty; give at least one token.",
    );
  if (options.stop?.length && !codec)
    throw new ConfigError(
      "generate: stop strings need a tokenizer to decode text.",
    );
  const eos = new Set(options.eosTokenIds ?? model.dims.eosTokenIds);
  const random = seededRandom(options.seed ?? 0);
  const seen = [...promptIds];
  const ids: number[] = [];
  const decoder = tokenDecoder(
    model,
    1,
    positionsFor(model, promptIds.length, maxNewTokens),
    options.decodePath,
  );
  let text = "";
  try {
    let input = promptIds;
    for (let step = 0; step < maxNewTokens; step++) {
      options.signal?.throwIfAborted();
      // The one GPU -> CPU sync of each step: the sampler runs on the CPU.
      const row = await decoder.next([input]);
      const next = sampleNext(row, seen, sampling, random);
      if (eos.has(next)) return { ids, text, stopReason: "eos" };
      ids.push(next);
      seen.push(next);
      if (codec) {
        text = codec.decode(ids, { skipSpecialTokens: true });
        const hit = firstStop(text, options.stop ?? []);
        if (hit !== undefined) {
          text = text.slice(0, hit);
          options.onToken?.({ id: next, text });
          return { ids, text, stopReason: "stop" };
        }
      }
      options.onToken?.({ id: next, text });
      input = [next];
    }
    return { ids, text, stopReason: "length" };
  } finally {
    decoder.dispose();
    trimBufferPool();
  }
}

function firstStop(text: string, stops: string[]): number | undefined {
  let first: number | undefined;
  for (const s of stops) {
    const at = s.length > 0 ? text.indexOf(s) : -1;
    if (at >= 0 && (first === undefined || at < first)) first = at;
  }
  return first;
}

/** Tokens (rows × (prompt + continuation)) in one batch of {@link greedyBatch} by default. */
export const BATCH_TOKENS = 8192;
/**
 * Rows decoded together at most. A decode step cannot be interrupted, so this bounds how long a cancelled
 * evaluation takes to stop (the prompts' prefill is the longest step).
 */
const GREEDY_ROWS = 64;

/**
 * Greedy continuations of many prompts at once, as {@link generate} with temperature 0 gives them one by one:
 * prompts of equal length share a batch (and a KV cache), each row stops at its EOS or its own budget, and a row
 * that has stopped rides along until its batch is done. For evaluation, where hundreds of short prompts would
 * otherwise each pay a full forward pass per token.
 *
 * @param maxNewTokens one budget per prompt.
 * @param batchSize rows per batch at most; by default as many as fit {@link BATCH_TOKENS}.
 * @param signal checked before each decode step: an abort rejects with its reason.
 * @param decodePath as {@link GenerateOptions.decodePath}.
 */
export async function greedyBatch(
  model: CausalLM,
  prompts: number[][],
  maxNewTokens: number[],
  eosTokenIds: number[],
  batchSize?: number,
  signal?: AbortSignal,
  decodePath?: "engine" | "tape",
): Promise<{ ids: number[]; stopReason: "eos" | "length" }[]> {
  if (maxNewTokens.length !== prompts.length)
    throw new ConfigError(
      `greedyBatch: ${prompts.length} prompts but ${maxNewTokens.length} budgets.`,
    );
  const results: { ids: number[]; stopReason: "eos" | "length" }[] =
    prompts.map(() => ({ ids: [], stopReason: "length" }));
  const byLength = new Map<number, number[]>();
  prompts.forEach((p, i) => {
    if (p.length === 0)
      throw new ConfigError(`greedyBatch: prompt ${i} is empty.`);
    byLength.set(p.length, [...(byLength.get(p.length) ?? []), i]);
  });
  const eos = new Set(eosTokenIds);
  for (const rows of byLength.values()) {
    // On small GPUs and CPU adapters each decode step costs mostly its dispatches, so rows are batched up to a
    // token budget (prompt plus continuation) that keeps the KV cache of a 0.5B model in a few hundred MiB.
    const longest = Math.max(...rows.map((r) => maxNewTokens[r]!));
    const size =
      batchSize ??
      Math.min(
        GREEDY_ROWS,
        Math.max(
          1,
          Math.floor(BATCH_TOKENS / (prompts[rows[0]!]!.length + longest)),
        ),
      );
    for (let at = 0; at < rows.length; at += size) {
      const batch = rows.slice(at, at + size);
      const decoder = tokenDecoder(
        model,
        batch.length,
        positionsFor(
          model,
          prompts[batch[0]!]!.length,
          Math.max(...batch.map((r) => maxNewTokens[r]!)),
        ),
        decodePath,
      );
      try {
        await greedyRows(
          decoder,
          batch,
          prompts,
          maxNewTokens,
          eos,
          results,
          signal,
        );
      } finally {
        decoder.dispose();
      }
      trimBufferPool(); // the tape path's KV cache grew by a token a step: buffers of every size
    }
  }
  return results;
}

async function greedyRows(
  decoder: TokenDecoder,
  rows: number[],
  prompts: number[][],
  maxNewTokens: number[],
  eos: Set<number>,
  results: { ids: number[]; stopReason: "eos" | "length" }[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const budget = Math.max(...rows.map((r) => maxNewTokens[r]!));
  const done = rows.map((r) => maxNewTokens[r]! < 1);
  let input = rows.map((r) => prompts[r]!);
  for (let step = 0; step < budget && done.includes(false); step++) {
    signal?.throwIfAborted();
    const picked = await decoder.nextGreedy(input);
    input = rows.map((r, b) => {
      const next = picked[b]!;
      if (done[b]) return [next];
      if (eos.has(next)) {
        results[r]!.stopReason = "eos";
        done[b] = true;
      } else {
        results[r]!.ids.push(next);
        if (results[r]!.ids.length >= maxNewTokens[r]!) done[b] = true;
      }
      return [next];
    });
  }
}

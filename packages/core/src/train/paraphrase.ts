/**
 * Model-level augmentation: paraphrases of training texts sampled from the base model itself, kept only where the
 * model finds them likely. A paraphrase is the model's continuation of a prompt that holds the text
 * (`"{text}\nIn other words:"`), cut at the first line break, and it is kept when:
 * - it is not empty and differs from the text and from every paraphrase kept before it (case and spacing aside);
 * - its length is within half to twice the text's, in tokens (a ramble or a stub is no paraphrase);
 * - its mean log-likelihood per token, after the prompt, is at least `minLogProb`: the filter that throws out the
 *   samples where the temperature led the model astray;
 * - that likelihood gains at least `minGain` per token from the text being in the prompt (against the prompt with
 *   the text left out): fluent text that is likely anyway, whatever the text said, is no paraphrase of it.
 *
 * Each text's samples are seeded by (seed, the text's key, the sample's number): with keys that name the texts (a
 * job passes each row's line), a text's samples do not depend on which other texts are paraphrased.
 */
import type { Tokenizer } from "../models/tokenizer.js";
import { ConfigError } from "../errors.js";
import { streamSeed } from "./data/random.js";
import { IGNORE_INDEX } from "./data/types.js";
import { rowNlls, type Scorer } from "./evaluate.js";

/** What paraphrasing uses of a model: sampling, and the loss to score what it sampled. */
export type ParaphraseModel = Scorer & {
  readonly dims: { vocabSize: number; maxPositions: number };
};

export interface ParaphraseOptions {
  /** Samples drawn per text. */
  count: number;
  /** What the model continues, `{text}` where the text goes. */
  prompt: string;
  /** Keep a sample whose mean log-likelihood per token is at least this (nats, ≤ 0). */
  minLogProb: number;
  /**
   * Keep a sample whose mean log-likelihood per token gains at least this much (nats) from the text being in the
   * prompt, against the prompt with no text: its pointwise mutual information with the text.
   */
  minGain: number;
  temperature: number;
  /** Integer seed of every sample. */
  seed: number;
  /** A non-negative integer per text that seeds its samples with `seed` (e.g. its line). Default: its index. */
  keys?: readonly number[];
  signal?: AbortSignal;
}

/** Why a sample was not kept. */
export type ParaphraseRejection =
  "empty" | "same" | "repeat" | "length" | "unlikely" | "unrelated";

/** One sample, kept or not, with the text it paraphrases. */
export interface Paraphrase {
  /** Index of the paraphrased text in the input. */
  source: number;
  /** Its number among the text's samples. */
  sample: number;
  text: string;
  /** Mean log-likelihood per token under the model, after the prompt (undefined when rejected before scoring). */
  logProb?: number;
  /** How much likelier the text in the prompt made it, per token (undefined when rejected before scoring). */
  gain?: number;
  kept: boolean;
  rejected?: ParaphraseRejection;
}

const PARAPHRASE_STREAM = 0x9a4a;

/**
 * Samples `count` paraphrases of each text and says which are kept (see the file header for the filter).
 *
 * @example
 * ```ts
 * const out = await paraphrase(model, tok, ["You will be rich."], {
 *   count: 2, prompt: "{text}\nIn other words:", minLogProb: -3.5, temperature: 0.8, seed: 0,
 * });
 * out.filter((p) => p.kept).map((p) => p.text);
 * ```
 */
export async function paraphrase(
  model: ParaphraseModel,
  tokenizer: Tokenizer,
  texts: readonly string[],
  options: ParaphraseOptions,
): Promise<Paraphrase[]> {
  if (!options.prompt.includes("{text}"))
    throw new ConfigError(
      `The paraphrase prompt ${JSON.stringify(options.prompt)} has no {text}: put {text} where the row's text goes.`,
    );
  const out: Paraphrase[] = [];
  for (const [source, text] of texts.entries()) {
    const prompt = options.prompt.replace("{text}", text);
    const promptIds = tokenizer.encode(prompt);
    const length = tokenizer.encode(text, { addSpecialTokens: false }).length;
    const seen = new Set([normal(text)]);
    const sampled: Paraphrase[] = [];
    for (let sample = 0; sample < options.count; sample++) {
      const { text: raw } = await model.generate(promptIds, {
        maxNewTokens: Math.min(
          2 * length + 4,
          Math.max(1, model.dims.maxPositions - promptIds.length),
        ),
        temperature: options.temperature,
        seed: streamSeed(
          streamSeed(
            streamSeed(options.seed, PARAPHRASE_STREAM),
            options.keys?.[source] ?? source,
          ),
          sample,
        ),
        stop: ["\n"],
        signal: options.signal,
      });
      const candidate = raw.trim();
      const rejected = screen(tokenizer, candidate, length, seen);
      if (!rejected) seen.add(normal(candidate));
      sampled.push({
        source,
        sample,
        text: candidate,
        kept: !rejected,
        ...(rejected ? { rejected } : {}),
      });
    }
    await scoreKept(model, tokenizer, promptIds, sampled, options);
    out.push(...sampled);
  }
  return out;
}

/** Why `candidate` is no paraphrase before it is scored, or undefined. */
function screen(
  tokenizer: Tokenizer,
  candidate: string,
  length: number,
  seen: Set<string>,
): ParaphraseRejection | undefined {
  if (candidate === "") return "empty";
  if (seen.has(normal(candidate))) return seen.size === 1 ? "same" : "repeat";
  const own = tokenizer.encode(candidate, { addSpecialTokens: false }).length;
  if (own < length / 2 || own > 2 * length) return "length";
  return undefined;
}

/** Scores the samples that passed the screen, in one batch, and rejects the unlikely ones. */
async function scoreKept(
  model: ParaphraseModel,
  tokenizer: Tokenizer,
  promptIds: number[],
  sampled: Paraphrase[],
  options: ParaphraseOptions,
): Promise<void> {
  const scored = sampled.filter((p) => p.kept);
  // Each sample after its own prompt, then after the prompt with no text in it: the difference is how much the
  // text made the sample likelier (its gain), which a sample unrelated to the text lacks however fluent it is.
  const blank = tokenizer.encode(options.prompt.replace("{text}", ""));
  const rows = [promptIds, blank].flatMap((prefix) =>
    scored.map((p) => {
      const ids = tokenizer.encode(` ${p.text}`, { addSpecialTokens: false });
      return {
        inputIds: [...prefix, ...ids],
        labels: [...prefix.map(() => IGNORE_INDEX), ...ids],
      };
    }),
  );
  const nlls = await rowNlls(model, rows, options.signal);
  const mean = (i: number) => {
    const { nll, tokens } = nlls[i]!;
    return tokens > 0 ? -nll / tokens : -Infinity;
  };
  scored.forEach((p, i) => {
    p.logProb = mean(i);
    p.gain = p.logProb - mean(scored.length + i);
    const rejected =
      p.logProb < options.minLogProb
        ? "unlikely"
        : p.gain < options.minGain
          ? "unrelated"
          : undefined;
    if (rejected) {
      p.kept = false;
      p.rejected = rejected;
    }
  });
}

/** A text as repeats are compared: lower case, single spaces. */
function normal(text: string): string {
  return text.toLowerCase().replace(/\s+/g, " ").trim();
}

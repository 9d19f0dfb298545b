/**
 * The few-shot baseline ("just prompt it"): the base model scored on the test rows with k training examples in
 * front of each, so that a tuning result can be read against prompting alone.
 *
 * - The draw: one seeded draw of k training rows, the same for every test row (a fixed prompt, as few-shot
 *   baselines usually are). For classification with k at least the number of labels, the draw is balanced: each
 *   label's rows are shuffled and taken in turns, label by label, then the k are shuffled into prompt order.
 * - The rendering: each example as it was trained on, prompt and completion (`text\nLabel: x` for classification,
 *   see render.ts), or the decoded text for completion data, then a separator: the EOS token (as a training row
 *   ends), or `"\n\n"` when the tokenizer has no EOS that survives a round trip through its text.
 * - The rows: the examples' text before each test row's prompt (instruction, classification: the prompt text is
 *   what evaluate() generates and scores labels from) or before its text (completion). Every prefix token is out
 *   of the loss, so loss and perplexity are over exactly the tokens that plain evaluate() scores.
 * - Too long: when a row's prompt and what is scored after it pass `maxPositions`, examples are dropped from the
 *   front until it fits, and counted. The test row itself is never cut.
 * - Per-row examples: the rendering and the fitting are {@link rowsWithShots}, which the retrieval baseline
 *   (retrieval_rows.ts: each row's nearest training rows) shares.
 */
import type { Tokenizer } from "../models/tokenizer.js";
import { ConfigError } from "../errors.js";
import { mulberry32, shuffled, streamSeed } from "./data/random.js";
import {
  IGNORE_INDEX,
  type DatasetFormat,
  type Example,
} from "./data/types.js";
import { evaluate, type EvaluationResult, type Scorer } from "./evaluate.js";

/** What building few-shot rows uses of a {@link Tokenizer}. */
export type FewShotTokenizer = Pick<
  Tokenizer,
  "encode" | "decode" | "eosTokenId"
>;

/** How messages name the options (a command line passes its flags). */
export interface FewShotOptionNames {
  /** Default `k`. */
  k: string;
  /** Default `train`. */
  train: string;
}

export interface FewShotOptions {
  /** The rows examples are drawn from: the task's training rows. */
  train: readonly Example[];
  /** The rows scored, each with the examples in front. */
  test: readonly Example[];
  /** Examples in each prompt: an integer from 0 (plain evaluation) to the number of training rows. */
  k: number;
  /** Integer seed of the draw. Default 0. */
  seed?: number;
  /** The rows' format: completion, instruction or classification. */
  format: DatasetFormat;
  /** The classes, for classification (as evaluate() takes them). */
  labels?: string[];
  /** The model's positions; longer rows lose examples from the front. Default: no limit. */
  maxPositions?: number;
  /** Instruction data: the greedy budget per row, as evaluate() takes it (default: the completion's tokens + 8). */
  exactMatchTokens?: number;
  /** After each example. Default: the EOS token's text, else `"\n\n"`. */
  separator?: string;
  /** How messages name `k` and `train`. */
  names?: Partial<FewShotOptionNames>;
}

export interface FewShotReport {
  k: number;
  seed: number;
  /** Indices into `train` of the drawn examples, in prompt order (the first is dropped first). */
  shots: number[];
  /** Whether the draw took the labels in turns (classification with k at least the number of labels). */
  balanced: boolean;
  separator: string;
  /**
   * Tokens each row is conditioned on before its own scored tokens: examples and the row's prompt (instruction,
   * classification), the examples alone (completion). Mean and max over rows.
   */
  promptTokens: { mean: number; max: number };
  /** Rows that got fewer than k examples, to stay within `maxPositions`; `minShots` is the fewest a row got. */
  shortened: number;
  minShots: number;
}

/** The few-shot rows, ready for evaluate(), and how they were made. */
export interface FewShotRows {
  rows: Example[];
  report: FewShotReport;
}

const FEW_SHOT_STREAM = 0xf5e7;
/** The formats examples can be put in front of. */
export const SHOT_FORMATS: readonly DatasetFormat[] = [
  "completion",
  "instruction",
  "classification",
];

/**
 * The test rows with k seeded training examples in front of each (see the file header for the draw, the rendering
 * and what happens to rows that get too long). k = 0 gives the test rows themselves.
 *
 * @example
 * ```ts
 * const { rows, report } = fewShotRows(tok, { train, test, k: 4, seed: 0, format: "instruction" });
 * ```
 */
export function fewShotRows(
  tokenizer: FewShotTokenizer,
  options: FewShotOptions,
): FewShotRows {
  const { train, test, k, format } = options;
  const seed = options.seed ?? 0;
  checkOptions(options, seed);
  const separator = options.separator ?? defaultSeparator(tokenizer);
  const shots = drawShots(train, k, seed, format, options.labels);
  const fitted = rowsWithShots(tokenizer, test, () => shots, {
    ...options,
    separator,
  });
  return {
    rows: fitted.rows,
    report: {
      k,
      seed,
      shots,
      balanced: isBalanced(train, k, format, options.labels),
      separator,
      promptTokens: fitted.promptTokens,
      shortened: fitted.shortened,
      minShots: fitted.kept.reduce((m, s) => Math.min(m, s.length), k),
    },
  };
}

/** What {@link rowsWithShots} reads: how rows are rendered and how long they may get. */
export type ShotRowOptions = Pick<
  FewShotOptions,
  "train" | "format" | "labels" | "maxPositions" | "exactMatchTokens"
> & { separator: string };

/** Test rows with examples in front, and what each kept. */
export interface ShotRows {
  rows: Example[];
  /** Per test row, the examples its prompt holds (indices into `train`, prompt order), after any were dropped. */
  kept: number[][];
  /** As {@link FewShotReport.promptTokens}. */
  promptTokens: { mean: number; max: number };
  /** Rows that lost examples to stay within `maxPositions`. */
  shortened: number;
}

/**
 * Each test row with its own examples in front (`shotsForRow`: indices into `train`, prompt order), rendered as
 * the file header says, examples dropped from the front of a row until it fits `maxPositions`. Shared by the fixed
 * draw ({@link fewShotRows}) and per-row retrieval (retrieval_rows.ts); not exported from the package.
 *
 * @example
 * ```ts
 * const { rows, kept } = rowsWithShots(tok, test, () => [3, 5], { train, format: "instruction", separator: "\n\n" });
 * ```
 */
export function rowsWithShots(
  tokenizer: FewShotTokenizer,
  test: readonly Example[],
  shotsForRow: (row: Example, index: number) => readonly number[],
  options: ShotRowOptions,
): ShotRows {
  const { train, format, separator } = options;
  const cache = new Map<number, string>();
  const textOf = (i: number): string => {
    let text = cache.get(i);
    if (text === undefined) {
      text = shotText(tokenizer, train[i]!) + separator;
      cache.set(i, text);
    }
    return text;
  };
  const labelTokens = Math.max(
    0,
    ...(options.labels ?? []).map((label) => labelLength(tokenizer, label)),
  );
  const limit = options.maxPositions ?? Infinity;
  const rows: Example[] = [];
  const kept: number[][] = [];
  const promptLengths: number[] = [];
  let shortened = 0;
  test.forEach((row, r) => {
    const shots = shotsForRow(row, r);
    const texts = shots.map(textOf);
    // Drop examples from the front until the row fits; with none left it is the plain row (never cut).
    let n = shots.length;
    let built = withPrefix(tokenizer, row, texts.join(""), format);
    while (n > 0 && needed(tokenizer, built, labelTokens, options) > limit) {
      n--;
      const prefix = texts.slice(shots.length - n).join("");
      built = withPrefix(tokenizer, row, prefix, format);
    }
    if (n < shots.length) shortened++;
    kept.push(shots.slice(shots.length - n));
    rows.push(built.row);
    promptLengths.push(built.promptTokens);
  });
  const sum = promptLengths.reduce((a, b) => a + b, 0);
  return {
    rows,
    kept,
    promptTokens: {
      mean: rows.length > 0 ? sum / rows.length : 0,
      max: promptLengths.reduce((a, b) => Math.max(a, b), 0),
    },
    shortened,
  };
}

/**
 * The few-shot baseline's scores: {@link fewShotRows} scored by evaluate(), so the metrics are the format's own
 * (classification accuracy, instruction exact match, loss and perplexity) on the same test rows. Score the base
 * model (with a LoraModel: inside `withAdaptersDisabled`). `maxPositions` defaults to the scorer's.
 *
 * @example
 * ```ts
 * const { result, report } = await peft.withAdaptersDisabled(() =>
 *   fewShotEvaluate(peft, tok, { train, test, k: 4, seed: 0, format: data.format, labels: data.labels }),
 * );
 * console.log(result.exactMatch, report.promptTokens.mean);
 * ```
 */
export async function fewShotEvaluate(
  scorer: Scorer & { readonly dims: { maxPositions?: number } },
  tokenizer: Tokenizer,
  options: FewShotOptions & { signal?: AbortSignal },
): Promise<{ result: EvaluationResult; report: FewShotReport }> {
  return scoreWithShots(scorer, tokenizer, options, (maxPositions) =>
    fewShotRows(tokenizer, { ...options, maxPositions }),
  );
}

/**
 * @internal Rows with examples in front, built by `build` within the scorer's positions (unless the options give
 * them), scored by evaluate() as the plain test rows would be: the few-shot and the retrieval baselines.
 */
export async function scoreWithShots<Report>(
  scorer: Scorer & { readonly dims: { maxPositions?: number } },
  tokenizer: Tokenizer,
  options: Pick<
    FewShotOptions,
    "format" | "labels" | "exactMatchTokens" | "maxPositions"
  > & { signal?: AbortSignal },
  build: (maxPositions: number | undefined) => {
    rows: Example[];
    report: Report;
  },
): Promise<{ result: EvaluationResult; report: Report }> {
  const { rows, report } = build(
    options.maxPositions ?? scorer.dims.maxPositions,
  );
  const result = await evaluate(scorer, tokenizer, rows, {
    format: options.format,
    labels: options.labels,
    exactMatchTokens: options.exactMatchTokens,
    signal: options.signal,
  });
  return { result, report };
}

function checkOptions(options: FewShotOptions, seed: number): void {
  const names = { k: "k", ...options.names };
  const { k, format } = options;
  checkShotCount(options, 0);
  if (!Number.isSafeInteger(seed))
    throw new ConfigError(`seed is ${seed}; expected an integer.`);
  if (k > 0 && !SHOT_FORMATS.includes(format))
    throw new ConfigError(
      `Few-shot prompts are built for ${SHOT_FORMATS.join(", ")} data; this is ${format} data. Pass ${names.k} 0.`,
    );
}

/** k is an integer from `min` to the number of training rows; messages name the options as the caller does. */
export function checkShotCount(
  options: Pick<FewShotOptions, "k" | "train" | "names">,
  min: number,
): void {
  const names = { k: "k", train: "train", ...options.names };
  const { k, train } = options;
  if (!Number.isSafeInteger(k) || k < min)
    throw new ConfigError(
      `${names.k} is ${k}; expected an integer >= ${min} (the examples in each prompt).`,
    );
  if (k > train.length)
    throw new ConfigError(
      `${names.k} is ${k}, but ${names.train} has ${train.length} row${train.length === 1 ? "" : "s"}; ` +
        `pass at most ${train.length}, or more training rows.`,
    );
}

/** The EOS token's text when it encodes back to EOS alone (as a training row ends), else a blank line. */
export function defaultSeparator(tokenizer: FewShotTokenizer): string {
  const eos = tokenizer.eosTokenId;
  if (eos === undefined) return "\n\n";
  const text = tokenizer.decode([eos]);
  const back = tokenizer.encode(text, { addSpecialTokens: false });
  return back.length === 1 && back[0] === eos ? text : "\n\n";
}

function isBalanced(
  train: readonly Example[],
  k: number,
  format: DatasetFormat,
  labels: string[] | undefined,
): boolean {
  return (
    format === "classification" &&
    k > 0 &&
    k >= labelGroups(train, labels).length
  );
}

/** Training row indices by label: the given labels' order first, then any others; labels without rows left out. */
function labelGroups(
  train: readonly Example[],
  labels: string[] | undefined,
): number[][] {
  const groups = new Map<string, number[]>(
    (labels ?? []).map((label) => [label, []]),
  );
  train.forEach((e, i) => {
    const label = e.label ?? "";
    groups.set(label, [...(groups.get(label) ?? []), i]);
  });
  return [...groups.values()].filter((g) => g.length > 0);
}

/** k training row indices, seeded; balanced across labels for classification when k covers every label. */
function drawShots(
  train: readonly Example[],
  k: number,
  seed: number,
  format: DatasetFormat,
  labels: string[] | undefined,
): number[] {
  if (k === 0) return [];
  const random = mulberry32(streamSeed(seed, FEW_SHOT_STREAM));
  if (!isBalanced(train, k, format, labels))
    return shuffled(
      train.map((_, i) => i),
      random,
    ).slice(0, k);
  const queues = labelGroups(train, labels).map((g) => shuffled(g, random));
  const picked: number[] = [];
  for (let turn = 0; picked.length < k; turn++)
    for (const queue of queues)
      if (turn < queue.length && picked.length < k) picked.push(queue[turn]!);
  return shuffled(picked, random);
}

/** A training row as it was trained on, without its EOS: prompt and completion, or the decoded text. */
function shotText(tokenizer: FewShotTokenizer, example: Example): string {
  if (example.prompt !== undefined && example.completion !== undefined)
    return example.prompt + example.completion;
  return tokenizer.decode(example.inputIds, { skipSpecialTokens: true });
}

/** A label's scored tokens after the prompt, as evaluate() scores them: " label" and EOS. */
function labelLength(tokenizer: FewShotTokenizer, label: string): number {
  const ids = tokenizer.encode(` ${label}`, { addSpecialTokens: false });
  return ids.length + (tokenizer.eosTokenId === undefined ? 0 : 1);
}

/** The positions evaluate() needs for a row: its ids, and for generation or label scoring, the prompt and more. */
function needed(
  tokenizer: FewShotTokenizer,
  built: { row: Example; promptTokens: number },
  labelTokens: number,
  options: Pick<FewShotOptions, "format" | "exactMatchTokens">,
): number {
  const { row, promptTokens } = built;
  if (options.format === "classification")
    return Math.max(row.inputIds.length, promptTokens + labelTokens);
  if (options.format === "instruction" && row.completion !== undefined) {
    const budget =
      options.exactMatchTokens ??
      tokenizer.encode(row.completion, { addSpecialTokens: false }).length + 8;
    return Math.max(row.inputIds.length, promptTokens + budget);
  }
  return row.inputIds.length;
}

/**
 * `row` with `prefix` (examples' text) in front. Instruction and classification: the prompt becomes prefix +
 * prompt, tokenized as evaluate() tokenizes it, then the row's own completion ids. Completion: the prefix's ids,
 * then the row's ids (without the special tokens encoding adds at the start), its first token out of the loss as
 * plain evaluate() never scores position 0.
 */
function withPrefix(
  tokenizer: FewShotTokenizer,
  row: Example,
  prefix: string,
  format: DatasetFormat,
): { row: Example; promptTokens: number } {
  if (format === "completion" || row.prompt === undefined) {
    if (prefix === "") return { row, promptTokens: 0 };
    const start = tokenizer.encode("");
    const skip = start.every((id, t) => row.inputIds[t] === id)
      ? start.length
      : 0;
    const prefixIds = tokenizer.encode(prefix);
    const labels = row.labels.slice(skip);
    if (skip === 0 && labels.length > 0) labels[0] = IGNORE_INDEX;
    return {
      row: {
        ...row,
        inputIds: [...prefixIds, ...row.inputIds.slice(skip)],
        labels: [...prefixIds.map(() => IGNORE_INDEX), ...labels],
      },
      promptTokens: prefixIds.length,
    };
  }
  const own = tokenizer.encode(row.prompt);
  if (prefix === "") return { row, promptTokens: own.length };
  if (!own.every((id, t) => row.inputIds[t] === id))
    throw new ConfigError(
      `Test row at line ${row.line}: its tokens do not start with its prompt's (a row cut at the maximum length, ` +
        `or rendered with a chat template), so examples cannot be put before it. Raise the maximum length, or ` +
        `use the default instruction template.`,
    );
  const prompt = prefix + row.prompt;
  const promptIds = tokenizer.encode(prompt);
  return {
    row: {
      ...row,
      prompt,
      inputIds: [...promptIds, ...row.inputIds.slice(own.length)],
      labels: [
        ...promptIds.map(() => IGNORE_INDEX),
        ...row.labels.slice(own.length),
      ],
    },
    promptTokens: promptIds.length,
  };
}

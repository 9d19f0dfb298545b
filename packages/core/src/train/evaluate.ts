/**
 * Evaluation on held-out examples: loss and perplexity over every loss token (each row scored alone), plus the
 * task's metrics: for classification each label scored by its log-likelihood after the same prompt; for
 * instruction data the exact match of greedy generations. And the forgetting check: the same loss on a general
 * reference text with the adapter off and on.
 */
import type { GenerateOptions, GenerateResult } from "../models/generate.js";
import type { Tokenizer } from "../models/tokenizer.js";
import type { LoraModel } from "../lora/model.js";
import type { DatasetFormat, Example } from "./data/types.js";
import {
  classificationMetrics,
  confusionMatrix,
  exactMatch,
} from "./metrics.js";
import type * as tf from "@tensorflow/tfjs";
import { lossTokens } from "./trainer.js";

/** What evaluation needs of a model: a loss over labelled ids, and generation. */
export interface Scorer {
  loss(ids: number[][], labels?: number[][]): tf.Scalar;
  generate(
    prompt: string | number[],
    options?: GenerateOptions,
  ): Promise<GenerateResult>;
}

export interface EvaluationResult {
  loss: number;
  perplexity: number;
  /** Tokens the loss is over. */
  tokens: number;
  rows: number;
  accuracy?: number;
  precision?: number;
  recall?: number;
  f1?: number;
  labels?: string[];
  confusionMatrix?: number[][];
  /** Instruction data: the share of greedy generations equal to the reference completion. */
  exactMatch?: number;
}

/** The summed NLL of one row's loss tokens and their count (label t is predicted at t − 1; -100 is skipped). */
export async function rowNll(
  model: Scorer,
  inputIds: number[],
  labels: number[],
): Promise<{ nll: number; tokens: number }> {
  const tokens = lossTokens([labels]);
  if (tokens === 0) return { nll: 0, tokens: 0 };
  const loss = model.loss([inputIds], [labels]);
  const mean = (await loss.data())[0]!;
  loss.dispose();
  return { nll: mean * tokens, tokens };
}

/** The label whose tokens (and EOS) are most likely after the example's prompt. */
async function predictLabel(
  model: Scorer,
  tokenizer: Tokenizer,
  ex: Example,
  labels: string[],
): Promise<string> {
  const prefix = tokenizer.encode(ex.prompt ?? "");
  const eos = tokenizer.eosTokenId !== undefined ? [tokenizer.eosTokenId] : [];
  let best = labels[0]!;
  let bestNll = Infinity;
  for (const label of labels) {
    const input = [
      ...prefix,
      ...tokenizer.encode(` ${label}`, { addSpecialTokens: false }),
      ...eos,
    ];
    const { nll } = await rowNll(
      model,
      input,
      input.map((id, i) => (i < prefix.length ? -100 : id)),
    );
    if (nll < bestNll) [best, bestNll] = [label, nll];
  }
  return best;
}

/**
 * Loss, perplexity and the format's task metrics over `examples`.
 *
 * @example
 * ```ts
 * const r = await evaluate(peft, model.tokenizer!, splits.test, { format: data.format, labels: data.labels });
 * console.log(r.loss, r.perplexity, r.accuracy);
 * ```
 */
export async function evaluate(
  model: Scorer,
  tokenizer: Tokenizer,
  examples: Example[],
  options: {
    format: DatasetFormat;
    labels?: string[];
    exactMatchTokens?: number;
  },
): Promise<EvaluationResult> {
  let nll = 0;
  let tokens = 0;
  for (const ex of examples) {
    const row = await rowNll(model, ex.inputIds, ex.labels);
    nll += row.nll;
    tokens += row.tokens;
  }
  const result: EvaluationResult = {
    loss: nll / tokens,
    perplexity: Math.exp(nll / tokens),
    tokens,
    rows: examples.length,
  };
  if (
    options.format === "classification" &&
    options.labels &&
    options.labels.length > 0
  ) {
    const truth = examples.map((e) => e.label!);
    const predicted: string[] = [];
    for (const ex of examples)
      predicted.push(await predictLabel(model, tokenizer, ex, options.labels));
    const m = classificationMetrics(truth, predicted, {
      labels: options.labels,
    });
    Object.assign(result, {
      accuracy: m.accuracy,
      precision: m.macroPrecision,
      recall: m.macroRecall,
      f1: m.macroF1,
      labels: options.labels,
      confusionMatrix: confusionMatrix(truth, predicted, options.labels),
    });
  }
  if (options.format === "instruction") {
    const scored = examples.filter(
      (e) => e.prompt !== undefined && e.completion !== undefined,
    );
    const generated: string[] = [];
    for (const ex of scored) {
      const budget =
        options.exactMatchTokens ??
        tokenizer.encode(ex.completion!, { addSpecialTokens: false }).length +
          8;
      const { text } = await model.generate(tokenizer.encode(ex.prompt!), {
        maxNewTokens: budget,
        temperature: 0,
      });
      generated.push(text);
    }
    if (scored.length > 0)
      result.exactMatch = exactMatch(
        generated,
        scored.map((e) => e.completion!),
      );
  }
  return result;
}

/**
 * Catastrophic-forgetting check: loss and perplexity on general reference examples with the adapter disabled
 * (the base model) and enabled. A large positive delta means tuning cost general ability.
 */
export async function forgettingCheck(
  peft: LoraModel,
  tokenizer: Tokenizer,
  reference: Example[],
): Promise<{
  base: EvaluationResult;
  tuned: EvaluationResult;
  lossDelta: number;
}> {
  const base = await peft.withAdaptersDisabled(() =>
    evaluate(peft, tokenizer, reference, { format: "completion" }),
  );
  const tuned = await evaluate(peft, tokenizer, reference, {
    format: "completion",
  });
  return { base, tuned, lossDelta: tuned.loss - base.loss };
}

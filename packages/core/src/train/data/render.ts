/**
 * From a record to token ids and labels. Where a format has a prompt, the prompt and the completion are tokenized
 * separately and joined, so the prompt's tokens are exactly those that generation will start from, and labels are
 * {@link IGNORE_INDEX} on the prompt and the ids on the completion.
 *
 * Renderings (`{x}` is a field):
 * - completion: `{text}` then EOS (when the tokenizer has one); loss on everything;
 * - instruction, `{prompt, completion}`: `{prompt}` then `{completion}` EOS, verbatim as in TRL; loss on the completion;
 * - instruction, Alpaca `{instruction, input, output}`: {@link alpacaPrompt} then `{output}` EOS;
 * - instruction with `instructionTemplate: "chat"`: a user turn (the prompt; for Alpaca, instruction, a blank line
 *   and the input) and an assistant turn (the completion), rendered by the chat template; loss on the assistant turn;
 * - chat: the tokenizer's chat template (`encodeChat`); loss on assistant turns, their end-of-turn token included;
 * - classification: {@link classificationPair};
 * - tokens: as given; labels default to the ids.
 */
import type { Tokenizer } from "../../models/tokenizer.js";
import type { DatasetRecord } from "./formats.js";
import { IGNORE_INDEX } from "./types.js";

/** What the dataset code uses of a {@link Tokenizer}. */
export type DatasetTokenizer = Pick<
  Tokenizer,
  "encode" | "encodeChat" | "eosTokenId"
>;

/** The fields a custom instruction template gets: for `{prompt, completion}` rows, `instruction` is the prompt. */
export interface InstructionFields {
  instruction: string;
  input: string;
}

/**
 * How instruction rows become a prompt: `"default"` (prompts verbatim, Alpaca rows with {@link alpacaPrompt}),
 * `"chat"` (the tokenizer's chat template), or a function returning the prompt text.
 */
export type InstructionTemplate =
  "default" | "chat" | ((fields: InstructionFields) => string);

/** How a classification row becomes text; see {@link classificationPair}. */
export interface ClassificationTemplate {
  /** Between the text and the label. Default `"\nLabel:"`. */
  separator?: string;
  /** Before the label, tokenized with it. Default `" "`. */
  labelPrefix?: string;
}

export interface RenderOptions {
  instructionTemplate?: InstructionTemplate;
  classificationTemplate?: ClassificationTemplate;
  /** Which chat template, when the tokenizer has several. */
  chatTemplateName?: string;
}

/** A tokenized record, before cleaning. */
export interface Rendered {
  inputIds: number[];
  labels: number[];
  prompt?: string;
  completion?: string;
  label?: string;
  /** Classification: the row's text, which a classification head reads alone (see head_examples.ts). */
  text?: string;
}

const ALPACA_WITH_INPUT =
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
const ALPACA_NO_INPUT =
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Response:\n";

/**
 * The Stanford Alpaca prompt: the default rendering of `{instruction, input, output}` rows. With a blank input:
 * `"Below is an instruction that describes a task. Write a response that appropriately completes the
 * request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"`; otherwise the same with `"\n\n### Input:\n{input}"`
 * after the instruction (and "…a task, paired with an input that provides further context.").
 *
 * @example
 * ```ts
 * alpacaPrompt({ instruction: 'Add 2 and 3.', input: '' }).endsWith('### Response:\n'); // true
 * ```
 */
export function alpacaPrompt({
  instruction,
  input,
}: InstructionFields): string {
  const template = input.trim() === "" ? ALPACA_NO_INPUT : ALPACA_WITH_INPUT;
  return template
    .replace("{instruction}", () => instruction)
    .replace("{input}", () => input);
}

/**
 * The classification rendering, shared by training and evaluation: the prefix `text + separator` tokenized with
 * the tokenizer's special tokens (e.g. BOS), and the label `labelPrefix + label` tokenized without, then EOS. The
 * training example is `prefixIds ++ labelIds` with loss on `labelIds`; evaluation scores each label by the
 * log-likelihood of its `labelIds` after the same `prefixIds` (EOS included, so that a label that is a prefix of
 * another, like "pos" and "positive", is not favoured).
 *
 * @example
 * ```ts
 * const { prefixIds, labelIds } = classificationPair(tok, 'great film', 'pos'); // text "great film\nLabel: pos"
 * ```
 */
export function classificationPair(
  tokenizer: DatasetTokenizer,
  text: string,
  label: string,
  template: ClassificationTemplate = {},
): {
  prompt: string;
  completion: string;
  prefixIds: number[];
  labelIds: number[];
} {
  const prompt = text + (template.separator ?? "\nLabel:");
  const completion = (template.labelPrefix ?? " ") + label;
  return {
    prompt,
    completion,
    prefixIds: tokenizer.encode(prompt),
    labelIds: withEos(
      tokenizer,
      tokenizer.encode(completion, { addSpecialTokens: false }),
    ),
  };
}

/** Tokenizes a record; throws the tokenizer's FormatError when a text cannot be encoded or rendered. */
export function renderRecord(
  record: DatasetRecord,
  tokenizer: DatasetTokenizer,
  options: RenderOptions = {},
): Rendered {
  switch (record.format) {
    case "completion":
      return completionText(tokenizer, record.text, true);
    case "instruction":
    case "alpaca":
      return instruction(record, tokenizer, options);
    case "chat":
      return chat(tokenizer, record.messages, options.chatTemplateName);
    case "classification": {
      const pair = classificationPair(
        tokenizer,
        record.text,
        record.label,
        options.classificationTemplate,
      );
      return {
        ...promptAndCompletion(pair.prefixIds, pair.labelIds),
        prompt: pair.prompt,
        completion: pair.completion,
        label: record.label,
        text: record.text,
      };
    }
    case "tokens":
      return {
        inputIds: record.inputIds,
        labels: record.labels ?? [...record.inputIds],
      };
  }
}

/** Plain text with loss on every token; EOS appended when `eos` and the tokenizer has one. */
export function completionText(
  tokenizer: DatasetTokenizer,
  text: string,
  eos: boolean,
): Rendered {
  const ids = tokenizer.encode(text);
  const inputIds = eos ? withEos(tokenizer, ids) : ids;
  return { inputIds, labels: [...inputIds] };
}

function instruction(
  record: Extract<DatasetRecord, { format: "instruction" | "alpaca" }>,
  tokenizer: DatasetTokenizer,
  options: RenderOptions,
): Rendered {
  const fields: InstructionFields =
    record.format === "alpaca"
      ? { instruction: record.instruction, input: record.input }
      : { instruction: record.prompt, input: "" };
  const template = options.instructionTemplate ?? "default";
  if (template === "chat") {
    const user =
      fields.input.trim() === ""
        ? fields.instruction
        : `${fields.instruction}\n\n${fields.input}`;
    const messages = [
      { role: "user", content: user },
      { role: "assistant", content: record.completion },
    ];
    return {
      ...chat(tokenizer, messages, options.chatTemplateName),
      prompt: user,
      completion: record.completion,
    };
  }
  const prompt =
    typeof template === "function"
      ? template(fields)
      : record.format === "alpaca"
        ? alpacaPrompt(fields)
        : record.prompt;
  const completionIds = withEos(
    tokenizer,
    tokenizer.encode(record.completion, { addSpecialTokens: false }),
  );
  return {
    ...promptAndCompletion(tokenizer.encode(prompt), completionIds),
    prompt,
    completion: record.completion,
  };
}

function chat(
  tokenizer: DatasetTokenizer,
  messages: { role: string; content: string }[],
  templateName: string | undefined,
): Rendered {
  const options = templateName === undefined ? {} : { templateName };
  const { ids, assistantMask } = tokenizer.encodeChat(messages, options);
  return {
    inputIds: ids,
    labels: ids.map((id, t) => (assistantMask[t] === 1 ? id : IGNORE_INDEX)),
  };
}

function promptAndCompletion(
  promptIds: number[],
  completionIds: number[],
): Rendered {
  return {
    inputIds: [...promptIds, ...completionIds],
    labels: [...promptIds.map(() => IGNORE_INDEX), ...completionIds],
  };
}

function withEos(tokenizer: DatasetTokenizer, ids: number[]): number[] {
  return tokenizer.eosTokenId === undefined
    ? ids
    : [...ids, tokenizer.eosTokenId];
}

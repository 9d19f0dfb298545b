/**
 * Chat templates: which Jinja template a tokenizer renders conversations with, and where each assistant turn lies
 * in the result, so that training can put its loss on assistant tokens only.
 *
 * Assistant turns are located by rendering the conversation incrementally, the way the model meets it at
 * inference: for assistant message i, everything up to `render(messages[:i], addGenerationPrompt=true)` is prompt,
 * and the text up to `render(messages[:i+1])` is what the model must write (content, end-of-turn token, and
 * whatever the template puts after it). This needs no `{% generation %}` markers in the template, only that
 * rendering a shorter conversation gives a prefix of the longer one, which holds for ChatML, Llama 3, Gemma,
 * Mistral and the like; a template for which it fails gets a clear error rather than a wrong mask.
 */
import { ConfigError, FormatError } from "../errors.js";

/** One message of a conversation, as in Hugging Face chat datasets and `apply_chat_template`. */
export interface ChatMessage {
  /** `system`, `user` or `assistant` (the roles that chat templates know). */
  role: string;
  content: string;
}

/** Options for rendering a conversation with the tokenizer's chat template. */
export interface ChatTemplateOptions {
  /**
   * End with the header of a new assistant turn (e.g. `<|im_start|>assistant\n`), so the model answers next.
   * Default false.
   */
  addGenerationPrompt?: boolean;
  /**
   * Which template, when tokenizer_config.json lists several by name (e.g. `default`, `tool_use`).
   * Default `default`, or the only one.
   */
  templateName?: string;
}

/** The token positions `[start, end)` of one message in a tokenized conversation. */
export interface TokenSpan {
  /** Index of the message in the conversation. */
  messageIndex: number;
  start: number;
  end: number;
}

/** A conversation rendered and tokenized for training, with the tokens that the loss applies to. */
export interface ChatEncoding {
  /** The rendered conversation (no generation prompt). */
  text: string;
  /** Token ids of `text`, exactly as `applyChatTemplate(messages, { tokenize: true })` returns them. */
  ids: number[];
  /** 1 for each token of an assistant turn (the loss goes there), 0 for prompts; `ids.length` long. */
  assistantMask: (0 | 1)[];
  /** The token span of each assistant message, in conversation order. */
  assistantSpans: TokenSpan[];
}

/** A range of characters `[start, end)` of a rendered conversation. */
export interface CharSpan {
  messageIndex: number;
  start: number;
  end: number;
}

/** Renders a conversation with the chosen template; `addGenerationPrompt` as in {@link ChatTemplateOptions}. */
export type RenderChat = (
  messages: readonly ChatMessage[],
  addGenerationPrompt: boolean,
) => string;

const DEFAULT_NAME = "default";

/**
 * The tokenizer's chat templates by name. `chatTemplateFile` (the text of `chat_template.jinja`, which newer
 * checkpoints ship instead of a config field) wins over tokenizer_config.json's `chat_template`, which is either
 * one template or a list of `{name, template}`. Returns an empty map when there is none.
 */
export function readChatTemplates(
  configValue: unknown,
  chatTemplateFile: string | undefined,
  source: string,
): Map<string, string> {
  if (chatTemplateFile !== undefined) {
    return new Map([[DEFAULT_NAME, chatTemplateFile]]);
  }
  if (configValue === undefined || configValue === null) return new Map();
  if (typeof configValue === "string") {
    return new Map([[DEFAULT_NAME, configValue]]);
  }
  if (Array.isArray(configValue)) {
    return new Map(configValue.map((entry) => namedTemplate(entry, source)));
  }
  throw new FormatError(
    `tokenizer_config.json of ${source}: "chat_template" is a ${typeof configValue}; expected a string or a ` +
      `list of {"name", "template"} objects. Fix the file, or pass the template text as TokenizerFiles.chatTemplate.`,
  );
}

function namedTemplate(entry: unknown, source: string): [string, string] {
  const { name, template } = (entry ?? {}) as Record<string, unknown>;
  if (typeof name !== "string" || typeof template !== "string") {
    throw new FormatError(
      `tokenizer_config.json of ${source}: an entry of the "chat_template" list is ${JSON.stringify(entry)}; ` +
        `expected {"name": string, "template": string}. Fix the file, or pass TokenizerFiles.chatTemplate.`,
    );
  }
  return [name, template];
}

/** The template to render with: the named one, else `default`, else the only one. */
export function selectChatTemplate(
  templates: ReadonlyMap<string, string>,
  name: string | undefined,
  source: string,
): string {
  if (templates.size === 0) {
    throw new ConfigError(
      `${source} has no chat template: tokenizer_config.json has no "chat_template" and no chat_template.jinja ` +
        `was given. Use the tokenizer of a chat (Instruct) model, pass the template text as ` +
        `TokenizerFiles.chatTemplate, or format the data as plain text instead of chat messages.`,
    );
  }
  const only = templates.size === 1 ? [...templates.values()][0] : undefined;
  const template =
    templates.get(name ?? DEFAULT_NAME) ??
    (name === undefined ? only : undefined);
  if (template === undefined) {
    throw new ConfigError(
      `${source} has no chat template named "${name ?? DEFAULT_NAME}"; it has ` +
        `${[...templates.keys()].map((n) => `"${n}"`).join(", ")}. Pass one of these as templateName.`,
    );
  }
  return template;
}

/** Throws a FormatError naming the first message that is not `{role: string, content: string}`. */
export function checkMessages(
  messages: readonly ChatMessage[],
  source: string,
): void {
  messages.forEach((message, i) => {
    const { role, content } = (message ?? {}) as Partial<ChatMessage>;
    if (typeof role !== "string" || typeof content !== "string") {
      throw new FormatError(
        `Message ${i} given to the chat template of ${source} is ${JSON.stringify(message)}; expected ` +
          `{"role": string, "content": string}. Clean the dataset row before tokenizing it.`,
      );
    }
  });
}

/** Character spans of the assistant messages in `render(messages, false)`; see the file comment for how. */
export function assistantCharSpans(
  messages: readonly ChatMessage[],
  render: RenderChat,
  source: string,
): { text: string; spans: CharSpan[] } {
  const text = render(messages, false);
  const spans: CharSpan[] = [];
  messages.forEach((message, i) => {
    if (message.role !== "assistant") return;
    const prompt = render(messages.slice(0, i), true);
    const turn = render(messages.slice(0, i + 1), false);
    if (
      !text.startsWith(prompt) ||
      !text.startsWith(turn) ||
      turn.length < prompt.length
    ) {
      throw notIncremental(i, source);
    }
    spans.push({ messageIndex: i, start: prompt.length, end: turn.length });
  });
  return { text, spans };
}

function notIncremental(index: number, source: string): ConfigError {
  return new ConfigError(
    `The chat template of ${source} does not render conversations incrementally: rendering messages ` +
      `0..${index - 1} with the generation prompt, then message ${index}, does not give a prefix of the whole ` +
      `conversation, so the assistant tokens of message ${index} cannot be located. Use a template that renders ` +
      `earlier turns the same whatever follows (TokenizerFiles.chatTemplate), or train on the whole text.`,
  );
}

/**
 * Token spans of character spans of `text`, whose tokens are `ids`. A boundary's token index is how many tokens
 * of `ids` the text before it tokenizes to. Where a token straddles a boundary (BPE merged across it), the token
 * counts as part of the span, as with Hugging Face's offset-based `return_assistant_tokens_mask`.
 */
export function tokenSpans(
  text: string,
  ids: readonly number[],
  charSpans: readonly CharSpan[],
  encodeText: (text: string) => number[],
): TokenSpan[] {
  const boundary = (offset: number, side: "start" | "end"): number => {
    if (offset === 0) return 0;
    if (offset === text.length) return ids.length;
    const before = encodeText(text.slice(0, offset));
    const common = commonPrefixLength(before, ids);
    if (common === before.length || side === "start") return common;
    return Math.min(common + 1, ids.length);
  };
  return charSpans.map(({ messageIndex, start, end }) => ({
    messageIndex,
    start: boundary(start, "start"),
    end: boundary(end, "end"),
  }));
}

function commonPrefixLength(a: readonly number[], b: readonly number[]) {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** A 0/1 mask of `length` tokens, 1 inside the spans. */
export function spanMask(
  length: number,
  spans: readonly TokenSpan[],
): (0 | 1)[] {
  const mask = new Array<0 | 1>(length).fill(0);
  for (const { start, end } of spans) mask.fill(1, start, end);
  return mask;
}

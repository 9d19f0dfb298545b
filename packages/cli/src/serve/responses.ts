/**
 * The JSON that OpenAI's API answers with, for text completions and chat completions: whole responses and the
 * chunks of a stream. Field for field as in OpenAI's API reference, so its clients parse them unchanged.
 */
import { randomUUID } from "node:crypto";

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(promptTokens: number, completionTokens: number): Usage {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** The shapes of one response: the same id, creation time and model in every chunk. */
export interface ResponseShapes {
  /** The whole answer (stream: false). */
  complete(text: string, finish: FinishReason, usage: Usage): object;
  /** The stream's first chunk, before any text (chat: the assistant role), if the endpoint has one. */
  opening(): object | undefined;
  /** A piece of text. */
  text(delta: string): object;
  /** The chunk that ends the choice. */
  finish(reason: FinishReason): object;
  /** stream_options.include_usage: the last chunk, with no choices. */
  usage(usage: Usage): object;
}

interface Meta {
  id: string;
  created: number;
  model: string;
}

function meta(prefix: string, model: string): Meta {
  return {
    id: `${prefix}-${randomUUID().replaceAll("-", "")}`,
    created: Math.floor(Date.now() / 1000),
    model,
  };
}

/** POST /v1/completions: objects "text_completion", ids "cmpl-…". */
export function completionShapes(
  model: string,
  includeUsage: boolean,
): ResponseShapes {
  const m = meta("cmpl", model);
  // With include_usage, OpenAI sends "usage": null on every chunk but the last.
  const chunkUsage = includeUsage ? { usage: null } : {};
  const chunk = (text: string, finish: FinishReason | null) => ({
    ...m,
    object: "text_completion",
    choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    ...chunkUsage,
  });
  return {
    complete: (text, finish, usage) => ({ ...chunk(text, finish), usage }),
    opening: () => undefined,
    text: (delta) => chunk(delta, null),
    finish: (reason) => chunk("", reason),
    usage: (usage) => ({
      ...m,
      object: "text_completion",
      choices: [],
      usage,
    }),
  };
}

/** POST /v1/chat/completions: objects "chat.completion" and "chat.completion.chunk", ids "chatcmpl-…". */
export function chatShapes(
  model: string,
  includeUsage: boolean,
): ResponseShapes {
  const m = meta("chatcmpl", model);
  const chunkUsage = includeUsage ? { usage: null } : {};
  const chunk = (delta: object, finish: FinishReason | null) => ({
    ...m,
    object: "chat.completion.chunk",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...chunkUsage,
  });
  return {
    complete: (content, finish, usage) => ({
      ...m,
      object: "chat.completion",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content, refusal: null },
          logprobs: null,
          finish_reason: finish,
        },
      ],
      usage,
    }),
    opening: () => chunk({ role: "assistant", content: "" }, null),
    text: (delta) => chunk({ content: delta }, null),
    finish: (reason) => chunk({}, reason),
    usage: (usage) => ({
      ...m,
      object: "chat.completion.chunk",
      choices: [],
      usage,
    }),
  };
}

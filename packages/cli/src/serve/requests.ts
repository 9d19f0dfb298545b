/**
 * The two generation requests, parsed once at the edge from their JSON bodies into typed objects. Fields follow
 * OpenAI's API reference; options the server does not implement (n > 1, logprobs, penalties, ...) are refused with
 * a 400 rather than ignored, and unknown fields are refused as OpenAI refuses them.
 */
import type { ChatMessage } from "@webtune/core";
import { badField } from "./errors.js";
import {
  asBody,
  optionalBoolean,
  optionalNumber,
  optionalStop,
  refuseUnknownFields,
  refuseUnlessDefault,
  requiredString,
  type Body,
} from "./fields.js";

/** What both endpoints ask of a generation. */
export interface SamplingRequest {
  /** An id from /v1/models: the base model or an adapter. */
  model: string;
  /** New tokens at most; undefined leaves the endpoint's default (see the handlers). */
  maxTokens: number | undefined;
  /** 0 is greedy. OpenAI's default, 1. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 is off. */
  topP: number;
  /** The sampler's seed; undefined draws one, so unseeded sampled answers differ as OpenAI's do. */
  seed: number | undefined;
  /** Generation ends before the first of these (at most 4). */
  stop: string[];
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage and no choices. */
  includeUsage: boolean;
}

export interface CompletionRequest extends SamplingRequest {
  prompt: string;
}

export interface ChatRequest extends SamplingRequest {
  /** Roles system, user or assistant ("developer" arrives as system), contents as plain text. */
  messages: ChatMessage[];
}

const SAMPLING_FIELDS = [
  "model",
  "max_tokens",
  "temperature",
  "top_p",
  "seed",
  "stop",
  "stream",
  "stream_options",
  "n",
  "frequency_penalty",
  "presence_penalty",
  "logit_bias",
  // An end-user id for the caller's own abuse tracking; it changes nothing in the answer.
  "user",
];
const COMPLETION_FIELDS = [
  ...SAMPLING_FIELDS,
  "prompt",
  "echo",
  "logprobs",
  "best_of",
  "suffix",
];
const CHAT_FIELDS = [
  ...SAMPLING_FIELDS,
  "messages",
  "max_completion_tokens",
  "logprobs",
  "top_logprobs",
];

const isZero = (v: unknown) => v === 0;
const isOne = (v: unknown) => v === 1;
const isFalse = (v: unknown) => v === false;
/** For fields whose only default is leaving them out (or null): any value given is refused. */
const onlyAbsent = () => false;

/** The body of POST /v1/completions. */
export function parseCompletionRequest(json: unknown): CompletionRequest {
  const body = asBody(json);
  refuseUnknownFields(body, COMPLETION_FIELDS);
  refuseUnlessDefault(body, "echo", isFalse, "the prompt is not echoed.");
  refuseUnlessDefault(
    body,
    "logprobs",
    onlyAbsent,
    "no logprobs are returned; leave it out.",
  );
  refuseUnlessDefault(
    body,
    "best_of",
    isOne,
    "one completion is generated per request.",
  );
  refuseUnlessDefault(
    body,
    "suffix",
    (v) => v === "",
    "insertion (suffix) is not supported.",
  );
  const sampling = parseSampling(body);
  return { ...sampling, prompt: parsePrompt(body["prompt"]) };
}

/** The body of POST /v1/chat/completions. */
export function parseChatRequest(json: unknown): ChatRequest {
  const body = asBody(json);
  refuseUnknownFields(body, CHAT_FIELDS);
  refuseUnlessDefault(body, "logprobs", isFalse, "no logprobs are returned.");
  refuseUnlessDefault(
    body,
    "top_logprobs",
    isZero,
    "no logprobs are returned.",
  );
  const sampling = parseSampling(body);
  // OpenAI's newer name for max_tokens; it wins when both are given.
  const maxCompletionTokens = optionalNumber(body, "max_completion_tokens", {
    min: 1,
    integer: true,
  });
  return {
    ...sampling,
    maxTokens: maxCompletionTokens ?? sampling.maxTokens,
    messages: parseMessages(body["messages"]),
  };
}

function parseSampling(body: Body): SamplingRequest {
  refuseUnlessDefault(
    body,
    "n",
    isOne,
    "one choice is generated per request (n = 1).",
  );
  for (const penalty of ["frequency_penalty", "presence_penalty"])
    refuseUnlessDefault(
      body,
      penalty,
      isZero,
      "penalties are not implemented.",
    );
  refuseUnlessDefault(
    body,
    "logit_bias",
    (v) => typeof v === "object" && Object.keys(v as object).length === 0,
    "logit_bias is not implemented.",
  );
  if (body["user"] !== undefined && body["user"] !== null)
    requiredString(body, "user");
  const stream = optionalBoolean(body, "stream") ?? false;
  return {
    model: requiredString(body, "model"),
    maxTokens: optionalNumber(body, "max_tokens", { min: 1, integer: true }),
    temperature: optionalNumber(body, "temperature", { min: 0, max: 2 }) ?? 1,
    topP: parseTopP(body),
    seed: optionalNumber(body, "seed", { integer: true }),
    stop: optionalStop(body),
    stream,
    includeUsage: parseStreamOptions(body, stream),
  };
}

function parseTopP(body: Body): number {
  const topP = optionalNumber(body, "top_p", { min: 0, max: 1 }) ?? 1;
  if (topP === 0)
    throw badField(
      "top_p",
      "'top_p' must be above 0 (it keeps the most likely tokens up to that probability mass); use temperature 0 for greedy decoding.",
    );
  return topP;
}

function parseStreamOptions(body: Body, stream: boolean): boolean {
  const options = body["stream_options"];
  if (options === undefined || options === null) return false;
  if (!stream)
    throw badField(
      "stream_options",
      "The 'stream_options' parameter is only allowed when 'stream' is true.",
    );
  if (typeof options !== "object" || Array.isArray(options))
    throw badField(
      "stream_options",
      "'stream_options' must be an object such as {\"include_usage\": true}.",
      "invalid_type",
    );
  const fields = options as Body;
  for (const key of Object.keys(fields))
    if (key !== "include_usage")
      throw badField(
        `stream_options.${key}`,
        `Unrecognized stream option: ${key}. Only include_usage is supported.`,
        "unknown_parameter",
      );
  return optionalBoolean(fields, "include_usage") ?? false;
}

/** A string, or an array holding one string (OpenAI's batch form with a batch of one). */
function parsePrompt(value: unknown): string {
  if (typeof value === "string") return value;
  if (
    Array.isArray(value) &&
    value.length === 1 &&
    typeof value[0] === "string"
  )
    return value[0];
  if (value === undefined || value === null)
    throw badField(
      "prompt",
      "Missing required parameter: 'prompt'.",
      "invalid_type",
    );
  const what = Array.isArray(value)
    ? value.length !== 1
      ? `an array of ${value.length} prompts; send one prompt per request`
      : "an array of token ids; send the prompt as text"
    : `a ${typeof value}`;
  throw badField(
    "prompt",
    `'prompt' must be a string (or an array of exactly one string), got ${what}.`,
    "invalid_type",
  );
}

const ROLES: Record<string, string> = {
  system: "system",
  // OpenAI's newer name for system instructions; chat templates know only "system".
  developer: "system",
  user: "user",
  assistant: "assistant",
};

function parseMessages(value: unknown): ChatMessage[] {
  if (value === undefined || value === null)
    throw badField(
      "messages",
      "Missing required parameter: 'messages'.",
      "invalid_type",
    );
  if (!Array.isArray(value) || value.length === 0)
    throw badField(
      "messages",
      "'messages' must be a non-empty array of {role, content} objects.",
      Array.isArray(value) ? "invalid_value" : "invalid_type",
    );
  return value.map((message, i) => parseMessage(message, `messages[${i}]`));
}

function parseMessage(value: unknown, at: string): ChatMessage {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw badField(
      at,
      `'${at}' must be a {role, content} object.`,
      "invalid_type",
    );
  const message = value as Body;
  for (const key of Object.keys(message))
    if (key !== "role" && key !== "content")
      throw badField(
        `${at}.${key}`,
        `'${at}.${key}' is not supported: messages hold a role and a text content only.`,
        "unknown_parameter",
      );
  const role = message["role"];
  if (typeof role !== "string" || !(role in ROLES))
    throw badField(
      `${at}.role`,
      `'${at}.role' must be one of system, developer, user, assistant; got ${JSON.stringify(role)}.`,
    );
  return {
    role: ROLES[role]!,
    content: parseContent(message["content"], `${at}.content`),
  };
}

/** Plain text, or text parts, joined by newlines as other OpenAI-compatible servers (vLLM) join them. */
function parseContent(value: unknown, at: string): string {
  if (typeof value === "string") return value;
  if (!Array.isArray(value))
    throw badField(
      at,
      `'${at}' must be a string or an array of {type: "text", text} parts, got ${value === null ? "null" : typeof value}.`,
      "invalid_type",
    );
  return value
    .map((part: unknown, j) => {
      const { type, text } = (part ?? {}) as Body;
      if (type !== "text" || typeof text !== "string")
        throw badField(
          `${at}[${j}]`,
          `'${at}[${j}]' must be a {type: "text", text: string} part; this model reads text only (got type ${JSON.stringify(type)}).`,
        );
      return text;
    })
    .join("\n");
}

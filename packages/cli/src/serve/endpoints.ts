/**
 * POST /v1/completions and POST /v1/chat/completions: parse the body, resolve the model, tokenize the prompt,
 * check the context, queue the generation, and answer in one JSON object or as a stream of chunks. The two
 * endpoints differ only in how a prompt is made and how answers are shaped (an Endpoint); the flow is one.
 */
import { randomInt } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  ConfigError,
  FormatError,
  type LoraModel,
  type Tokenizer,
} from "@webtune/core";
import type { ModelCatalog } from "./catalog.js";
import {
  ApiError,
  badField,
  ClientClosedError,
  StreamFailure,
} from "./errors.js";
import {
  runGeneration,
  type GenerationJob,
  type GenerationOutcome,
} from "./generation.js";
import { StreamedText } from "./holdback.js";
import { EventStream, readJsonBody, sendJson } from "./http_io.js";
import type { GenerationQueue } from "./queue.js";
import {
  parseChatRequest,
  parseCompletionRequest,
  type ChatRequest,
  type CompletionRequest,
  type SamplingRequest,
} from "./requests.js";
import {
  chatShapes,
  completionShapes,
  usageOf,
  type ResponseShapes,
} from "./responses.js";
import type { RequestTrace } from "./trace.js";

/** What the generation endpoints share with the server. */
export interface ServingState {
  peft: LoraModel;
  tokenizer: Tokenizer;
  catalog: ModelCatalog;
  queue: GenerationQueue;
  /** The model's max_position_embeddings: prompt and completion together. */
  contextLength: number;
  maxBodyBytes: number;
  /** Aborted when the server closes. */
  closing: AbortSignal;
  /** One controller per generation request not answered yet; closing the server aborts them all. */
  unfinished: Set<AbortController>;
}

/** How one endpoint makes a prompt and shapes its answers. */
export interface Endpoint<R extends SamplingRequest> {
  parse(json: unknown): R;
  /** The request field the prompt comes from, for error messages. */
  promptParam: string;
  promptIds(request: R, tokenizer: Tokenizer, modelId: string): number[];
  /** max_tokens when the request leaves it out. */
  defaultMaxTokens(promptTokens: number, contextLength: number): number;
  shapes(modelId: string, includeUsage: boolean): ResponseShapes;
}

export const COMPLETIONS: Endpoint<CompletionRequest> = {
  parse: parseCompletionRequest,
  promptParam: "prompt",
  promptIds(request, tokenizer) {
    const ids = asBadRequest("prompt", () => tokenizer.encode(request.prompt));
    if (ids.length === 0)
      throw badField(
        "prompt",
        "'prompt' is empty; give at least one token of text.",
      );
    return ids;
  },
  // OpenAI's default for completions.
  defaultMaxTokens: () => 16,
  shapes: completionShapes,
};

export const CHAT_COMPLETIONS: Endpoint<ChatRequest> = {
  parse: parseChatRequest,
  promptParam: "messages",
  promptIds(request, tokenizer, modelId) {
    if (tokenizer.chatTemplateNames.length === 0)
      throw new ApiError(
        400,
        `Model "${modelId}" has no chat template (no chat_template in its tokenizer_config.json and no ` +
          `chat_template.jinja), so it cannot read messages. Use /v1/completions with a plain-text prompt.`,
        { param: "messages", code: "no_chat_template" },
      );
    return asBadRequest("messages", () =>
      tokenizer.applyChatTemplate(request.messages, {
        addGenerationPrompt: true,
        tokenize: true,
      }),
    );
  },
  // OpenAI's default for chat: whatever the context leaves.
  defaultMaxTokens: (promptTokens, contextLength) =>
    Math.max(1, contextLength - promptTokens),
  shapes: chatShapes,
};

/** Core's errors about the request's own content (a template that rejects the roles, text it cannot encode) are 400s. */
function asBadRequest<T>(param: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof FormatError || error instanceof ConfigError)
      throw badField(param, error.message);
    throw error;
  }
}

/** Parse, check, queue, answer: the whole of one generation request. */
export async function handleGeneration<R extends SamplingRequest>(
  state: ServingState,
  endpoint: Endpoint<R>,
  req: IncomingMessage,
  res: ServerResponse,
  trace: RequestTrace,
): Promise<void> {
  const request = endpoint.parse(await readJsonBody(req, state.maxBodyBytes));
  trace.stream = request.stream;
  const served = state.catalog.require(request.model);
  trace.model = served.id;
  const promptIds = endpoint.promptIds(request, state.tokenizer, served.id);
  trace.promptTokens = promptIds.length;
  const job: GenerationJob = {
    adapter: served.adapter,
    promptIds,
    maxTokens: completionBudget(
      endpoint,
      request,
      promptIds.length,
      state.contextLength,
    ),
    temperature: request.temperature,
    topP: request.topP,
    seed: request.seed ?? randomInt(2 ** 31),
    stop: request.stop,
    signal: abortWhenUnwanted(res, state),
  };
  const shapes = endpoint.shapes(served.id, request.includeUsage);
  const generate = () =>
    state.queue.run(() => runGeneration(state.peft, job, trace));
  if (request.stream) await answerStream(res, request, job, shapes, generate);
  else {
    const outcome = await generate();
    const usage = usageOf(promptIds.length, outcome.completionTokens);
    sendJson(
      res,
      200,
      shapes.complete(outcome.text, outcome.finishReason, usage),
    );
  }
}

/** Streams the answer: the opening chunk now, text as it is generated (held back near stop strings), the end. */
async function answerStream(
  res: ServerResponse,
  request: SamplingRequest,
  job: GenerationJob,
  shapes: ResponseShapes,
  generate: () => Promise<GenerationOutcome>,
): Promise<void> {
  const events = new EventStream(res);
  const opening = shapes.opening();
  if (opening) events.send(opening);
  const text = new StreamedText(request.stop);
  job.onText = (decoded) => {
    const delta = text.next(decoded);
    if (delta) events.send(shapes.text(delta));
  };
  try {
    const outcome = await generate();
    const rest = text.finish(outcome.text);
    if (rest) events.send(shapes.text(rest));
    events.send(shapes.finish(outcome.finishReason));
    const usage = usageOf(job.promptIds.length, outcome.completionTokens);
    if (request.includeUsage) events.send(shapes.usage(usage));
    events.done();
  } catch (error) {
    throw new StreamFailure(events, error);
  }
}

/**
 * A signal aborted when the answer is no longer wanted: the client closed the connection before the response
 * ended, or the server is closing (which aborts every controller in `state.unfinished`).
 */
function abortWhenUnwanted(
  res: ServerResponse,
  state: ServingState,
): AbortSignal {
  const unwanted = new AbortController();
  if (state.closing.aborted) unwanted.abort(state.closing.reason);
  state.unfinished.add(unwanted);
  res.on("close", () => {
    state.unfinished.delete(unwanted);
    if (!res.writableFinished) unwanted.abort(new ClientClosedError());
  });
  return unwanted.signal;
}

/** The tokens the completion may have: max_tokens, or the endpoint's default, within the model's context. */
function completionBudget<R extends SamplingRequest>(
  endpoint: Endpoint<R>,
  request: R,
  promptTokens: number,
  contextLength: number,
): number {
  const maxTokens =
    request.maxTokens ?? endpoint.defaultMaxTokens(promptTokens, contextLength);
  if (promptTokens + maxTokens <= contextLength) return maxTokens;
  const param = endpoint.promptParam;
  throw new ApiError(
    400,
    `This model's maximum context length is ${contextLength} tokens. However, you requested ` +
      `${promptTokens + maxTokens} tokens (${promptTokens} in the ${param}, ${maxTokens} for the completion). ` +
      `Please reduce the length of the ${param} or max_tokens.`,
    { param, code: "context_length_exceeded" },
  );
}

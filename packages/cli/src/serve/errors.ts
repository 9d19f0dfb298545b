/**
 * Errors as OpenAI's API answers them: an HTTP status and `{error: {message, type, param, code}}`, so that
 * OpenAI's clients raise their usual exceptions (BadRequestError, NotFoundError, ...) with our message.
 */
import { WebtuneError } from "@webtune/core";
import type { EventStream } from "./http_io.js";

/** OpenAI's error body. */
export interface ErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
  };
}

/** A request the server answers with an error status; `param` names the request field at fault. */
export class ApiError extends WebtuneError {
  override name = "ApiError";
  /** OpenAI's error type: invalid_request_error for the client's mistakes, server_error for ours. */
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  /** Headers the answer carries, e.g. Allow on a 405. */
  readonly headers: Record<string, string>;

  constructor(
    readonly status: number,
    message: string,
    details: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.headers = details.headers ?? {};
    this.type =
      details.type ??
      (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = details.param ?? null;
    this.code = details.code ?? null;
  }

  toBody(): ErrorBody {
    const { message, type, param, code } = this;
    return { error: { message, type, param, code } };
  }
}

/** 400 for a request field of the wrong type (code invalid_type) or out of range (code invalid_value). */
export function badField(
  param: string,
  message: string,
  code:
    "invalid_type" | "invalid_value" | "unknown_parameter" = "invalid_value",
): ApiError {
  return new ApiError(400, message, { param, code });
}

/** The client has gone: raised from a generation's token callback, it stops the generation at that token. */
export class ClientClosedError extends WebtuneError {
  override name = "ClientClosedError";
  constructor(options?: { cause?: unknown }) {
    super(
      "The client closed the connection before the answer was complete; its generation was stopped.",
      options,
    );
  }
}

/** What an unexpected failure becomes: a 500 that carries its message, never a crash. */
export function internalError(error: unknown): ApiError {
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(500, `The server failed on this request: ${message}`, {
    code: "internal_error",
  });
}

/** A failure after a stream's status line (200) went out: it can only be reported inside the stream. */
export class StreamFailure extends WebtuneError {
  override name = "StreamFailure";
  constructor(
    readonly events: EventStream,
    override readonly cause: unknown,
  ) {
    super("A streamed response failed after it had started.", { cause });
  }
}

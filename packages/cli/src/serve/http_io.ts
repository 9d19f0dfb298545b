/** Reading a JSON request body and writing JSON or server-sent events, on node:http's objects. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, ClientClosedError, type ErrorBody } from "./errors.js";

/** 1 MiB: a prompt of a whole 32k-token context is about 130 kB of text. */
export const DEFAULT_MAX_BODY_BYTES = 2 ** 20;

/**
 * The request body parsed as JSON, whatever its Content-Type (curl -d sends form-urlencoded). A body over
 * `maxBytes` is a 413. It is still read to its end, and discarded: answering before the client has sent it all
 * would make many clients fail with a broken pipe instead of reading the 413.
 */
export async function readJsonBody(
  req: IncomingMessage,
  maxBytes: number,
): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size <= maxBytes) chunks.push(chunk);
    }
  } catch (error) {
    // A request body fails to arrive only when its connection goes: there is no one left to answer.
    throw new ClientClosedError({ cause: error });
  }
  if (size > maxBytes)
    throw new ApiError(
      413,
      `The request body is ${size} bytes; this server accepts at most ${maxBytes}. Send a shorter prompt.`,
      { code: "request_too_large" },
    );
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "")
    throw new ApiError(400, "The request body is empty; send a JSON object.", {
      code: "invalid_json",
    });
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(
      400,
      `We could not parse the JSON body of your request: ${(error as Error).message}. Send a JSON object ` +
        `with Content-Type: application/json.`,
      { code: "invalid_json" },
    );
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A server-sent event stream, as OpenAI streams: `data: <json>` events, then `data: [DONE]`. */
export class EventStream {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      Connection: "keep-alive",
      // Proxies such as nginx would otherwise buffer the stream and deliver it in one piece.
      "X-Accel-Buffering": "no",
    });
    res.flushHeaders();
  }

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  send(data: object): void {
    if (this.open) this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  done(): void {
    if (this.open) this.res.end("data: [DONE]\n\n");
  }

  /** An error after the status line went out: an error event, as OpenAI sends one, and the end. */
  fail(body: ErrorBody): void {
    this.send(body);
    if (this.open) this.res.end();
  }
}

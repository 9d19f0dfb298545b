/**
 * What the server notes about one request as it goes (route, model, tokens, times), and the log record made
 * from it when the response ends, whether it finished, failed, or its client went away.
 */

/** One request, as logged (a JSON line on stderr by default) and counted in /metrics. */
export interface RequestLogRecord {
  /** When the response ended, ISO 8601. */
  time: string;
  method: string;
  /** The route it matched, e.g. /v1/chat/completions or /v1/models/{id}; "unknown" for none. */
  route: string;
  /** The path as requested. */
  path: string;
  /** The served model's id, when the request named a known one. */
  model: string | null;
  /** The HTTP status; 499 (nginx's "client closed request") when the client left before the end. */
  status: number;
  stream: boolean;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  finish_reason: string | null;
  /** From the request's arrival to the response's end. */
  latency_ms: number;
  /** Waiting for the GPU behind other generations. */
  queue_ms: number | null;
  /** Time to first token: from the request's arrival to its first generated token. */
  ttft_ms: number | null;
  /** Completion tokens per second of generation (from leaving the queue to the last token). */
  tokens_per_s: number | null;
  /** The error message sent, for statuses of 400 and above. */
  error?: string;
}

/** Status 499: the client closed the connection before the response ended. */
export const CLIENT_CLOSED = 499;

export class RequestTrace {
  readonly receivedAt = performance.now();
  route = "unknown";
  model: string | null = null;
  stream = false;
  promptTokens: number | null = null;
  completionTokens: number | null = null;
  finishReason: string | null = null;
  generationStartedAt: number | undefined;
  firstTokenAt: number | undefined;
  lastTokenAt: number | undefined;
  /** An error reported inside a stream whose status line (200) had already gone. */
  streamErrorStatus: number | undefined;
  error: string | undefined;

  constructor(
    readonly method: string,
    readonly path: string,
  ) {}

  /** The record of the finished request; `status` is the one sent, or CLIENT_CLOSED. */
  record(status: number): RequestLogRecord {
    const now = performance.now();
    const since = (t: number | undefined) =>
      t === undefined ? null : round(t - this.receivedAt);
    const generating =
      this.generationStartedAt !== undefined && this.lastTokenAt !== undefined
        ? (this.lastTokenAt - this.generationStartedAt) / 1000
        : 0;
    return {
      time: new Date().toISOString(),
      method: this.method,
      route: this.route,
      path: this.path,
      model: this.model,
      status:
        status === CLIENT_CLOSED ? status : (this.streamErrorStatus ?? status),
      stream: this.stream,
      prompt_tokens: this.promptTokens,
      completion_tokens: this.completionTokens,
      finish_reason: this.finishReason,
      latency_ms: round(now - this.receivedAt),
      queue_ms: since(this.generationStartedAt),
      ttft_ms: since(this.firstTokenAt),
      tokens_per_s:
        generating > 0 && this.completionTokens
          ? round(this.completionTokens / generating)
          : null,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** The default log: one JSON line per request on stderr. */
export function logToStderr(record: RequestLogRecord): void {
  process.stderr.write(`${JSON.stringify(record)}\n`);
}

/**
 * The pieces of HTTP loading that do not fetch: typed, actionable errors and progress reporting.
 * `hub.ts` makes the requests.
 */
import { WebtuneError } from "../errors.js";
import { FileNotFoundError, NetworkError } from "../errors.js";

/** Progress of one file's download. `totalBytes` is 0 while the server has not said the size. */
export interface DownloadProgress {
  file: string;
  loadedBytes: number;
  totalBytes: number;
}

/** What a request needs besides its URL. */
export interface HttpContext {
  token: string | undefined;
  signal: AbortSignal | undefined;
  onProgress: ((event: DownloadProgress) => void) | undefined;
  /** What to check when a file is missing. */
  hint: string;
  source: string;
}

export function statusError(
  url: string,
  file: string,
  response: Response,
  context: HttpContext,
): WebtuneError {
  const { status } = response;
  if (status === 404) return notFound(url, file, context);
  if (status === 401 || status === 403) {
    const advice = context.token
      ? "The token was sent but does not grant access: check that it has read access and that you accepted the model's license on the hub."
      : "Accept its license on the hub and pass a token with read access (options.token).";
    return new NetworkError(
      `${url} refused access (HTTP ${status}): the model is gated or private, or does not exist. ${advice}`,
      { url, status },
    );
  }
  const advice =
    status >= 500
      ? "The server failed; try again later."
      : "Check the address and the options.";
  return new NetworkError(
    `${url} answered HTTP ${status} ${response.statusText}. ${advice}`,
    { url, status },
  );
}

export function notFound(
  url: string,
  file: string,
  context: HttpContext,
): FileNotFoundError {
  return new FileNotFoundError(
    `"${file}" was not found at ${url} (HTTP 404); ${context.hint}.`,
    {
      source: context.source,
      file,
    },
  );
}

export function rangeIgnored(url: string, status: number): NetworkError {
  return new NetworkError(
    `${url} ignored a Range request (HTTP ${status} instead of 206 Partial Content), so it cannot be read in pieces. ` +
      `Serve it from a server that supports Range requests, or enable the cache (cache: true) to download it once.`,
    { url, status },
  );
}

/** A body that broke off mid-download; typed errors and aborts pass through. */
export function interrupted(
  url: string,
  cause: unknown,
  context: HttpContext,
): unknown {
  if (context.signal?.aborted) return context.signal.reason;
  if (cause instanceof WebtuneError) return cause;
  return new NetworkError(
    `The download of ${url} was interrupted (${describeCause(cause)}). Load it again.`,
    {
      url,
      cause,
    },
  );
}

/** Passes the body through, reporting progress per chunk and once more at the end. */
export function withProgress(
  response: Response,
  file: string,
  onProgress: ((event: DownloadProgress) => void) | undefined,
): ReadableStream<Uint8Array> {
  const body = response.body ?? new Response(new Uint8Array(0)).body!;
  if (!onProgress) return body;
  // Content-Length counts compressed bytes when the body is encoded; then the size is unknown.
  const encoded = response.headers.has("content-encoding");
  const total = encoded
    ? 0
    : Number(response.headers.get("content-length") ?? 0) || 0;
  let loaded = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        loaded += chunk.length;
        if (loaded < total || total === 0)
          onProgress({ file, loadedBytes: loaded, totalBytes: total });
        controller.enqueue(chunk);
      },
      flush() {
        onProgress({ file, loadedBytes: loaded, totalBytes: loaded });
      },
    }),
  );
}

/** Node's fetch hides the reason (ECONNREFUSED, ENOTFOUND, ...) in `cause.cause`. */
export function describeCause(error: unknown): string {
  const inner = (error as { cause?: unknown } | null)?.cause;
  const message = error instanceof Error ? error.message : String(error);
  return inner instanceof Error ? `${message}: ${inner.message}` : message;
}

/**
 * The HTTP server: node:http, a small route table, and one place where every failure becomes an OpenAI-shaped
 * error (never a crash). Each request is traced, logged and counted when its response ends.
 */
import {
  createServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError, LoraModel, type PretrainedModel } from "@webtune/core";
import { ModelCatalog, type ServedModel } from "./catalog.js";
import type { ServingState } from "./endpoints.js";
import {
  ApiError,
  ClientClosedError,
  internalError,
  StreamFailure,
} from "./errors.js";
import { DEFAULT_MAX_BODY_BYTES, sendJson } from "./http_io.js";
import { matchRoute, pathOf, routeTable, type Routes } from "./routes.js";
import { ServerMetrics } from "./metrics.js";
import { GenerationQueue } from "./queue.js";
import {
  CLIENT_CLOSED,
  logToStderr,
  RequestTrace,
  type RequestLogRecord,
} from "./trace.js";

export interface ServerOptions {
  /** The loaded model, with its tokenizer. */
  model: PretrainedModel;
  /** The adapters to serve, each under its name, over `model` (default: none, the base model alone). */
  peft?: LoraModel;
  /** Default 127.0.0.1: this machine only. The server has no authentication. */
  host?: string;
  /** Default 8000; 0 takes any free port (see RunningServer.port). */
  port?: number;
  /** Larger request bodies get a 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Where each request's record goes when its response ends. Default: one JSON line on stderr. */
  log?: (record: RequestLogRecord) => void;
}

export interface RunningServer {
  /** e.g. "http://127.0.0.1:8000"; OpenAI's API is under `${url}/v1`. */
  url: string;
  host: string;
  port: number;
  /** The models requests can name, the base model first, then each adapter. */
  models: readonly ServedModel[];
  /**
   * Stops accepting requests, stops the queued and running generations (their clients get a 503), and resolves
   * once every connection has closed. The model stays loaded: whoever loaded it disposes of it.
   */
  close(): Promise<void>;
}

/**
 * Starts an OpenAI-compatible server for a model and its adapters: GET /v1/models, POST /v1/completions,
 * POST /v1/chat/completions, GET /metrics (Prometheus) and GET /health. One generation runs at a time.
 *
 * @example
 * ```ts
 * await initRuntime();
 * const model = await loadModel("HuggingFaceTB/SmolLM2-135M-Instruct");
 * const peft = new LoraModel(model);
 * await peft.loadAdapter("support", "runs/support/adapter");
 * const server = await startServer({ model, peft, port: 0 });
 * const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
 * await client.chat.completions.create({ model: "support", messages: [{ role: "user", content: "Hi" }] });
 * await server.close();
 * ```
 */
export async function startServer(
  options: ServerOptions,
): Promise<RunningServer> {
  const { model } = options;
  const peft = options.peft ?? new LoraModel(model);
  checkServable(model, peft);
  const catalog = ModelCatalog.of(peft);
  const queue = new GenerationQueue();
  const metrics = new ServerMetrics(queue);
  const closing = new AbortController();
  const state: ServingState = {
    peft,
    tokenizer: model.tokenizer!,
    catalog,
    queue,
    contextLength: model.dims.maxPositions,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    closing: closing.signal,
    unfinished: new Set(),
  };
  const handle = dispatcher(
    routeTable(state, metrics),
    metrics,
    options.log ?? logToStderr,
    closing.signal,
  );
  const server = createServer({ noDelay: true }, (req, res) => {
    void handle(req, res);
  });
  const host = options.host ?? "127.0.0.1";
  await listen(server, host, options.port ?? 8000);
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    host,
    port,
    models: catalog.models,
    close: () =>
      (closed ??= (async () => {
        closing.abort(shuttingDown());
        // Queued generations are dropped, and the running one stops at its next token.
        for (const request of state.unfinished)
          request.abort(closing.signal.reason);
        const stopped = new Promise<void>((resolve) =>
          server.close(() => resolve()),
        );
        server.closeIdleConnections();
        await queue.idle();
        // Let the stopped requests write their 503 before their connections go.
        await new Promise((resolve) => setImmediate(resolve));
        server.closeAllConnections();
        await stopped;
      })()),
  };
}

/** Routes each request to its handler, and traces, logs and counts it once it is over. */
function dispatcher(
  routes: Routes,
  metrics: ServerMetrics,
  log: (record: RequestLogRecord) => void,
  closing: AbortSignal,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    const path = pathOf(req.url);
    const trace = new RequestTrace(req.method ?? "GET", path);
    const closedWithStatus = new Promise<number>((resolve) =>
      res.on("close", () =>
        resolve(res.writableFinished ? res.statusCode : CLIENT_CLOSED),
      ),
    );
    try {
      if (closing.aborted) throw shuttingDown();
      const { route, id } = matchRoute(path);
      const methods = routes[route];
      if (!methods)
        throw new ApiError(
          404,
          `Unknown request URL: ${trace.method} ${path}. This server answers ${Object.keys(routes).join(", ")}.`,
          { code: "unknown_url" },
        );
      trace.route = route;
      const handler = methods[trace.method];
      if (!handler) {
        const allowed = Object.keys(methods).join(", ");
        throw new ApiError(
          405,
          `${path} does not accept ${trace.method}; use ${allowed}.`,
          { code: "method_not_allowed", headers: { Allow: allowed } },
        );
      }
      await handler(req, res, trace, id);
    } catch (error) {
      reportError(res, trace, error);
    }
    // Logged once both are over: the response (which a client may end early) and the handler, whose stopped
    // generation may still have finished its token after the client left.
    const record = trace.record(await closedWithStatus);
    metrics.observe(record);
    log(record);
  };
}

/** Refuses what the server cannot answer with text: no tokenizer, a classification head, a merged adapter. */
function checkServable(model: PretrainedModel, peft: LoraModel): void {
  if (peft.base !== model)
    throw new ConfigError(
      "startServer: options.peft is a LoraModel over another model than options.model; pass the model it wraps.",
    );
  if (!model.tokenizer)
    throw new ConfigError(
      `${model.source} has no tokenizer.json; the server needs a tokenizer to read prompts and write text.`,
    );
  const withHead = peft.adapterNames.find((name) => peft.head(name));
  if (withHead !== undefined || model.lm.taskHead)
    throw new ConfigError(
      `${withHead !== undefined ? `Adapter "${withHead}"` : model.source} has a classification head, and the ` +
        `server answers with generated text; use \`webtune generate\` to classify with it.`,
    );
  if (peft.mergedAdapters.length > 0)
    throw new ConfigError(
      `Adapters ${peft.mergedAdapters.join(", ")} are merged into the weights, so the base model would answer ` +
        `with them; unmerge() before serving.`,
    );
}

function shuttingDown(): ApiError {
  return new ApiError(
    503,
    "The server is shutting down; this request was not completed.",
    { code: "server_closing" },
  );
}

/** Answers an error as OpenAI does, or, in a stream already under way, as an error event. */
function reportError(
  res: ServerResponse,
  trace: RequestTrace,
  error: unknown,
): void {
  const failure = error instanceof StreamFailure ? error : undefined;
  const cause = failure ? failure.cause : error;
  // The client has gone: there is no one to answer.
  if (cause instanceof ClientClosedError) return;
  const api = cause instanceof ApiError ? cause : internalError(cause);
  trace.error = api.message;
  if (failure) {
    trace.streamErrorStatus = api.status;
    failure.events.fail(api.toBody());
  } else if (!res.headersSent) {
    sendJson(res, api.status, api.toBody(), api.headers);
  } else {
    res.destroy();
  }
}

async function listen(
  server: ReturnType<typeof createServer>,
  host: string,
  port: number,
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        new ConfigError(
          `Cannot listen on ${host}:${port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}. ` +
            `Pick another --port or --host.`,
          { cause: error },
        ),
      );
    });
    server.listen(port, host, () => resolve());
  });
}
